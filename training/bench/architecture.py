"""``metasteer bench architecture``: does a cheaper PilotNet drive as well? (closed loop, paired, seeds pooled)

For every training seed: one collection (the pipeline's stage 1 at ``--size``), then per architecture the
pipeline's stages 2-4 (MSE base model, DAgger rounds, DAgger kept only if it helps on tuning routes): the
model every pipeline trial would start from. All architectures of a seed drive the same routes, drawn in
the tuning namespace from their own seed (``ARCH_ROUTES + seed``): held out from training, and never the
final evaluation routes (the architecture is a choice; evaluation routes choose nothing).

Acceptance, per candidate against the reference (the first architecture), over the routes of every seed
pooled (paired bootstrap over routes): the 95 % lower bound of the pass-rate difference >= -``MARGIN`` over
all rare scenes and over pedestrians, and the upper bound of the normal-road infractions/km difference
<= +``MARGIN``. The cheapest accepted architecture (onnxruntime ms per frame, one thread) is the one to ship.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from simulator.factory import WorldConfig
from training.compare import compare, paired_diff

ARCH_ROUTES = 0xA7C4  # route seeds of this bench: their own, apart from every pipeline's tuning routes
MARGIN = 0.05
CHECKED = ("pass_rate_rare", "pass_rate_pedestrian", "normal_infractions_per_km")


def parse_arch(text: str) -> tuple[float, str]:
    """``"0.5:relu"`` -> (0.5, "relu")."""
    width, _, activation = text.partition(":")
    return float(width), activation or "elu"


def onnx_ms_per_frame(path: Path, repeats: int = 300) -> float:
    """Median onnxruntime time of one frame, one intra-op thread (the node's setting)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    x = np.random.default_rng(0).uniform(-1, 1, (1, *inp.shape[1:])).astype(np.float32)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        session.run(None, {inp.name: x})
        times.append(time.perf_counter() - t)
    return float(np.median(times[repeats // 10:]) * 1e3)


def _pooled(blocks: list[dict], name: str) -> dict:
    return {k: np.concatenate([np.asarray(b["models"][name]["per_route"][k], float) for b in blocks]) for k in
            blocks[0]["models"][name]["per_route"]}


def accepted(diffs: dict) -> bool:
    """The acceptance rule of the module docstring, on ``paired_diff``'s output."""
    lows = [(diffs[k]["ci95"] or [-np.inf, np.inf]) for k in CHECKED]
    return lows[0][0] >= -MARGIN and lows[1][0] >= -MARGIN and lows[2][1] <= MARGIN


def bench_architecture(work: Path, archs: list[str], seeds: list[int], size: str = "demo", episodes: int = 48,
                       world_cfg: WorldConfig | None = None, progress: bool = True) -> dict:
    from training.evaluate import EvalConfig
    from training.export import export
    from training.pipeline import PipelineConfig, collect_data, train_base

    work, world_cfg = Path(work), world_cfg or WorldConfig()
    names = [a.replace(":", "-") for a in archs]
    per_seed, timings = [], {}
    for seed in seeds:
        cfg = PipelineConfig(seed=seed, size=size)
        n = cfg.sizes()
        root = work / f"seed-{seed}"
        data, meta = collect_data(root / "data", world_cfg, cfg, n, progress)
        starts = []
        for arch, name in zip(archs, names):
            width, activation = parse_arch(arch)
            t = time.perf_counter()
            base = train_base(root / name, data, meta, world_cfg, replace(cfg, width_mult=width, activation=activation), n, {}, progress)
            timings.setdefault(name, []).append(time.perf_counter() - t)
            starts.append(Path(base["start"]))
        ecfg = EvalConfig(episodes=episodes, seed=ARCH_ROUTES + seed, workers=2, split="tune", max_time_s=n["max_time_s"])
        per_seed.append(compare(starts, replace(world_cfg, abnormal_rate=cfg.eval_abnormal_rate), ecfg, root / "compare",
                                names=names, progress=progress, reuse=True))
    ms = {}
    for name, block in zip(names, per_seed[0]["models"].values()):
        onnx = work / "onnx" / f"{name}.onnx"
        if not onnx.exists():
            export(Path(block["model"]), onnx)
        ms[name] = onnx_ms_per_frame(onnx)
    ref = _pooled(per_seed, names[0])
    result = {"archs": archs, "seeds": seeds, "size": size, "routes_per_seed": episodes, "margin": MARGIN, "onnx_ms_per_frame": ms,
              "base_train_s_per_seed": {k: [round(x, 1) for x in v] for k, v in timings.items()}, "models": {}}
    for name in names:
        t = _pooled(per_seed, name)
        result["models"][name] = {
            "pass_rate": {g: {"passed": int(t[f"{g}_passed"].sum()), "n": int(t[f"{g}_n"].sum())}
                          for g in ("rare", "pedestrian", "obstacle", "sharp_bend")},
            "normal_infractions_per_km": float(t["normal_infractions"].sum() / max(t["normal_km"].sum(), 1e-9)),
            "per_seed_rare_pass_rate": [b["models"][name]["pass_rate"]["rare"]["rate"] for b in per_seed]}
        if name != names[0]:
            diffs = paired_diff(ref, t)
            result["models"][name]["paired_diff"] = {k: diffs[k] for k in CHECKED + ("pass_rate_obstacle", "pass_rate_sharp_bend")}
            result["models"][name]["accepted"] = accepted(diffs)
    ok = [names[0]] + [k for k in names[1:] if result["models"][k]["accepted"]]
    result["cheapest_accepted"] = min(ok, key=lambda k: ms[k])
    (work / "architecture.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
