"""`compare --video N`: encounter videos that browsers play, judged as `compare` judges."""

import numpy as np
import pytest

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

from simulator.base import FIXED_DELTA_S  # noqa: E402
from simulator.factory import WorldConfig  # noqa: E402
from tests.onnx_models import constant_steer_model  # noqa: E402
from training.compare import PASS_AFTER_S, compare, judge_episode  # noqa: E402
from training.evaluate import EvalConfig  # noqa: E402
from training.video import (LEAD_S, PANEL_H, PANEL_W, STAMPS, Clip, Meeting, meetings, model_frames,  # noqa: E402
                            pick_clips, stamp_box, write_mp4)

MSE = "models/mse.onnx"
WORLD, EVAL = WorldConfig(abnormal_rate=0.3), EvalConfig(episodes=2, workers=1, max_time_s=25.0)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    drifter = constant_steer_model(out / "drifter.onnx", 0.25)  # leaves the road: fails or never gets there
    result = compare([MSE, drifter], WORLD, EVAL, out / "cmp", names=["mse", "drifter"], progress=False, videos=2)
    return out, result


def _decoded(path):
    frames = imageio_ffmpeg.read_frames(str(path))
    meta = next(frames)
    return meta, [np.frombuffer(f, np.uint8).reshape(meta["size"][1], meta["size"][0], 3) for f in frames]


def test_videos_are_h264_yuv420p_with_the_encounters_frames_and_size(compared):
    _, result = compared
    assert len(result["videos"]) == 2
    for v in result["videos"]:
        meta, frames = _decoded(v["video"])
        assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p") and meta["fps"] == 20
        lead = round(LEAD_S / FIXED_DELTA_S)
        steps = [last - max(0, start - lead) + 1 for start, _, last in filter(None, v["meetings"].values())]
        assert len(frames) == v["frames"] == max(steps)  # the longest model's window; the others hold their last
        assert tuple(meta["size"]) == tuple(v["size"]) == (2 * PANEL_W, PANEL_H)


def test_disagreements_come_first_and_the_stamp_shows_the_judgement(compared):
    _, result = compared
    outcomes = [set(v["outcomes"].values()) for v in result["videos"]]
    assert "passed" in outcomes[0] and len(outcomes[0]) == 2  # mse passes where the drifter does not
    for v in result["videos"]:
        last = _decoded(v["video"])[1][-1]
        for col, outcome in enumerate(v["outcomes"].values()):
            rows, cols = stamp_box(outcome, col)
            rgb = np.array(STAMPS[outcome][1][::-1])
            assert np.abs(last[rows, cols].reshape(-1, 3).mean(axis=0) - rgb).max() < 40, (v["video"], outcome)


def test_meetings_are_judged_as_compare_judges():
    cats = ["normal"] * 10 + ["pedestrian"] * 5 + ["normal"] * 60 + ["obstacle"] * 4 + ["normal"] * 60 + ["sharp_bend"] * 3
    n = len(cats)
    infraction = [False] * n
    infraction[77] = True  # during the obstacle
    steps = {"category": cats, "infraction": infraction, "steer": [0.0] * n, "expert_steer": [0.0] * n, "distance_m": [0.4] * n}
    got = meetings({"steps": steps, "truncated": True})
    after = round(PASS_AFTER_S / FIXED_DELTA_S)
    assert got == {("pedestrian", 0): Meeting(10, 14, 14 + after, "passed"), ("obstacle", 0): Meeting(75, 78, 78 + after, "failed"),
                   ("sharp_bend", 0): Meeting(139, 141, 141, "not judged")}  # the time limit cut the bend off
    judged = judge_episode(steps, True)["scenes"]
    assert [(s["category"], s["passed"]) for s in judged] == [("pedestrian", True), ("obstacle", False)]


def test_the_same_clip_renders_the_same_frames_and_bytes(compared, tmp_path):
    _, result = compared
    v = result["videos"][0]
    clip = Clip(v["route"], v["category"], v["index"], {"mse": Meeting(*v["meetings"]["mse"], v["outcomes"]["mse"])})
    a, b = (model_frames(MSE, "mse", clip, WORLD, EVAL) for _ in range(2))
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert write_mp4(a, tmp_path / "a.mp4").read_bytes() == write_mp4(b, tmp_path / "b.mp4").read_bytes()


def test_one_model_gets_its_failures_first():
    def episode(seed, cats, hit):
        n = len(cats)
        steps = {"category": cats, "infraction": [i == hit for i in range(n)], "steer": [0.0] * n,
                 "expert_steer": [0.0] * n, "distance_m": [0.4] * n}
        return {"seed": seed, "steps": steps, "truncated": False}

    scene = ["normal"] * 10 + ["pedestrian"] * 5 + ["normal"] * 60
    clips = pick_clips(["m"], [[episode(1, scene, None), episode(2, scene, 12), episode(3, scene, None)]], 2)
    assert [(c.route, c.outcome("m")) for c in clips] == [(2, "failed"), (1, "passed")]
