"""``metasteer bench dagger-curve``: closed-loop sample efficiency per loss, over DAgger rounds.

On a finished ``metasteer pipeline`` run. For every DAgger round k (0: the collected data alone) the
three configurations the pipeline compares (MSE, its best oversampling share, its best learned loss)
are trained exactly as their tuning trials were (same loss, steps, learning rate and seed; request
read from the trial's ``request.json``) except for two things: the start is the round-k model (round
0: the MSE base model) and the data is that of rounds <= k. The last round is the trials themselves
(not retrained). ``compare`` drives every round's three models on the same paired held-out routes.

The question: does a loss reach the MSE model's final pass rate with fewer DAgger rounds, that is with
fewer on-policy rare events in its training data? Every loss gets the same rounds' data (collected by
the MSE policy), so the curves differ by the loss alone.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from simulator.encounters import RARE_CATEGORIES
from simulator.factory import WorldConfig
from training.compare import compare, saved_comparison
from training.evaluate import EvalConfig
from training.figures import pyplot
from training.fit import Run, TrainConfig
from training.losses import LossSpec
from training.meta import MetaConfig
from training.pipeline import NAMES, PAIRED


def _here(pipeline: Path, report: dict, path: str) -> Path:
    """``path``, as the run at ``report["run"]`` wrote it, inside ``pipeline``: the same run moved or restored from
    its ``--keep`` into another directory."""
    return pipeline / Path(path).relative_to(report["run"])


def _trial_request(run: Path) -> dict:
    return json.loads((Path(run) / "request.json").read_text())


def _round_runs(pipeline: Path, report: dict, k: int, last: int, work: Path, progress: bool) -> dict[str, Path]:
    """The three models of round ``k``: the pipeline's trials at the last round, otherwise trained here
    from their requests with round k's start model and data."""
    start = pipeline / "runs" / "mse" if k == 0 else pipeline / "dagger" / f"round-{k}" / "run"
    data = [str(pipeline / "data" / "train")] + [str(pipeline / "dagger" / f"round-{r}" / "data") for r in range(1, k + 1)]
    runs = {}
    for name in NAMES:
        trial = _here(pipeline, report, report["models"][name]) if name != "learned" else _learned_trial(pipeline, report)
        req = _trial_request(trial)
        trained_on = [_here(pipeline, report, d) for d in (req["data"] if isinstance(req["data"], list) else [req["data"]])]
        if k == last and _here(pipeline, report, req["train"]["init_from"]) == start and trained_on == [Path(d) for d in data]:
            runs[name] = trial
            continue
        runs[name] = work / f"round-{k}" / f"{name}-{trial.name}"
        if not (runs[name] / "result.json").exists():
            Run(runs[name], [Path(d) for d in data], req["meta_data"] and _here(pipeline, report, req["meta_data"]), LossSpec(**req["loss"]),
                MetaConfig(**req["meta"]), replace(TrainConfig(**req["train"]), init_from=str(start))).run(resume=True, progress=progress)
    return runs


def _learned_trial(pipeline: Path, report: dict) -> Path:
    """The learned loss the pipeline chose, also when it shipped MSE in its place."""
    trial = report["choice"]["learned_trial"]
    if trial is None:
        raise ValueError(f"{pipeline}: the learned search has no trial besides MSE; nothing to draw for the learned loss")
    return pipeline / "tune" / "learned" / "bo" / "trials" / f"trial-{trial:03d}"


def _events(report: dict, k: int) -> dict[str, int]:
    counts = dict(report["dataset"]["events"])
    for rd in report["dagger"]["rounds"][:k]:
        counts = {c: counts.get(c, 0) + rd["events"].get(c, 0) for c in RARE_CATEGORIES}
    return {c: int(counts.get(c, 0)) for c in RARE_CATEGORIES}


def _reusable(pipeline: Path, report: dict, runs: dict[str, Path], world: WorldConfig, cfg: EvalConfig) -> dict | None:
    """The pipeline's own held-out comparison, when it drove these runs' exports on these routes."""
    if any(runs[n] != _here(pipeline, report, report["models"][n]) for n in NAMES):
        return None
    return saved_comparison(pipeline / "compare" / "rare", list(NAMES), [pipeline / "export" / f"{n}.onnx" for n in NAMES], world, cfg, PAIRED)


