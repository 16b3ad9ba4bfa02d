"""Encounter videos (``compare --video N``, ``evaluate --video N``): the N rare-scene encounters where the
models disagree most (one passes, another fails; then failures; then the rest), side by side per model, as
H.264 / yuv420p MP4 that browsers play.

Each model's panel: the full camera frame with the band the policy reads outlined, a top-down view
(road, actors, the model's path so far), the model's and the expert's steering over the clip, and at
the end a stamp with ``compare``'s judgement: PASS, FAIL, NOT JUDGED (cut off by the time limit) or NOT
REACHED (the model's route ended before the scene). An encounter is matched across models as the k-th
of its category on the same route (the ego meets scenes in route order). Each clip runs from
``LEAD_S`` before the model's onset to the end of its judged window, replayed from the same seed and
model (``drive_episode``), so the same inputs give the same frames. Written with the ffmpeg binary that
``imageio-ffmpeg`` ships (OpenCV's wheel writes ``mp4v``, which browsers do not play); a PNG of the last
frame goes beside each video.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from metasteer.policy import OnnxPolicy
from metasteer.preprocess import PreprocessSpec
from simulator.actors import box_corners
from simulator.base import FIXED_DELTA_S, CameraSpec
from simulator.camera import Camera
from simulator.encounters import encounters
from simulator.factory import WorldConfig
from simulator.road import HALF_WIDTH_M
from training.compare import MERGE_GAP_S, PASS_AFTER_S, judge_episode
from training.evaluate import EvalConfig, drive_episode

LEAD_S = 2.0  # the clip starts this long before the model meets the scene
STAMP_FRAMES = 10  # the judgement shows on the last frames
CAM_SIZE, HEAD_H, STRIP_H = (256, 192), 20, 72
TOP_SIZE = CAM_SIZE[1]  # the top-down view is square, beside the camera
PANEL_W, PANEL_H = CAM_SIZE[0] + TOP_SIZE, HEAD_H + CAM_SIZE[1] + STRIP_H
TOP_PX_PER_M = 3.5  # 44 m ahead of the ego, 11 m behind
STRIP_RANGE = 0.5  # steer shown in the strip; a rare scene's steering stays well inside it
STAMPS = {"passed": ("PASS", (60, 170, 60)), "failed": ("FAIL", (40, 40, 210)), "not judged": ("NOT JUDGED", (128, 128, 128)),
          "not reached": ("NOT REACHED", (128, 128, 128))}  # BGR
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Meeting:
    """One model's encounter with a scene: the steps it spans and what ``compare`` judged."""

    start: int
    end: int
    last: int  # the end of the judged window (PASS_AFTER_S on), or the episode's last step
    outcome: str  # passed | failed | not judged


@dataclass(frozen=True)
class Clip:
    route: int  # the route's seed
    category: str
    index: int  # the k-th encounter of this category on the route
    meetings: dict[str, Meeting | None]  # per model; None: not reached

    def outcome(self, name: str) -> str:
        m = self.meetings[name]
        return "not reached" if m is None else m.outcome


def meetings(episode: dict) -> dict[tuple[str, int], Meeting]:
    """(category, k) -> the k-th encounter of that category in one episode, judged as ``compare`` judges it."""
    steps = episode["steps"]
    judged = {round(s["start_s"] / FIXED_DELTA_S): s["passed"] for s in judge_episode(steps, episode["truncated"])["scenes"]}
    seen: dict[str, int] = {}
    out, after, n = {}, round(PASS_AFTER_S / FIXED_DELTA_S), len(steps["category"])
    for enc in encounters(steps["category"], round(MERGE_GAP_S / FIXED_DELTA_S)):
        k = seen[enc.category] = seen.get(enc.category, -1) + 1
        outcome = "not judged" if enc.start not in judged else ("passed" if judged[enc.start] else "failed")
        out[(enc.category, k)] = Meeting(enc.start, enc.end, min(enc.end + after, n - 1), outcome)
    return out


def pick_clips(names: list[str], per_model: list[list[dict]], n: int) -> list[Clip]:
    """The ``n`` encounters where the models disagree (some pass, some fail or never get there) first,
    then those some model failed (all of them, for one model), then the rest; each group in route order."""
    clips = []
    for r, episodes in enumerate(zip(*per_model)):
        found = [meetings(ep) for ep in episodes]
        keys = sorted({k for f in found for k in f}, key=lambda k: min(f[k].start for f in found if k in f))
        clips += [Clip(episodes[0]["seed"], cat, k, {name: f.get((cat, k)) for name, f in zip(names, found)}) for cat, k in keys]
    def rank(clip: Clip) -> int:
        seen = {clip.outcome(m) for m in names}
        return 0 if "passed" in seen and len(seen) > 1 else 1 if "failed" in seen else 2

    return sorted(clips, key=rank)[:n]  # sorted is stable: route order within a rank


