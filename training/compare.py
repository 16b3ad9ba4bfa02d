"""``metasteer compare``: judge models per rare scene, on the same routes (paired).

Every model drives the same held-out routes (``evaluate``'s code path: runtime ``OnnxPolicy`` and
speed controller). Each rare-scene encounter (``simulator.encounters``: a pedestrian, an
obstacle or a sharp bend met on the route) *passes* when no counted infraction happens from its
onset until ``PASS_AFTER_S`` after its last frame; an encounter cut off by the time limit is not
judged. Per model: pass rate per category and over all rare scenes, infractions per km on the
normal road (outside every encounter's window), route completion, driving score, time without
infractions, and the on-policy error (|policy - expert| steering on the states the policy itself
visits) per category. Per model after the first: the paired difference against the first, with a
bootstrap 95 % interval over routes. With ``scenarios``, every scene is also replayed by every model
from the expert's state before it (``training.scenarios``): the same scenes for all, paired per scene.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from metasteer.policy import OnnxPolicy
from simulator.base import FIXED_DELTA_S, SCENE_CATEGORIES
from simulator.encounters import RARE_CATEGORIES, encounters
from simulator.factory import WorldConfig
from training.evaluate import EvalConfig, as_onnx, drive_routes, mean_ci95, plot_trajectories
from training.figures import pyplot

PASS_AFTER_S = 2.0  # the ego has passed the scene this long after its last frame
MERGE_GAP_S = 1.0  # same-category frames closer than this are one encounter
DEFAULT_SPEED_MPS = WorldConfig().target_speed_mps  # a saved result without its cruise speed was driven at this one
ROUTE_KEYS = ("route_completion", "driving_score", "time_without_infractions_s")
GROUPS = RARE_CATEGORIES + ("rare",)
BOOTSTRAP_SAMPLES = 2000


def judge_episode(steps: dict, truncated: bool) -> dict:
    """Scenes and normal-road numbers of one episode's per-step record (see ``drive_episode``)."""
    n = len(steps["category"])
    after = round(PASS_AFTER_S / FIXED_DELTA_S)
    infraction = np.asarray(steps["infraction"], dtype=bool)
    distance = np.asarray(steps["distance_m"], dtype=float)
    in_window = np.zeros(n, dtype=bool)
    scenes = []
    for enc in encounters(steps["category"], round(MERGE_GAP_S / FIXED_DELTA_S)):
        stop = min(enc.end + after, n - 1)
        in_window[enc.start:stop + 1] = True
        if truncated and enc.end + after > n - 1 and not infraction[enc.start:].any():
            continue  # the time limit cut it off before it was decided
        scenes.append({"category": enc.category, "start_s": enc.start * FIXED_DELTA_S,
                       "passed": not bool(infraction[enc.start:stop + 1].any())})
    err = np.abs(np.asarray(steps["steer"], dtype=float) - np.asarray(steps["expert_steer"], dtype=float))
    cats = np.asarray(steps["category"])
    return {"scenes": scenes, "normal_infractions": int(infraction[~in_window].sum()),
            "normal_distance_m": float(distance[~in_window].sum()),
            "abs_error_sum": {c: float(err[cats == c].sum()) for c in SCENE_CATEGORIES},
            "abs_error_n": {c: int((cats == c).sum()) for c in SCENE_CATEGORIES}}


def _route_table(episodes: list[dict]) -> dict[str, np.ndarray]:
    """Per-route counts and values: arrays of length n_routes, summed over any resample of routes."""
    judged = [judge_episode(e["steps"], e["truncated"]) for e in episodes]
    t = {}
    for g in GROUPS:
        t[f"{g}_n"] = np.array([sum(1 for s in j["scenes"] if g in ("rare", s["category"])) for j in judged], float)
        t[f"{g}_passed"] = np.array([sum(1 for s in j["scenes"] if g in ("rare", s["category"]) and s["passed"]) for j in judged], float)
    t["normal_infractions"] = np.array([j["normal_infractions"] for j in judged], float)
    t["normal_km"] = np.array([j["normal_distance_m"] / 1000.0 for j in judged], float)
    for c in SCENE_CATEGORIES:
        t[f"err_{c}"] = np.array([j["abs_error_sum"][c] for j in judged], float)
        t[f"errn_{c}"] = np.array([j["abs_error_n"][c] for j in judged], float)
    for k in ROUTE_KEYS:
        t[k] = np.array([e["metrics"][k] for e in episodes], float)
    return t


def _ratio(num: np.ndarray, den: np.ndarray) -> float | None:
    d = float(den.sum())
    return float(num.sum()) / d if d > 0 else None


def _pass_rate(t: dict, g: str, idx: np.ndarray | slice = slice(None)) -> float | None:
    return _ratio(t[f"{g}_passed"][idx], t[f"{g}_n"][idx])


def _nipkm(t: dict, idx: np.ndarray | slice = slice(None)) -> float | None:
    return _ratio(t["normal_infractions"][idx], t["normal_km"][idx])


