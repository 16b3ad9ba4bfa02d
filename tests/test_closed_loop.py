"""Closed loop: metrics on scripted trajectories with known infractions, evaluator determinism,
ONNX export parity and metadata, broken model files."""

import json

import numpy as np
import onnx
import pytest

from metasteer.infractions import EpisodeMetrics, EventType, InfractionEvent
from metasteer.policy import OnnxPolicy, PolicyError
from simulator.base import FIXED_DELTA_S
from simulator.factory import WorldConfig
from training.evaluate import EvalConfig, evaluate
from training.export import export


def test_metrics_of_a_scripted_episode():
    m = EpisodeMetrics()
    for step in range(200):  # 10 s at 10 m/s
        m.add_step(0.05, 0.5, (step + 1) / 400, off_road=120 <= step < 130)
        if step == 60:
            m.add_event(InfractionEvent(EventType.LANE_INVASION, 3.05, markings=(1,), justified=True))
        if step == 100:
            m.add_event(InfractionEvent(EventType.LANE_INVASION, 5.05, markings=(2, 9)))
        if step == 150:
            m.add_event(InfractionEvent(EventType.COLLISION_PEDESTRIAN, 7.55, other_actor_id=7, impulse_n_s=900.0))
    s = m.summary()
    assert s["time_without_infractions_s"] == pytest.approx(5.05)  # the justified crossing does not count
    assert s["lane_invasions"] == 1 and s["lane_invasions_justified"] == 1
    assert s["collisions_pedestrian"] == 1 and s["infractions"] == 2
    assert s["distance_m"] == pytest.approx(100.0) and s["distance_between_infractions_m"] == pytest.approx(50.0)
    assert s["off_road_time_s"] == pytest.approx(0.5)
    assert s["driving_score"] == pytest.approx(0.5 * 0.5 * (1 - 0.5 / 10.0))  # 50 % route x pedestrian 0.5 x off-route
    assert m.events[1].to_dict()["markings"] == ["Solid", "Curb"]


@pytest.fixture(scope="module")
def trained_run(small_dataset, tmp_path_factory):
    from training.fit import Run, TrainConfig
    from training.losses import LossSpec
    from training.meta import MetaConfig

    out = tmp_path_factory.mktemp("runs") / "mse"
    Run(out, small_dataset, None, LossSpec(), MetaConfig(), TrainConfig(steps=30, batch_size=16, width_mult=0.5, eval_every=30)).run(progress=False)
    return out


def test_export_parity_and_metadata_round_trip(trained_run, tmp_path):
    info = export(trained_run, tmp_path / "m.onnx")
    assert info["parity_max_abs_diff"] <= 1e-4 and info["opset"] >= 17
    proto = onnx.load(tmp_path / "m.onnx")
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["metasteer.preprocess"])["width"] == 200
    assert json.loads(meta["metasteer.loss"])["family"] == "mse"
    assert len(meta["metasteer.dataset_sha256"]) == 64 and meta["metasteer.git_commit"]
    assert "abnormal" in json.loads(meta["metasteer.offline_metrics"])
    assert "+1 = full right" in meta["metasteer.output"]
    policy = OnnxPolicy.load(tmp_path / "m.onnx")
    batch = policy.predict_bands(np.zeros((5, 66, 200, 3), np.uint8))
    assert batch.shape == (5,)  # dynamic batch
    assert policy.describe()["loss"]["family"] == "mse"


def test_one_frame_steers_as_its_batch_row_though_the_input_buffer_is_reused(trained_run, tmp_path):
    from metasteer.preprocess import camera_band

    export(trained_run, tmp_path / "m.onnx")
    policy = OnnxPolicy.load(tmp_path / "m.onnx")
    frames = np.random.default_rng(1).integers(0, 256, (4, 600, 800, 4), dtype=np.uint8)
    batch = policy.predict_bands(np.stack([camera_band(f, "bgra8", policy.spec) for f in frames]))
    singles = [policy.steer(f, "bgra8") for f in frames] + [policy.steer(frames[0], "bgra8")]
    assert len(set(singles[:4])) == 4 and singles == pytest.approx([*batch, batch[0]], abs=1e-6)


