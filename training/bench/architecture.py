"""``metasteer bench architecture``: does a cheaper PilotNet drive as well? (closed loop, paired, seeds pooled)

For every training seed: one collection (the pipeline's stage 1 at ``--size``), then per architecture the
pipeline's stages 2-4 (MSE base model, DAgger rounds, DAgger kept only if it helps on tuning routes): the
model every pipeline trial would start from. All architectures of a seed drive the same routes, drawn in
the tuning namespace from their own seed (``ARCH_ROUTES + seed``): held out from training, and never the
final evaluation routes (the architecture is a choice; evaluation routes choose nothing).

Every rare scene of those routes is also replayed by every architecture from the expert's state before it
(``training.scenarios``): the same scenes for all, paired per scene, where on the routes a model that crashes
early meets fewer scenes. Acceptance, per candidate against the reference (the first architecture), over
every seed's scenes and routes pooled: the 95 % lower bound of the scenario-level pass-rate difference >=
-``MARGIN`` over all rare scenes and over pedestrians (paired bootstrap over scenes), and the upper bound of
the route-level normal-road infractions/km difference <= +``MARGIN`` (paired bootstrap over routes); and since
2026-12-02 the same bounds with the seed-to-seed spread counted (``seed_aware``: the study's two-level bootstrap
and t-interval over seeds, both; so at least two seeds). The cheapest accepted architecture (onnxruntime ms
per frame, one thread) is the one to ship. An architecture may
name a training precision (``1.0:elu:bf16``): the same graph as its fp32 twin, so the acceptance is what counts
there; its gain is training time (``bench train-step``; ``base_train_s_per_seed`` is ~0 for runs reused from ``--work``).

``keep``: a directory (small enough to commit) that receives every finished seed's comparison, its base-training
times and the ONNX files timed; a seed found there is read, not collected, trained or driven again, so a bench
longer than one machine's life resumes from what was kept (``--work`` holds the data and runs, gigabytes).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from simulator.factory import WorldConfig
from training.compare import DEFAULT_SPEED_MPS, GROUPS, compare, paired_diff
from training.files import atomic_write_bytes, read_json
from training.precision import PRECISIONS
from training.study_stats import pool

ARCH_ROUTES = 0xA7C4  # route seeds of this bench: their own, apart from every pipeline's tuning routes
MARGIN = 0.05
SCENE_CHECKED = ("pass_rate_rare", "pass_rate_pedestrian")  # lower bounds, scenario level
ROUTE_CHECKED = ("normal_infractions_per_km",)  # upper bound, route level


def parse_arch(text: str) -> tuple[float, str, str]:
    """``"0.5:relu"`` -> (0.5, "relu", "fp32"); ``"1.0:elu:bf16"``: the same net trained in bfloat16 autocast."""
    parts = text.split(":")
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"architecture {text!r}: expected width[:activation[:precision]], e.g. 0.75:elu or 1.0:elu:bf16")
    width, activation, precision = (parts + ["", ""])[:3]
    if (precision or "fp32") not in PRECISIONS:
        raise ValueError(f"architecture {text!r}: precision {precision!r} is not one of {PRECISIONS}")
    return float(width), activation or "elu", precision or "fp32"


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


def _pooled(blocks: list[dict], name: str, key: str = "per_route") -> dict:
    """One model's per-unit table over every seed's units, concatenated (``key``: routes or the scenarios' scenes)."""
    tables = [(b["scenarios"] if key == "per_scene" else b)["models"][name][key] for b in blocks]
    return {k: np.concatenate([np.asarray(t[k], float) for t in tables]) for k in tables[0]}


def _counts(table: dict) -> dict:
    """Scenes passed and met per group, from a per-unit table (routes or scenes)."""
    return {g: {"passed": int(table[f"{g}_passed"].sum()), "n": int(table[f"{g}_n"].sum())} for g in GROUPS}


def scene_diffs(reference: dict, candidate: dict) -> dict:
    """``candidate - reference`` pass rates on the same scenes, with the paired bootstrap 95 % interval over scenes."""
    level = pool({0: {"reference": reference, "candidate": candidate}}, [("candidate", "reference")], "scenario")
    estimates = {k: level.difference("candidate", "reference", k).estimate for k in SCENE_CHECKED}
    return {k: {"diff": e.value, "ci95": e.bootstrap_ci95} for k, e in estimates.items()}


def accepted(scenes: dict, routes: dict) -> bool:
    """The acceptance rule of the module docstring: ``scenes`` from ``scene_diffs``, ``routes`` from ``paired_diff``;
    an interval that could not be formed (no scene of the kind) accepts nothing."""
    lows = [scenes[k]["ci95"] for k in SCENE_CHECKED]
    highs = [routes[k]["ci95"] for k in ROUTE_CHECKED]
    return (all(ci is not None and ci[0] >= -MARGIN for ci in lows)
            and all(ci is not None and ci[1] <= MARGIN for ci in highs))


def seed_aware(per_seed: list[dict], seeds: list[int], reference: str, candidate: str) -> dict:
    """``candidate - reference`` on the rule's statistics with the study's estimator (``study_stats.pool``: a
    two-level bootstrap, seeds then scenes or routes within a seed, and a t-interval over the per-seed
    differences), so that the seed-to-seed spread counts, which pooling every seed's scenes as one sample hides."""
    def level(key: str, units: str):
        blocks = [b["scenarios"] if key == "scenario" else b for b in per_seed]
        return pool({s: {"reference": b["models"][reference][units], "candidate": b["models"][candidate][units]}
                     for s, b in zip(seeds, blocks)}, [("candidate", "reference")], key)

    out = {}
    for lv, stats in ((level("scenario", "per_scene"), SCENE_CHECKED), (level("route", "per_route"), ROUTE_CHECKED)):
        for k in stats:
            e = lv.difference("candidate", "reference", k).estimate
            out[k] = {"diff": e.value, "bootstrap_ci95": e.bootstrap_ci95, "t_ci95": e.t_ci95}
    return out


def accepted_seed_aware(diffs: dict) -> bool:
    """The rule's bounds held by both of ``seed_aware``'s intervals (one seed forms no t-interval: nothing accepted)."""
    cis = {k: (d["bootstrap_ci95"], d["t_ci95"]) for k, d in diffs.items()}
    return (all(ci is not None and ci[0] >= -MARGIN for k in SCENE_CHECKED for ci in cis[k])
            and all(ci is not None and ci[1] <= MARGIN for k in ROUTE_CHECKED for ci in cis[k]))


def kept_seed(path: Path, archs: list[str], size: str, ecfg, world_cfg: WorldConfig) -> dict | None:
    """A kept seed's record, if ``path`` exists; refused (ValueError naming it) when it is corrupt or was made
    with other settings."""
    if not path.exists():
        return None
    kept = read_json(path)
    try:
        comparison = kept["comparison"]
        made = {"archs": kept["archs"], "size": kept["size"], "routes": comparison["config"], "abnormal_rate": comparison["abnormal_rate"],
                "world": comparison["world"], "speed": comparison.get("target_speed_mps", DEFAULT_SPEED_MPS)}
        if "base_train_s" not in kept or not {"models", "scenarios"} <= comparison.keys():  # what pooling reads
            raise KeyError("base_train_s, models or scenarios")
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a seed this bench kept (no {exc})") from None
    asked = {"archs": archs, "size": size, "routes": asdict(ecfg), "abnormal_rate": world_cfg.abnormal_rate, "world": world_cfg.world,
             "speed": world_cfg.target_speed_mps}
    wrong = [k for k in made if made[k] != asked[k]]
    if wrong:
        raise ValueError(f"{path}: kept by a bench with other {', '.join(wrong)} ({', '.join(f'{made[k]} vs {asked[k]}' for k in wrong)}); "
                         "move it away or keep elsewhere")
    return kept


def bench_architecture(work: Path, archs: list[str], seeds: list[int], size: str = "demo", episodes: int = 48,
                       world_cfg: WorldConfig | None = None, progress: bool = True, keep: Path | None = None) -> dict:
    from training.evaluate import EvalConfig
    from training.export import export, git_commit
    from training.pipeline import PipelineConfig, collect_data, train_base

    work, world_cfg = Path(work), world_cfg or WorldConfig()
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds {seeds}: a seed given twice would pool its scenes twice")
    names, parsed = [a.replace(":", "-") for a in archs], [parse_arch(a) for a in archs]  # a typo fails before any work
    onnx_dir = Path(keep or work) / "onnx"
    plans = []  # every kept seed is read and checked before any work: a wrong one fails now, not hours in
    for seed in seeds:
        cfg = PipelineConfig(seed=seed, size=size)
        n, eval_world = cfg.sizes(), replace(world_cfg, abnormal_rate=cfg.eval_abnormal_rate)
        ecfg = EvalConfig(episodes=episodes, seed=ARCH_ROUTES + seed, workers=2, split="tune", max_time_s=n["max_time_s"])
        plans.append((seed, cfg, n, eval_world, ecfg, kept_seed(Path(keep) / f"seed-{seed}.json", archs, size, ecfg, eval_world) if keep else None))
    missing = [str(onnx_dir / f"{n}.onnx") for n in names if not (onnx_dir / f"{n}.onnx").exists()]
    if missing and all(kept is not None for *_, kept in plans):
        raise ValueError(f"every seed is kept but the timed ONNX files are not: {', '.join(missing)}")
    per_seed, timings = [], {}
    for seed, cfg, n, eval_world, ecfg, kept in plans:
        if kept is not None:
            per_seed.append(kept["comparison"])
            for name in names:
                timings.setdefault(name, []).append(kept["base_train_s"][name])
            continue
        root = work / f"seed-{seed}"
        data, meta = collect_data(root / "data", world_cfg, cfg, n, progress)
        starts, seed_s = [], {}
        for (width, activation, precision), name in zip(parsed, names):
            t = time.perf_counter()
            base = train_base(root / name, data, meta, world_cfg, replace(cfg, width_mult=width, activation=activation, precision=precision),
                              n, {}, progress)
            seed_s[name] = round(time.perf_counter() - t, 1)
            timings.setdefault(name, []).append(seed_s[name])
            starts.append(Path(base["start"]))
        per_seed.append(compare(starts, eval_world, ecfg, root / "compare", names=names, progress=progress, reuse=True, scenarios=True))
        for name, block in zip(names, per_seed[-1]["models"].values()):
            if not (onnx_dir / f"{name}.onnx").exists():  # the architectures' cost is timed on these files, whichever seed made them
                export(Path(block["model"]), onnx_dir / f"{name}.onnx")
        if keep:
            comparison = {k: v for k, v in per_seed[-1].items() if k != "plot"}
            record = {"seed": seed, "archs": archs, "size": size, "git_commit": git_commit(), "base_train_s": seed_s, "comparison": comparison}
            Path(keep).mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(Path(keep) / f"seed-{seed}.json", (json.dumps(record) + "\n").encode())
    ms = {name: onnx_ms_per_frame(onnx_dir / f"{name}.onnx") for name in names}
    tables = {name: (_pooled(per_seed, name), _pooled(per_seed, name, "per_scene")) for name in names}
    ref, ref_scenes = tables[names[0]]
    result = {"archs": archs, "seeds": seeds, "size": size, "routes_per_seed": episodes, "margin": MARGIN, "onnx_ms_per_frame": ms,
              "base_train_s_per_seed": timings, "models": {}}
    for name in names:
        t, scenes_t = tables[name]
        result["models"][name] = {
            "pass_rate": _counts(t),
            "normal_infractions_per_km": float(t["normal_infractions"].sum() / max(t["normal_km"].sum(), 1e-9)),
            "per_seed_rare_pass_rate": [b["models"][name]["pass_rate"]["rare"]["rate"] for b in per_seed],
            "scenario_pass_rate": _counts(scenes_t)}
        if name != names[0]:
            routes, scenes = paired_diff(ref, t), scene_diffs(ref_scenes, scenes_t)
            result["models"][name]["paired_diff"] = {k: routes[k] for k in ROUTE_CHECKED + SCENE_CHECKED + ("pass_rate_obstacle", "pass_rate_sharp_bend")}
            result["models"][name]["scenario_paired_diff"] = scenes
            result["models"][name]["seed_aware_diff"] = seed_aware(per_seed, seeds, names[0], name)
            result["models"][name]["accepted_pooled"] = accepted(scenes, routes)
            result["models"][name]["accepted"] = (result["models"][name]["accepted_pooled"]
                                                  and accepted_seed_aware(result["models"][name]["seed_aware_diff"]))
    ok = [names[0]] + [k for k in names[1:] if result["models"][k]["accepted"]]
    result["cheapest_accepted"] = min(ok, key=lambda k: ms[k])
    for out in {work, Path(keep or work)}:
        out.mkdir(parents=True, exist_ok=True)
        (out / "architecture.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