STATS = {f"pass_rate_{g}": (lambda t, idx, g=g: _pass_rate(t, g, idx)) for g in GROUPS}
STATS["normal_infractions_per_km"] = _nipkm
STATS.update({k: (lambda t, idx, k=k: float(t[k][idx].mean())) for k in ROUTE_KEYS})


def bootstrap_ci(stat, n_routes: int, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES) -> list[float] | None:
    """95 % percentile interval of ``stat(idx)`` over routes resampled with replacement (``idx``:
    route indices); resamples where the statistic is undefined (no scene of the kind) are dropped."""
    rng = np.random.default_rng(seed)
    values = [stat(rng.integers(0, n_routes, n_routes)) for _ in range(samples)]
    values = np.array([v for v in values if v is not None], float)
    if len(values) < samples // 2:
        return None
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def paired_diff(a: dict, b: dict, seed: int = 0) -> dict:
    """``b - a`` for every statistic, on the same routes, with a paired bootstrap 95 % interval."""
    n = len(a["route_completion"])
    out = {}
    for name, fn in STATS.items():
        va, vb = fn(a, slice(None)), fn(b, slice(None))

        def diff(idx, fn=fn):
            x, y = fn(a, idx), fn(b, idx)
            return None if x is None or y is None else y - x

        out[name] = {"diff": None if va is None or vb is None else vb - va, "ci95": bootstrap_ci(diff, n, seed)}
    return out


def summarise(episodes: list[dict], seed: int = 0) -> tuple[dict, dict]:
    """The per-model JSON block, and the per-route table it came from."""
    t = _route_table(episodes)
    n = len(episodes)
    pass_rate = {g: {"passed": int(t[f"{g}_passed"].sum()), "n": int(t[f"{g}_n"].sum()), "rate": _pass_rate(t, g),
                     "ci95": bootstrap_ci(lambda idx, g=g: _pass_rate(t, g, idx), n, seed)} for g in GROUPS}
    rare = pass_rate["rare"]["rate"]
    return {"pass_rate": pass_rate, "failure_rate": None if rare is None else 1.0 - rare,
            "normal_infractions_per_km": _nipkm(t),
            "onpolicy_mae": {c: _ratio(t[f"err_{c}"], t[f"errn_{c}"]) for c in SCENE_CATEGORIES},
            **{k: mean_ci95(list(t[k])) for k in ROUTE_KEYS}}, t


def source_sha256(model: str | Path) -> str:
    """Identity of what a model was made from: the ONNX file's bytes, or a run's ``model.pt`` (a run
    exported twice gives two files, as the export records the git commit)."""
    model = Path(model)
    return hashlib.sha256((model if model.suffix in (".onnx", ".pt") else model / "model.pt").read_bytes()).hexdigest()


def saved_comparison(out_dir: Path | None, names: list[str], models: list[str | Path], world_cfg: WorldConfig, cfg: EvalConfig,
                     against: dict[str, str]) -> dict | None:
    """``out_dir``'s saved result, if it judged these models (same ``source_sha256``) under these names on
    these routes with these extra pairs; else None."""
    if out_dir is None or not (Path(out_dir) / "compare.json").exists():
        return None
    held = json.loads((Path(out_dir) / "compare.json").read_text())
    same = (held["config"] == asdict(cfg) and held["world"] == world_cfg.world and held["abnormal_rate"] == world_cfg.abnormal_rate
            and held.get("target_speed_mps", DEFAULT_SPEED_MPS) == world_cfg.target_speed_mps
            and list(held["models"]) == names and held.get("against", {}) == against)
    return held if same and all(held["models"][n].get("source_sha256") == source_sha256(m) for n, m in zip(names, models)) else None