def _camera_view(world, cam: Camera) -> np.ndarray:
    cam.set_vehicle_pose(world.ego.x, world.ego.y, world.ego.yaw)
    img = np.ascontiguousarray(cam.render(world.road, world.ego_s, world.actors)[:, :, :3])
    spec = PreprocessSpec()
    top, bottom = round(spec.crop_top * CAM_SIZE[1]), round(spec.crop_bottom * CAM_SIZE[1]) - 1
    cv2.rectangle(img, (0, top), (CAM_SIZE[0] - 1, bottom), (0, 220, 255), 1)  # the band the policy reads
    return img


def _top_view(world, path: list[tuple[float, float]]) -> np.ndarray:
    img = np.full((TOP_SIZE, TOP_SIZE, 3), 70, np.uint8)
    ego = world.ego
    c, s = np.cos(ego.yaw), np.sin(ego.yaw)
    ox, oy = TOP_SIZE / 2, TOP_SIZE * 0.8  # heading up, the ego low in the view: the scene ahead shows

    def px(x, y) -> np.ndarray:
        dx, dy = np.asarray(x) - ego.x, np.asarray(y) - ego.y
        ahead, left = dx * c + dy * s, -dx * s + dy * c
        return np.stack([ox - left * TOP_PX_PER_M, oy - ahead * TOP_PX_PER_M], axis=-1).round().astype(np.int32)

    road = px(world.road.x, world.road.y)
    cv2.polylines(img, [road], False, (110, 110, 110), round(2 * HALF_WIDTH_M * TOP_PX_PER_M))
    cv2.polylines(img, [road], False, (200, 200, 200), 1)  # centre line
    for actor in world.actors:
        box, colour = px(*actor.footprint(world.road).T), tuple(int(v) for v in actor.colour)
        cv2.fillPoly(img, [box], colour)
        cv2.polylines(img, [box], True, colour, 2)  # a pedestrian (0.5 m) stays visible
    if len(path) > 1:
        cv2.polylines(img, [px(*np.asarray(path).T)], False, (255, 160, 40), 2)
    vp = world.config.vehicle
    cv2.fillPoly(img, [px(*box_corners(ego.x, ego.y, ego.yaw, vp.length, vp.width).T)], (255, 255, 255))
    return img


def _strip(steer: list[float], expert: list[float], length: int) -> np.ndarray:
    img = np.full((STRIP_H, PANEL_W, 3), 30, np.uint8)
    mid = STRIP_H // 2
    cv2.line(img, (0, mid), (PANEL_W - 1, mid), (80, 80, 80), 1)
    for values, colour in ((expert, (200, 200, 200)), (steer, (255, 160, 40))):
        if len(values) > 1:
            x = np.arange(len(values)) * (PANEL_W - 1) / max(length - 1, 1)
            y = mid + np.clip(values, -STRIP_RANGE, STRIP_RANGE) / STRIP_RANGE * (mid - 4)  # + (right) draws downward
            cv2.polylines(img, [np.stack([x, y], axis=-1).round().astype(np.int32)], False, colour, 1)
    cv2.putText(img, f"steer (+-{STRIP_RANGE}, right down): model blue, expert grey", (4, 12), FONT, 0.35, (220, 220, 220), 1,
                cv2.LINE_AA)
    return img


def _stamp(panel: np.ndarray, outcome: str) -> None:
    text, colour = STAMPS[outcome]
    (w, h), _ = cv2.getTextSize(text, FONT, 0.9, 2)
    x0, y0 = (PANEL_W - w) // 2 - 8, HEAD_H + CAM_SIZE[1] // 2 - h // 2 - 8
    cv2.rectangle(panel, (x0, y0), (x0 + w + 16, y0 + h + 16), colour, -1)
    cv2.putText(panel, text, (x0 + 8, y0 + h + 8), FONT, 0.9, (255, 255, 255), 2, cv2.LINE_AA)


def stamp_box(outcome: str, column: int) -> tuple[slice, slice]:
    """Rows and columns inside the stamp of model ``column`` (for checking a frame)."""
    (w, h), _ = cv2.getTextSize(STAMPS[outcome][0], FONT, 0.9, 2)
    x0, y0 = column * PANEL_W + (PANEL_W - w) // 2 - 8, HEAD_H + CAM_SIZE[1] // 2 - h // 2 - 8
    return slice(y0 + 2, y0 + 6), slice(x0 + 2, x0 + 6)