def test_elu_rewritten_in_vectorised_ops_is_the_same_function(trained_run, tmp_path):
    import training.export as export_module
    from training.quantize import elu_as_exp

    export(trained_run, tmp_path / "m.onnx")
    proto = onnx.load(tmp_path / "m.onnx")
    assert elu_as_exp(proto) == 5  # one per convolution; the head's Elus stay (fused into their Gemm)
    assert [n.op_type for n in proto.graph.node].count("Elu") == 3 and [n.op_type for n in proto.graph.node].count("Exp") == 5
    onnx.save(proto, tmp_path / "r.onnx")
    source, rewritten = OnnxPolicy.load(tmp_path / "m.onnx"), OnnxPolicy.load(tmp_path / "r.onnx")
    frames = export_module.parity_frames(source.spec, n=8, seed=4)
    assert np.abs(rewritten.predict_bands(frames) - source.predict_bands(frames)).max() < 1e-5


def weight_types(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Per op type (Conv, Gemm, MatMul), the stored element type of each node's weights (QDQ: behind DequantizeLinear)."""
    graph = model.graph
    stored = {i.name: i.data_type for i in graph.initializer}
    produced = {out: n for n in graph.node for out in n.output}
    types: dict[str, list[int]] = {"Conv": [], "Gemm": [], "MatMul": []}
    for n in graph.node:
        if n.op_type in types:
            w = n.input[1]
            source = produced.get(w)
            types[n.op_type].append(stored[source.input[0]] if source is not None and source.op_type == "DequantizeLinear" else stored[w])
    return types


def test_quantized_copy_keeps_the_contract_and_provenance_and_is_parity_checked(trained_run, small_dataset, tmp_path, monkeypatch):
    import training.quantize as quantize_module
    from training.export import ExportError

    export(trained_run, tmp_path / "m.onnx")
    source = OnnxPolicy.load(tmp_path / "m.onnx")
    info = quantize_module.quantize(tmp_path / "m.onnx", tmp_path / "q" / "m-int8.onnx", calibration_frames=32)
    int8 = OnnxPolicy.load(tmp_path / "q" / "m-int8.onnx")
    assert int8.spec == source.spec and int8.model_id == info["model_id"] != source.model_id
    quant = int8.describe()["quantization"]
    assert quant["source_model_id"] == source.model_id and quant["calibration"]["routes"] == "tune"
    assert int8.describe()["loss"] == source.describe()["loss"]
    assert quant["parity_max_abs_diff"] <= quantize_module.PARITY_TOLERANCE
    weights = weight_types(onnx.load(tmp_path / "q" / "m-int8.onnx"))
    assert weights["Conv"] == [onnx.TensorProto.INT8] * 5  # every convolution's weights stored in int8
    assert weights["Gemm"] and set(weights["Gemm"]) == {onnx.TensorProto.FLOAT}  # the linear layers' weights stay float
    frames = np.random.default_rng(2).integers(0, 256, (3, 66, 200, 3), dtype=np.uint8)
    assert np.abs(int8.predict_bands(frames) - source.predict_bands(frames)).max() > 0  # it is another model, not a copy
    on_data = quantize_module.quantize(tmp_path / "m.onnx", tmp_path / "d.onnx", calibration_frames=32, data=small_dataset)
    assert on_data["calibration"]["dataset"] == str(small_dataset) and on_data["model_id"] != info["model_id"]
    with pytest.raises(ExportError, match="needed"):
        quantize_module.quantize(tmp_path / "m.onnx", tmp_path / "big.onnx", calibration_frames=10**6, data=small_dataset)
    with pytest.raises(ExportError, match="already quantised"):
        quantize_module.quantize(tmp_path / "q" / "m-int8.onnx", tmp_path / "twice.onnx", calibration_frames=8)
    monkeypatch.setattr(quantize_module, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="not written"):
        quantize_module.quantize(tmp_path / "m.onnx", tmp_path / "refused.onnx", calibration_frames=8)
    assert not (tmp_path / "refused.onnx").exists()


def test_broken_or_truncated_model_files_are_rejected_with_the_reason(trained_run, tmp_path):
    export(trained_run, tmp_path / "good.onnx")
    data = (tmp_path / "good.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.onnx").write_bytes(b"\x00not an onnx file")
    with pytest.raises(PolicyError, match="cut.onnx: not a loadable ONNX model"):
        OnnxPolicy.load(tmp_path / "cut.onnx")
    with pytest.raises(PolicyError, match="junk.onnx: not a loadable ONNX model"):
        OnnxPolicy.load(tmp_path / "junk.onnx")
    with pytest.raises(PolicyError, match="missing.onnx: cannot read"):
        OnnxPolicy.load(tmp_path / "missing.onnx")
    proto = onnx.load(tmp_path / "good.onnx")
    del proto.metadata_props[:]
    onnx.save(proto, tmp_path / "bare.onnx")
    with pytest.raises(PolicyError, match="no 'metasteer.preprocess' metadata"):
        OnnxPolicy.load(tmp_path / "bare.onnx")
    proto = onnx.load(tmp_path / "good.onnx")
    proto.ir_version = 99  # a file from a newer exporter than this onnxruntime reads: the reason, not its source location
    onnx.save(proto, tmp_path / "future.onnx")
    with pytest.raises(PolicyError, match="future.onnx: not a loadable ONNX model .*IR version: 99"):
        OnnxPolicy.load(tmp_path / "future.onnx")


def test_evaluator_is_deterministic_and_reports_cis(trained_run, tmp_path):
    export(trained_run, tmp_path / "m.onnx")
    cfg = EvalConfig(episodes=2, seed=5, workers=2, max_time_s=20.0)
    world = WorldConfig(abnormal_rate=0.2)
    a = evaluate(tmp_path / "m.onnx", world, cfg, tmp_path / "a", progress=False)
    b = evaluate(tmp_path / "m.onnx", world, cfg, tmp_path / "b", progress=False)
    assert a["episodes"] == b["episodes"]
    for key in ("time_without_infractions_s", "route_completion", "driving_score", "collisions", "lane_invasions"):
        assert set(a[key]) >= {"mean", "ci95"}
    assert (tmp_path / "a" / "trajectories.png").exists()
    other = evaluate(tmp_path / "m.onnx", world, EvalConfig(episodes=2, seed=5, workers=1, max_time_s=20.0, split="tune"), progress=False)
    assert [e["seed"] for e in other["episodes"]] != [e["seed"] for e in a["episodes"]]  # tuning never sees eval routes


def test_the_input_contract_travels_from_the_dataset_to_the_onnx_file(tmp_path):
    """A dataset recorded at another frame size trains a model of that input size, and its ONNX file
    carries the dataset's band and size, which evaluation (and the node) then use."""
    from simulator.base import pilotnet_camera
    from training.data.collect import CollectConfig, collect
    from training.fit import Run, TrainConfig
    from training.losses import LossSpec
    from training.meta import MetaConfig

    world = WorldConfig(width=160, height=66, abnormal_rate=0.2)
    collect(tmp_path / "data", world, CollectConfig(frames=300, seed=3, frames_per_shard=100, workers=1), progress=False)
    Run(tmp_path / "run", tmp_path / "data", None, LossSpec(), MetaConfig(),
        TrainConfig(steps=6, batch_size=8, width_mult=0.25, eval_every=6, warmup_steps=2)).run(progress=False)
    export(tmp_path / "run", tmp_path / "m.onnx")
    policy = OnnxPolicy.load(tmp_path / "m.onnx")
    camera = pilotnet_camera(160, 66)
    assert (policy.spec.width, policy.spec.height) == (160, 66)
    assert (policy.spec.crop_top, policy.spec.crop_bottom) == pytest.approx((camera.crop_top, camera.crop_bottom))
    assert np.isfinite(policy.steer(np.zeros((600, 800, 4), np.uint8), "bgra8"))  # a bridge frame, cut by the file's spec
    res = evaluate(tmp_path / "m.onnx", WorldConfig(abnormal_rate=0.0), EvalConfig(episodes=1, seed=0, workers=1, max_time_s=3.0),
                   progress=False)
    assert res["episodes"][0]["distance_m"] > 0


def test_onnx_steering_equals_torch_on_real_frames_and_a_disagreement_writes_no_file(trained_run, tmp_path, monkeypatch):
    import torch

    import training.export as export_module
    from metasteer.preprocess import to_tensor
    from training.models.io import load_model

    export(trained_run, tmp_path / "m.onnx")
    frames = export_module.parity_frames(OnnxPolicy.load(tmp_path / "m.onnx").spec, n=12, seed=3)
    model, _ = load_model(trained_run)
    with torch.no_grad():
        expected = model(torch.from_numpy(to_tensor(frames))).numpy()
    assert np.abs(OnnxPolicy.load(tmp_path / "m.onnx").predict_bands(frames) - expected).max() < 1e-4
    monkeypatch.setattr(export_module, "PARITY_TOLERANCE", -1.0)  # any difference, even 0, now fails the check
    with pytest.raises(export_module.ExportError, match="disagree"):
        export(trained_run, tmp_path / "refused.onnx")
    assert not list(tmp_path.glob("refused.onnx*"))  # neither the file nor a candidate is left behind


def test_shipped_models_load_have_cards_and_the_int8_copy_is_of_the_shipped_float_model():
    import training.export as export_module
    from tests.conftest import ROOT
    from training.quantize import PARITY_TOLERANCE

    policies = {p.stem: OnnxPolicy.load(p) for p in sorted((ROOT / "models").glob("*.onnx"))}
    assert {"mse", "oversample", "learned", "learned-int8"} <= set(policies)
    for name, policy in policies.items():  # each card names the file it describes by its current model id
        assert f"model id (SHA-256 prefix): `{policy.model_id}`" in (ROOT / "models" / f"{name}.md").read_text(), name
    int8, source = policies["learned-int8"], policies["learned"]
    assert int8.describe()["quantization"]["source_model_id"] == source.model_id  # re-quantise whenever learned.onnx changes
    assert f"`learned.onnx` (model id `{source.model_id}`)" in (ROOT / "models" / "learned-int8.md").read_text()
    assert set(weight_types(onnx.load(ROOT / "models" / "learned-int8.onnx"))["Gemm"]) == {onnx.TensorProto.FLOAT}
    frames = export_module.parity_frames(source.spec, n=16, seed=7)
    assert np.abs(int8.predict_bands(frames) - source.predict_bands(frames)).max() <= PARITY_TOLERANCE


def test_a_step_timer_changes_no_number_of_the_drive_and_sees_each_of_its_steps():
    """``drive_episode`` with a ``StepTimer``: the same episode as without, and the timer saw one command and
    one world step per recorded step (plus the reset)."""
    from tests.conftest import ROOT
    from training.evaluate import StepTimer, drive_episode, route_seed

    policy, world, seed = OnnxPolicy.load(ROOT / "models" / "mse.onnx"), WorldConfig(abnormal_rate=0.3), route_seed(0, 1, "tune")
    plain = drive_episode(policy, world, seed, 4.0, actuation_delay_ticks=2)
    timer = StepTimer()
    timed = drive_episode(policy, world, seed, 4.0, actuation_delay_ticks=2, timer=timer)
    assert timed == plain
    n = len(plain["steps"]["category"])
    assert n >= 4.0 / FIXED_DELTA_S and timer.calls == {"policy_s": n, "world_camera_s": n + 1}
    assert all(s > 0 for s in timer.spent_s.values())


def test_bench_closed_loop_times_the_routes_drive_episode_drives(monkeypatch):
    """`bench closed-loop` has no driving loop of its own: every route step it reports is one that
    ``drive_episode`` drove (per core and per machine, each architecture), on the tuning routes of its seed."""
    import training.bench.closed_loop as bench
    from training.evaluate import drive_episode, route_seed

    driven = []

    def spy(*args, **kwargs):
        episode = drive_episode(*args, **kwargs)
        driven.append((episode["seed"], len(episode["steps"]["category"])))
        return episode

    monkeypatch.setattr(bench, "drive_episode", spy)
    out = bench.bench_closed_loop(routes=2, max_time_s=2.0, workers=1, repeats=1)
    seeds = [route_seed(0, i, "tune") for i in range(2)]
    assert [s for s, _ in driven] == seeds * 4  # shipped per core, per machine; pilotnet per core, per machine
    for k, arch in enumerate(("shipped", "pilotnet")):
        a = out["architectures"][arch]
        assert a["route_steps"] == sum(n for _, n in driven[4 * k:4 * k + 2]) == sum(n for _, n in driven[4 * k + 2:4 * k + 4])
        assert a["ms_per_step"] == pytest.approx(a["world_camera_ms_per_step"] + a["policy_ms_per_step"] + a["judging_ms_per_step"])
        assert a["policy_ms_per_step"] > 0 and a["route_steps_per_s_1_workers_wall"] > 0
    shipped, pilotnet = out["architectures"]["shipped"], out["architectures"]["pilotnet"]
    assert shipped["route_steps"] == pilotnet["route_steps"] >= 2 * 2.0 / FIXED_DELTA_S  # the expert drives, never the network
    assert out["speedup"] > 0 and set(out) >= {"speedup_per_core", "target_speedup", "meets_target"}