def compare(models: list[str | Path], world_cfg: WorldConfig, cfg: EvalConfig, out_dir: Path | None = None,
            names: list[str] | None = None, progress: bool = True, against: dict[str, str] | None = None, reuse: bool = False,
            videos: int = 0, scenarios: bool = False) -> dict:
    """Drive every model on the same routes and judge it per rare scene; see the module docstring.

    ``against``: further paired differences, model name -> the name it is compared with (every model
    after the first is compared with the first anyway). ``reuse``: return ``out_dir``'s saved result
    when it judged the same models (same ``source_sha256``) on the same routes, instead of driving again.
    ``videos``: write that many encounter videos to ``out_dir`` (``training.video``). ``scenarios``: also replay
    every scene of these routes from a common state for every model (``training.scenarios``), in the
    result's ``scenarios``."""
    names = names or [Path(m).stem if Path(m).suffix == ".onnx" else Path(m).name for m in models]
    if len(set(names)) != len(names):
        names = [str(m) for m in models]
    against = dict(against or {})
    held = saved_comparison(out_dir, names, models, world_cfg, cfg, against) if reuse else None
    if held is not None and (not scenarios or "scenarios" in held):
        return held
    with tempfile.TemporaryDirectory() as tmp:
        paths = [as_onnx(m, Path(tmp) / str(k)) for k, m in enumerate(models)]
        ids = [OnnxPolicy.load(p).model_id for p in paths]
        per_model = drive_routes(paths, world_cfg, cfg, progress, desc="compare")
        if videos and out_dir is not None:
            from training.video import encounter_videos  # it imports this module

            written = encounter_videos(names, paths, per_model, world_cfg, cfg, Path(out_dir), videos)
        if scenarios:
            from training.scenarios import scenario_compare  # it imports this module

            replayed = scenario_compare(paths, names, world_cfg, cfg, against, progress)
    result: dict = {"world": world_cfg.world, "abnormal_rate": world_cfg.abnormal_rate, "target_speed_mps": world_cfg.target_speed_mps,
                    "config": asdict(cfg),
                    "routes": [e["seed"] for e in per_model[0]], "against": against, "models": {}}
    tables = []
    for name, model, model_id, episodes in zip(names, models, ids, per_model):
        block, table = summarise(episodes, cfg.seed)
        result["models"][name] = {"model": str(model), "model_id": model_id, "source_sha256": source_sha256(model), **block,
                                  "per_route": {k: v.tolist() for k, v in table.items()}}  # to pool routes across runs
        tables.append(table)
    for name, table in zip(names[1:], tables[1:]):
        result["models"][name]["paired_diff"] = {"against": names[0], **paired_diff(tables[0], table, cfg.seed)}
    for name, other in against.items():
        result["models"][name]["paired_diff_vs"] = {other: paired_diff(tables[names.index(other)], tables[names.index(name)], cfg.seed)}
    if scenarios:
        result["scenarios"] = replayed
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if videos:
            result["videos"] = written
        (out_dir / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
        result["plot"] = str(plot_pass_rates(result, out_dir / "compare.png"))
        for name, episodes in zip(names, per_model):
            plot_trajectories(episodes, out_dir / f"trajectories_{Path(name).name}.png", f"{name}: closed loop")
    return result


def fmt_pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def fmt_signed(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.2f}"


def table(result: dict) -> str:
    """A markdown table of the comparison: one row per model."""
    head = ("| model | " + " | ".join(GROUPS) + " | normal infr./km | route completion | driving score | on-policy MAE ped / obst / bend |")
    lines = ["Pass rate = scenes passed / scenes the model reached (in brackets): a model whose route ends early "
             "(a crash, a timeout) meets fewer scenes, so the counts differ between models.", "",
             head, "|" + "---|" * (len(GROUPS) + 5)]
    for name, m in result["models"].items():
        cells = [f"{fmt_pct(m['pass_rate'][g]['rate'])} ({m['pass_rate'][g]['passed']}/{m['pass_rate'][g]['n']})" for g in GROUPS]
        nipkm = m["normal_infractions_per_km"]
        mae = " / ".join("n/a" if m["onpolicy_mae"][c] is None else f"{m['onpolicy_mae'][c]:.3f}" for c in RARE_CATEGORIES)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'n/a' if nipkm is None else f'{nipkm:.2f}'} | "
                     f"{m['route_completion']['mean']:.2f} | {m['driving_score']['mean']:.2f} | {mae} |")
    for name, m in result["models"].items():
        pairs = ([(m["paired_diff"]["against"], m["paired_diff"])] if "paired_diff" in m else []) + list(m.get("paired_diff_vs", {}).items())
        for other, diffs in pairs:
            for key, label in (("pass_rate_rare", "rare-scene pass rate"), ("normal_infractions_per_km", "normal-road infractions per km")):
                d = diffs.get(key)
                if d and d["diff"] is not None:
                    ci = "n/a" if d["ci95"] is None else f"[{fmt_signed(d['ci95'][0])}, {fmt_signed(d['ci95'][1])}]"
                    lines.append(f"\n{name} - {other}: {label} {fmt_signed(d['diff'])}, paired bootstrap 95 % CI {ci}")
    if "scenarios" in result:
        from training.scenarios import markdown  # it imports this module

        lines += ["", markdown(result["scenarios"])]
    return "\n".join(lines)


def plot_pass_rates(result: dict, out: Path) -> Path:
    plt = pyplot()
    names = list(result["models"])
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(GROUPS), 4))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        pr = result["models"][name]["pass_rate"]
        rates = [pr[g]["rate"] or 0.0 for g in GROUPS]
        err = np.array([[r - (pr[g]["ci95"] or [r, r])[0], (pr[g]["ci95"] or [r, r])[1] - r] for g, r in zip(GROUPS, rates)]).T
        x = np.arange(len(GROUPS)) + (k - (len(names) - 1) / 2) * width
        ax.bar(x, rates, width, yerr=err, capsize=3, label=name)
        for xi, g in zip(x, GROUPS):  # each model's own count: a model whose route ends early meets fewer scenes
            ax.text(xi, -0.02, f"n={pr[g]['n']}", ha="center", va="top", fontsize=7, rotation=90)
    ax.set_xticks(np.arange(len(GROUPS)), GROUPS)
    ax.tick_params(axis="x", pad=30)
    ax.set(ylim=(0, 1.05), ylabel="passed / scenes the model reached",
           title=f"rare-scene pass rate, {len(result['routes'])} paired routes (rate {result['abnormal_rate']}), bootstrap 95 % CI\n"
                 "n under each bar: the scenes that model reached")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