def bench_dagger_curve(pipeline: Path, work: Path, episodes: int | None = None, progress: bool = True) -> dict:
    pipeline, work = Path(pipeline), Path(work)
    if not (pipeline / "report.json").exists():
        raise FileNotFoundError(f"{pipeline}: no report.json; run `metasteer pipeline --out {pipeline}` (or `make models`) first")
    report = json.loads((pipeline / "report.json").read_text())
    if not (report.get("dagger") or {}).get("rounds"):
        raise ValueError(f"{pipeline}: the pipeline ran no DAgger rounds; there is no curve over rounds to draw")
    last = len(report["dagger"]["rounds"])
    world = replace(WorldConfig(world=report["world"]), abnormal_rate=report["config"]["eval_abnormal_rate"])
    cfg = EvalConfig(episodes=episodes or report["sizes"]["episodes"], seed=report["config"]["seed"], workers=2,
                     max_time_s=report["sizes"]["max_time_s"])
    points = []
    for k in range(last + 1):
        runs = _round_runs(pipeline, report, k, last, work, progress)
        where = work / f"round-{k}" / "compare"
        judged = (_reusable(pipeline, report, runs, world, cfg) if k == last else None) or \
            compare([runs[n] for n in NAMES], world, cfg, where, names=list(NAMES), progress=progress, reuse=True)
        models = {}
        for name in NAMES:
            m = judged["models"][name]
            models[name] = {"pass_rate": {g: m["pass_rate"][g] for g in (*RARE_CATEGORIES, "rare")},
                            "normal_infractions_per_km": m["normal_infractions_per_km"],
                            "paired_diff_vs_mse": m.get("paired_diff", {}).get("pass_rate_rare")}
        points.append({"round": k, "events": _events(report, k), "models": models, "runs": {n: str(runs[n]) for n in NAMES}})
    goal = points[-1]["models"]["mse"]["pass_rate"]["rare"]["rate"]
    reach = {name: next((p["round"] for p in points if (p["models"][name]["pass_rate"]["rare"]["rate"] or 0.0) >= goal), None) for name in NAMES}
    out = {"pipeline": str(pipeline), "routes": cfg.episodes, "abnormal_rate": world.abnormal_rate, "points": points,
           "target": {"mse_final_rare_pass_rate": goal, "first_round_reaching_it": reach,
                      "learned_needs_fewer_rounds_than_mse": reach["learned"] is not None and reach["learned"] < last}}
    out["plot"] = str(_plot(points, work / "dagger_curve.png", cfg.episodes, world.abnormal_rate))
    work.mkdir(parents=True, exist_ok=True)
    (work / "dagger_curve.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def _plot(points: list[dict], path: Path, routes: int, rate: float) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [sum(p["events"].values()) for p in points]
    for k, name in enumerate(NAMES):
        rare = [p["models"][name]["pass_rate"]["rare"] for p in points]
        ys = [r["rate"] or 0.0 for r in rare]
        err = [[y - (r["ci95"] or [y, y])[0] for r, y in zip(rare, ys)], [(r["ci95"] or [y, y])[1] - y for r, y in zip(rare, ys)]]
        ax.errorbar([x * (1 + 0.01 * (k - 1)) for x in xs], ys, yerr=err, marker="o", capsize=3, label=name)
    ax.axhline(points[-1]["models"]["mse"]["pass_rate"]["rare"]["rate"] or 0.0, color="grey", ls="--", lw=1, label="MSE, all rounds")
    for p, x in zip(points, xs):
        ax.annotate(f"round {p['round']}", (x, 0.02), ha="center", fontsize=8)
    ax.set(xlabel="rare events in the training data (collected + DAgger rounds)", ylabel="rare scenes passed", ylim=(0, 1.05),
           title=f"Closed-loop pass rate vs DAgger rounds ({routes} paired held-out routes, rate {rate})")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