def _header(name: str, clip: Clip, t_s: float | None) -> np.ndarray:
    img = np.full((HEAD_H, PANEL_W, 3), 15, np.uint8)
    when = "its route ended before" if t_s is None else f"t {t_s:5.2f} s"
    cv2.putText(img, f"{name} | route {clip.route} | {clip.category} #{clip.index + 1} | {when}", (4, 14), FONT,
                0.42, (240, 240, 240), 1, cv2.LINE_AA)
    return img


def model_frames(model: Path, name: str, clip: Clip, world_cfg: WorldConfig, cfg: EvalConfig) -> list[np.ndarray]:
    """One model's panels for ``clip``: its drive replayed up to the end of its judged window."""
    meeting = clip.meetings[name]
    if meeting is None:
        panel = np.full((PANEL_H, PANEL_W, 3), 45, np.uint8)
        panel[:HEAD_H] = _header(name, clip, None)
        _stamp(panel, "not reached")
        return [panel]
    first, last = max(0, meeting.start - round(LEAD_S / FIXED_DELTA_S)), meeting.last
    length = last - first + 1
    frames, path, steer, expert = [], [], [], []
    cam: list[Camera] = []

    def on_step(world, obs, control) -> None:
        step = round(obs.time_s / FIXED_DELTA_S)
        path.append((world.ego.x, world.ego.y))
        if not first <= step <= last:
            return
        if not cam:  # the episode's look (colours, camera jitter) exists once the world is reset
            cam.append(Camera(CameraSpec(output_size=CAM_SIZE), world.look))
        steer.append(control.steer)
        expert.append(obs.expert_control.steer)
        panel = np.empty((PANEL_H, PANEL_W, 3), np.uint8)
        panel[:HEAD_H] = _header(name, clip, obs.time_s)
        panel[HEAD_H:HEAD_H + CAM_SIZE[1], :CAM_SIZE[0]] = _camera_view(world, cam[0])
        panel[HEAD_H:HEAD_H + TOP_SIZE, CAM_SIZE[0]:] = _top_view(world, path)
        panel[HEAD_H + CAM_SIZE[1]:] = _strip(steer, expert, length)
        frames.append(panel)

    drive_episode(OnnxPolicy.load(model), world_cfg, clip.route, min(cfg.max_time_s, (last + 1) * FIXED_DELTA_S), trace=False,
                  actuation_delay_ticks=cfg.actuation_delay_ticks, on_step=on_step)
    for panel in frames[-STAMP_FRAMES:]:
        _stamp(panel, meeting.outcome)
    return frames


def write_mp4(frames: list[np.ndarray], out: Path, fps: int = round(1 / FIXED_DELTA_S)) -> Path:
    """BGR frames (all one even size) -> H.264 yuv420p MP4, one encoder thread (the same bytes each run)."""
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(out), (w, h), fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
                                         macro_block_size=2, quality=None,
                                         output_params=["-crf", "23", "-threads", "1", "-movflags", "+faststart"])
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f[:, :, ::-1]))
    writer.close()
    return out


def encounter_videos(names: list[str], models: list[Path], per_model: list[list[dict]], world_cfg: WorldConfig,
                     cfg: EvalConfig, out_dir: Path, n: int) -> list[dict]:
    """The ``n`` clips of ``pick_clips`` as ``encounter-K.mp4`` (and ``.png``, the last frame) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for k, clip in enumerate(pick_clips(names, per_model, n)):
        per = [model_frames(m, name, clip, world_cfg, cfg) for m, name in zip(models, names)]
        length = max(len(p) for p in per)
        frames = [np.concatenate([p[min(i, len(p) - 1)] for p in per], axis=1) for i in range(length)]
        path = write_mp4(frames, out_dir / f"encounter-{k}.mp4")
        cv2.imwrite(str(out_dir / f"encounter-{k}.png"), frames[-1])
        written.append({"video": str(path), "still": str(out_dir / f"encounter-{k}.png"), "route": clip.route,
                        "category": clip.category, "index": clip.index, "frames": length,
                        "size": [frames[0].shape[1], frames[0].shape[0]],
                        "outcomes": {name: clip.outcome(name) for name in names},
                        "meetings": {name: m and [m.start, m.end, m.last] for name, m in clip.meetings.items()}})
    return written
