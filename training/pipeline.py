"""``metasteer pipeline``: the main job, stage by stage, into one run directory.

collect (a training set holding tens of events of every rare scene, and a meta set) -> MSE
baseline -> DAgger rounds on it (kept only if they pass more rare scenes on tuning routes) ->
tune the oversampling baseline and the learned loss with the same budget (BoTorch, closed loop,
rare-scene pass rate on tuning routes; every trial fine-tunes the same starting model on the same
aggregated data for the same steps, so the losses stand on equal footing, and the learned search
runs MSE itself, tau = 0, as its first trial) -> choose: the best trials of each search and MSE
are re-driven on fresh tuning routes (more routes for the best), per search the best by pooled
pass rate is kept, and the learned loss ships only if it passes more rare scenes than MSE on the
fresh routes, paired (otherwise MSE is shipped in its place and the report says so) -> export
mse, oversample, learned -> ``compare`` on paired held-out routes (rare-scene rate 0.1, and 0 for
the plain road) -> report + model cards.

``--labels meta-only`` (only the meta set is labelled) adds a search per label-free baseline, with the same
budget and choice rule, and ships and compares each; ``training.label_modes`` says what each mode runs.

Every stage keeps its outputs under ``OUT/`` and resumes: re-running a killed pipeline continues.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from simulator.factory import WorldConfig
from training.data.collect import CollectConfig, collect
from training.data.contact_sheet import contact_sheet
from training.data.dataset import DrivingDataset
from training.data.label_view import LABELS, LabelView
from training.label_modes import PAIRED, SEARCHES, Search, baselines, best_baseline, names
from training.precision import PRECISIONS

if TYPE_CHECKING:
    from training.evaluate import EvalConfig

NAMES = names("full")  # the full-label pipeline's models; a run's own: ``names(cfg.labels)``
VIDEOS = 3  # encounter videos of the held-out comparison, where the models disagree first
RECORD_EVERY = 4  # 5 Hz: neighbouring frames at 10 Hz are near copies; the events are what is scarce


SIZES = ("full", "demo", "quick")


@dataclass(frozen=True)
class PipelineConfig:
    frames: int = field(default=80000, metadata={"range": (1, None), "help": "training frames to record (at 5 Hz: ~50 events of each rare scene at rate 0.05)"})
    train_abnormal_rate: float = field(default=0.05, metadata={"range": (0.0, 1.0), "help": "rare-scene share of the training set's frames"})
    seed: int = field(default=0, metadata={"range": (0, None), "help": "seed of the whole run"})
    size: str = field(default="full", metadata={"help": "full: the settings below; demo: the main job in ~12 min on 2 cores (set-up aside); "
                                                        "quick: a ~3 min smoke pass", "choices": SIZES})
    # PilotNet as published: width 0.5 / ReLU drove worse, paired (README, `metasteer bench architecture`)
    width_mult: float = field(default=1.0, metadata={"range": (0.05, 4.0), "help": "PilotNet channel multiplier of every model (1: the paper's widths)"})
    activation: str = field(default="elu", metadata={"help": "PilotNet activation of every model", "choices": ("elu", "relu")})
    precision: str = field(default="fp32", metadata={"help": "forward pass of every training step (fp32, or bf16 autocast; see `train --precision`)",
                                                     "choices": PRECISIONS})
    steps: int = field(default=3000, metadata={"range": (1, None), "help": "training steps of the MSE base model"})
    dagger_rounds: int = field(default=3, metadata={"range": (0, None), "help": "DAgger rounds on the MSE model (0: none)"})
    dagger_routes: int = field(default=30, metadata={"range": (1, None), "help": "routes the policy drives per DAgger round"})
    dagger_steps: int = field(default=1500, metadata={"range": (1, None), "help": "fine-tuning steps per DAgger round"})
    tune_budget: int = field(default=6, metadata={"range": (1, None), "help": "closed-loop trials of each search (oversampling, learned loss)"})
    trial_steps: int = field(default=600, metadata={"range": (1, None), "help": "fine-tuning steps of every trial (and so of every shipped model)"})
    tune_episodes: int = field(default=24, metadata={"range": (1, None), "help": "paired tuning routes (DAgger decision, every trial)"})
    finalists: int = field(default=2, metadata={"range": (1, None), "help": "best trials of each search re-driven, with MSE, on fresh tuning routes for the final choice"})
    choice_episodes: int = field(default=48, metadata={"range": (1, None), "help": "fresh paired tuning routes of the final choice (more routes for the best trials)"})
    eval_episodes: int = field(default=48, metadata={"range": (1, None), "help": "paired held-out routes per model at the rare-scene rate"})
    clear_episodes: int = field(default=16, metadata={"range": (1, None), "help": "paired held-out routes without rare scenes (rate 0)"})
    eval_abnormal_rate: float = field(default=0.1, metadata={"range": (0.0, 1.0), "help": "rare-scene rate of the evaluation and tuning routes"})
    max_time_s: float = field(default=150.0, metadata={"range": (1.0, None), "help": "time limit of every driven route, simulated seconds"})
    labels: str = field(default="full", metadata={"help": "full: the learned loss sees every training frame's scene labels; meta-only: "
                                                          "only the meta set is labelled (label-free learned weighting and sampling); "
                                                          "oversampling, the reference, always sees labels", "choices": LABELS})
    meta_share: float | None = field(default=None, metadata={"range": (0.001, 1.0), "help": "the labelled meta set's size as a share of "
                                                                                            "the training frames, e.g. 0.02 (unset: a tenth, at "
                                                                                            "least 1000 frames; demo 2000, quick 600)"})

    def __post_init__(self) -> None:
        if self.meta_share is not None and not 0.0 < self.meta_share <= 1.0:
            raise ValueError(f"meta_share {self.meta_share}: the meta set's share of the training frames must be in (0, 1]")

    def sizes(self) -> dict:
        """The stage sizes: this config's fields (``full``) or a preset (``demo``, ``quick``) over them."""
        full = {"frames": self.frames, "meta_frames": max(1000, self.frames // 10), "steps": self.steps, "tune_budget": self.tune_budget,
                "trial_steps": self.trial_steps, "dagger_rounds": self.dagger_rounds, "dagger_routes": self.dagger_routes,
                "dagger_steps": self.dagger_steps, "tune_episodes": self.tune_episodes, "episodes": self.eval_episodes,
                "finalists": self.finalists, "choice_episodes": self.choice_episodes,
                "clear_episodes": self.clear_episodes, "max_time_s": self.max_time_s}
        presets = {
            "full": {},
            # measured on 2 cores: see the README's pipeline timings
            "demo": {"frames": 20000, "meta_frames": 2000, "steps": 800, "tune_budget": 4, "trial_steps": 150, "dagger_rounds": 1,
                     "dagger_routes": 12, "dagger_steps": 400, "tune_episodes": 8, "episodes": 24, "finalists": 1, "choice_episodes": 12,
                     "clear_episodes": 8, "max_time_s": 90.0},
            "quick": {"frames": min(self.frames, 3000), "meta_frames": 600, "steps": 120, "tune_budget": 2, "trial_steps": 30,
                      "dagger_rounds": min(self.dagger_rounds, 1), "dagger_routes": 2, "dagger_steps": 40, "tune_episodes": 2, "episodes": 4,
                      "finalists": 2, "choice_episodes": 2, "clear_episodes": 2, "max_time_s": 45.0},
        }
        sized = full | presets[self.size]
        if self.meta_share is not None:
            sized["meta_frames"] = max(1, round(self.meta_share * sized["frames"]))
        return sized


def stage_count(labels: str) -> int:
    """Stages of a pipeline run: collect, MSE, DAgger, its check, one per search, choose, export, compare."""
    return 7 + len(SEARCHES[labels])


def _stage(name: str) -> float:
    print(f"\n== {name}", file=sys.stderr, flush=True)
    return time.perf_counter()


def run_pipeline(out: Path, world_cfg: WorldConfig, cfg: PipelineConfig, progress: bool = True, keep: Path | None = None) -> dict:
    """The main job into ``out``; ``keep``: a small directory to commit that receives every finished search (its log,
    requests and the models the choice reads), the choice's and the comparisons' results, the exports and the report,
    and restores a fresh ``out`` (``training.keep``): the data, the MSE model and DAgger are made again (same seed,
    same bytes: checked before a kept search is used), finished searches are not."""
    from training.compare import compare
    from training.evaluate import EvalConfig
    from training.keep import claim_dirs, keep_files, restore
    from training.tune.tuner import tune

    out, keep = Path(out), Path(keep) if keep else None
    claim_dirs(out, keep, {"world": asdict(world_cfg), "pipeline": asdict(cfg)}, "pipeline run")
    if keep:
        restore(out, keep)
    n = cfg.sizes()
    timings: dict[str, float] = {}
    eval_world = replace(world_cfg, abnormal_rate=cfg.eval_abnormal_rate)
    searches, models_named, stages = SEARCHES[cfg.labels], names(cfg.labels), stage_count(cfg.labels)

    t = _stage(f"1/{stages} collect")
    data, meta_data = collect_data(out / "data", world_cfg, cfg, n, progress)
    dataset = DrivingDataset(data)
    sheet = out / "contact_sheet.png"
    if not sheet.exists():  # the dataset is fixed, so is its sheet: a resumed run keeps it
        contact_sheet(dataset, sheet, seed=cfg.seed)
    timings["collect_s"] = time.perf_counter() - t

    base = train_base(out, data, meta_data, world_cfg, cfg, n, timings, progress)
    dag, decision, mse_run, train_data = base["dagger"], base["decision"], Path(base["start"]), [Path(d) for d in base["data"]]
    keep_files(out, keep, ("dagger/check/compare.json",))

    tuned = {}
    for k, (name, search) in enumerate(searches.items()):
        t = _stage(f"{5 + k}/{stages} tune {search.space} (closed loop, rare-scene pass rate on tuning routes, warm start from "
                   f"{mse_run.relative_to(out)})")
        claim_start(out / "tune" / name, mse_run)
        tuned[name] = tune(out / "tune" / name, tune_config(cfg, n), "closed-loop", baseline=False, progress=progress, data=train_data,
                           meta_data=meta_data, budget=trial_budget(search, cfg, n, mse_run), world_cfg=world_cfg)
        if keep:
            keep_files(out, keep, search_files(name, tuned[name], n["finalists"]))
        timings[f"tune_{name}_s"] = time.perf_counter() - t

    t = _stage(f"{stages - 2}/{stages} choose: the best {n['finalists']} trials of each search and MSE, re-driven on "
               f"{n['choice_episodes']} fresh tuning routes")
    runs, chosen = choose(out, tuned, eval_world, EvalConfig(episodes=n["choice_episodes"], seed=cfg.seed + 1, workers=2, split="tune",
                                                             max_time_s=n["max_time_s"]), n["finalists"], progress, searches)
    keep_files(out, keep, ("choice/compare.json",))
    timings["choice_s"] = time.perf_counter() - t

    t = _stage(f"{stages - 1}/{stages} export to ONNX")
    exported = {name: export_once(runs[name], out / "export" / f"{name}.onnx") for name in models_named}
    timings["export_s"] = time.perf_counter() - t

    t = _stage(f"{stages}/{stages} compare on paired held-out routes")
    models = [out / "export" / f"{name}.onnx" for name in models_named]
    ecfg = EvalConfig(episodes=n["episodes"], seed=cfg.seed, workers=2, max_time_s=n["max_time_s"])
    rare = compare(models, eval_world, ecfg, out / "compare" / "rare", names=list(models_named), progress=progress, against=PAIRED,
                   reuse=True, scenarios=True, videos=VIDEOS)
    clear = compare(models, replace(world_cfg, abnormal_rate=0.0), replace(ecfg, episodes=n["clear_episodes"]),
                    out / "compare" / "clear", names=list(models_named), progress=progress, against=PAIRED, reuse=True)
    keep_files(out, keep, ("compare/*/compare.json",))
    timings["compare_s"] = time.perf_counter() - t

    report = {
        "run": str(out), "config": asdict(cfg), "sizes": n, "world": world_cfg.world,
        "dataset": {"frames": len(dataset), "counts": dataset.manifest["counts"], "events": dataset.manifest["events"],
                    "abnormal_share": dataset.manifest["abnormal_share"]},
        "dagger": dag, "dagger_decision": decision, "models": {k: str(v) for k, v in runs.items()}, "start": str(mse_run),
        "tuning": {space: {"best": r["bo"]["best"], "trials": _trials(r["bo"]["log"]), "best_so_far": r["bo"]["best_so_far"]}
                   for space, r in tuned.items()},
        "choice": chosen,
        "offline": {name: json.loads((runs[name] / "result.json").read_text())["val"] for name in models_named},
        "compare": {"rare": _strip(rare), "clear": _strip(clear)}, "exported": exported, "timings_s": timings,
    }
    report["targets"] = targets(report)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(_markdown(report, sheet))
    for name in models_named:
        (out / "export" / f"{name}.md").write_text(model_card(name, report))
    keep_files(out, keep, ("export/*", "report.md", "report.json"))  # the report last: it marks the run finished
    return {"run": str(out), "report": str(out / "report.md"), "targets": report["targets"],
            "compare": {name: {"rare_pass_rate": rare["models"][name]["pass_rate"]["rare"]["rate"],
                               "clear_route_completion": clear["models"][name]["route_completion"]["mean"]} for name in models_named},
            "timings_s": timings}


def collect_data(out: Path, world_cfg: WorldConfig, cfg: PipelineConfig, n: dict, progress: bool) -> tuple[Path, Path]:
    """Stage 1: the training set (``cfg.seed``) and the meta set (rare scenes at rate 0.3, seed + 1)."""
    data, meta_data = out / "train", out / "meta"
    collect(data, replace(world_cfg, abnormal_rate=cfg.train_abnormal_rate), CollectConfig(frames=n["frames"], seed=cfg.seed, record_every=RECORD_EVERY),
            progress=progress)
    collect(meta_data, replace(world_cfg, abnormal_rate=0.3), CollectConfig(frames=n["meta_frames"], seed=cfg.seed + 1, record_every=RECORD_EVERY),
            progress=progress)
    return data, meta_data


def claim_start(search: Path, start: Path) -> None:
    """A search's trials all fine-tune one start model: ``search/start.json`` names its bytes (``source_sha256``),
    and a search resumed or restored from ``--keep`` over another start model is refused, not mixed."""
    from training.compare import source_sha256
    from training.files import claim_request

    claim_request(search, {"start_sha256": source_sha256(start)}, "search", name="start.json",
                  hint=f"its trials fine-tuned another start model than {start}: the data, MSE model or DAgger came out differently "
                  "(another device or thread count?); move the search away, from --out and from --keep, to run it again")


def best_trials(name: str, log: str, k: int) -> list[int]:
    """The ``k`` best trials of search ``name`` by tuning score; the learned search's trial 0 is MSE, chosen apart."""
    ranked = sorted(_trials(log), key=lambda x: -x["y"])
    return [x["trial"] for x in ranked if not (name == "learned" and x["trial"] == 0)][:k]


def search_files(name: str, tuned: dict, k: int) -> tuple[str, ...]:
    """What a finished search keeps (relative to the run): the models the choice reads (its finalists and, in the
    learned search, MSE), every trial's request and results, then its log and summary (the markers) last."""
    trials = f"tune/{name}/bo/trials"
    models = best_trials(name, tuned["bo"]["log"], k) + ([0] if name == "learned" else [])
    return (tuple(f"{trials}/trial-{t:03d}/{f}" for t in models for f in ("model.pt", "loss.pt"))
            + tuple(f"{trials}/*/{f}" for f in ("request.json", "trial.json", "result.json"))
            + (f"tune/{name}/start.json", f"tune/{name}/*.png", f"tune/{name}/bo/trials.jsonl", f"tune/{name}/tune.json"))


def export_once(run: Path, onnx: Path) -> dict:
    """Stage 8 for one model: ``training.export.export``, unless ``onnx`` already is the export of ``run``'s model
    (its result, saved after it, names the model's hash): a resumed run leaves a finished export untouched."""
    from training.compare import source_sha256
    from training.export import export
    from training.files import atomic_write_json

    done, source = onnx.with_name(onnx.stem + ".export.json"), source_sha256(run)
    if onnx.exists() and done.exists() and (held := json.loads(done.read_text()))["source_sha256"] == source:
        return held["result"]
    result = export(run, onnx)
    atomic_write_json(done, {"source_sha256": source, "result": result})
    return result


def tune_config(cfg: PipelineConfig, n: dict):
    """Every search's settings (the same for every search of a run: the same budget)."""
    from training.tune.tuner import TuneConfig

    return TuneConfig(budget=n["tune_budget"], init=min(3, n["tune_budget"]), parallel=2, seed=cfg.seed)


def trial_budget(search: Search, cfg: PipelineConfig, n: dict, start: Path):
    """What every trial of ``search`` does: fine-tune ``start`` for the run's trial steps, then drive its tuning
    routes. Only the space and what the training frames show differ between searches."""
    from training.tune.objectives import TrialBudget

    return TrialBudget(space=search.space, labels=search.labels, precision=cfg.precision, steps=n["trial_steps"], lr=dagger_config(cfg, n).dagger_lr,
                       init_from=str(start), episodes=n["tune_episodes"], abnormal_rate=cfg.eval_abnormal_rate, max_time_s=n["max_time_s"])


def dagger_config(cfg: PipelineConfig, n: dict):
    from training.dagger import DaggerConfig

    return DaggerConfig(rounds=n["dagger_rounds"], routes=n["dagger_routes"], dagger_steps=n["dagger_steps"], seed=cfg.seed,
                        dagger_abnormal_rate=cfg.eval_abnormal_rate, record_every=RECORD_EVERY)


def train_base(out: Path, data: Path, meta_data: Path, world_cfg: WorldConfig, cfg: PipelineConfig, n: dict, timings: dict,
               progress: bool) -> dict:
    """Stages 2-4: the MSE model, DAgger rounds on it, and whether they pass more rare scenes on tuning routes
    (paired); returns the model every trial starts from (``start``) and the data it was trained on."""
    from training.compare import compare
    from training.dagger import dagger
    from training.evaluate import EvalConfig
    from training.fit import TrainConfig, train_once
    from training.losses import LossSpec
    from training.meta import MetaConfig

    train_cfg = TrainConfig(steps=n["steps"], seed=cfg.seed, eval_every=max(1, n["steps"] // 10), warmup_steps=min(100, n["steps"] // 10),
                            width_mult=cfg.width_mult, activation=cfg.activation, precision=cfg.precision, labels=cfg.labels)
    stages = stage_count(cfg.labels)
    t = _stage(f"2/{stages} MSE base model")
    train_once(out / "runs" / "mse", data, meta_data, LossSpec(loss="mse"), MetaConfig(), train_cfg, progress=progress)
    timings["mse_s"] = time.perf_counter() - t

    t = _stage(f"3/{stages} DAgger: {n['dagger_rounds']} rounds on the MSE model")
    dag = dagger(out / "dagger", out / "runs" / "mse", [data], world_cfg, dagger_config(cfg, n), train_cfg=train_cfg, progress=progress,
                 meta_data=LabelView(cfg.labels).labelled_meta(meta_data)) \
        if n["dagger_rounds"] else None
    timings["dagger_s"] = time.perf_counter() - t

    t = _stage(f"4/{stages} does DAgger help? paired comparison on tuning routes")
    tune_eval = EvalConfig(episodes=n["tune_episodes"], seed=cfg.seed, workers=2, split="tune", max_time_s=n["max_time_s"])
    start, train_data, decision = out / "runs" / "mse", [data], None
    if dag:
        check = compare([out / "runs" / "mse", Path(dag["final"])], replace(world_cfg, abnormal_rate=cfg.eval_abnormal_rate), tune_eval,
                        out / "dagger" / "check", names=["without", "with"], progress=progress, reuse=True)
        diff = check["models"]["with"]["paired_diff"]["pass_rate_rare"]
        keep = diff["diff"] is not None and diff["diff"] > 0
        decision = {"kept": keep, "rare_pass_rate": {k: check["models"][k]["pass_rate"]["rare"]["rate"] for k in ("without", "with")},
                    "paired_diff": diff, "routes": n["tune_episodes"]}
        if keep:
            start = Path(dag["final"])
            train_data = [data] + [out / "dagger" / f"round-{r['round']}" / "data" for r in dag["rounds"]]
    timings["dagger_check_s"] = time.perf_counter() - t
    return {"start": str(start), "data": [str(d) for d in train_data], "dagger": dag, "decision": decision}


def choose(out: Path, tuned: dict, world: WorldConfig, cfg: EvalConfig, finalists: int, progress: bool,
           searches: dict[str, Search] | None = None) -> tuple[dict[str, Path], dict]:
    """The models to ship: MSE (the learned search's fixed tau = 0 trial) and, per search, the finalist
    with the most rare scenes passed over its trial's routes and ``cfg``'s fresh tuning routes together
    (more routes for the best: a search's maximum over few routes is biased upwards). A guarded search's
    model (the learned loss; in label-scarce mode every label-free baseline too: ``label_modes``) is kept
    only if it passes more rare scenes than MSE on the fresh routes, paired; otherwise MSE ships in its
    place (tau = 0 is MSE). ``searches``: the run's (default: the full-label pipeline's)."""
    from training.compare import compare

    searches = searches or SEARCHES["full"]
    trials = {name: out / "tune" / name / "bo" / "trials" for name in tuned}
    mse = trials["learned"] / "trial-000"
    runs = {"mse": mse}
    for name in tuned:
        runs |= {f"{name}-{k}": trials[name] / f"trial-{k:03d}" for k in best_trials(name, tuned[name]["bo"]["log"], finalists)}
    judged = compare(list(runs.values()), world, cfg, out / "choice", names=list(runs), progress=progress, reuse=True)

    trial = {name: json.loads((run / "trial.json").read_text()) for name, run in runs.items()}

    def pooled(name: str) -> dict:
        a, b = trial[name]["pass_rate"]["rare"], judged["models"][name]["pass_rate"]["rare"]
        return {"trial_routes": a["rate"], "fresh_routes": b["rate"], "pooled": (a["passed"] + b["passed"]) / max(a["n"] + b["n"], 1)}

    def guard(name: str) -> dict:
        diff = judged["models"][best[name]].get("paired_diff", {}).get("pass_rate_rare", {"diff": None, "ci95": None})
        return {"trial": None if best[name] == "mse" else int(best[name].rsplit("-", 1)[1]), "paired_diff": diff,
                "kept": best[name] != "mse" and (diff["diff"] or 0.0) > 0}

    scores = {name: pooled(name) for name in runs}
    best = {name: max((k for k in runs if k.rsplit("-", 1)[0] == name), key=lambda k: scores[k]["pooled"], default="mse") for name in tuned}
    guards = {name: guard(name) for name in tuned if searches[name].guarded}
    others = {name: g for name, g in guards.items() if name != "learned"}
    params = {name: t["params"] for name, t in trial.items()}
    chosen = {"finalists": {k: {"run": str(v), "params": params[k], **scores[k]} for k, v in runs.items()}, "routes": cfg.episodes,
              "best": best, "learned_trial": guards["learned"]["trial"], "paired_diff": guards["learned"]["paired_diff"],
              "kept": guards["learned"]["kept"], **({"baselines": others} if others else {}),
              "rare_pass_rate": {"mse": scores["mse"]["fresh_routes"], **{name: scores[best[name]]["fresh_routes"] for name in tuned}},
              "params": {"mse": params["mse"], **{name: params[best[name]] for name in tuned}}}
    shipped = {name: runs[best[name]] if name not in guards or guards[name]["kept"] else mse for name in tuned}
    return {"mse": mse, **shipped}, chosen


def _strip(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "plot"} | {"models": {name: {k: v for k, v in m.items() if k != "per_route"}
                                                                          for name, m in result["models"].items()}}


def targets(r: dict) -> dict:
    """Issue targets. MSE model: >= 0.95 completion without rare scenes, >= 80 % of sharp bends and
    obstacles passed. Learned loss: rare-scene failure rate <= 0.5x MSE's and <= oversampling's, normal-road
    infractions per km not above MSE's. Label-scarce runs also: not above the best label-free baseline's
    (``label_modes.best_baseline``: chosen on tuning routes)."""
    models = r["compare"]["rare"]["models"]
    m, c = models["mse"], r["compare"]["clear"]["models"]["mse"]
    rate = {g: m["pass_rate"][g]["rate"] for g in ("sharp_bend", "obstacle", "pedestrian")}
    fail = {name: models[name]["failure_rate"] for name in models}
    nipkm = {name: models[name]["normal_infractions_per_km"] for name in models}
    known = all(fail[k] is not None for k in NAMES)
    scarce = {}
    if best := best_baseline(r):
        scarce = {"best_baseline": best, "learned_not_worse_than_best_baseline_met": None not in (fail["learned"], fail[best])
                  and fail["learned"] <= fail[best]}
    return {"clear_route_completion": c["route_completion"]["mean"], "clear_route_completion_met": (c["route_completion"]["mean"] or 0) >= 0.95,
            "pass_rate": rate, "bends_obstacles_met": all((rate[g] or 0) >= 0.8 for g in ("sharp_bend", "obstacle")),
            "failure_rate": fail, "normal_infractions_per_km": nipkm, "learned_is_mse": not r["choice"]["kept"],
            "learned_half_mse_failures_met": known and fail["learned"] <= 0.5 * fail["mse"],
            "learned_not_worse_than_oversample_met": known and fail["learned"] <= fail["oversample"],
            "learned_normal_road_met": None not in (nipkm["learned"], nipkm["mse"]) and nipkm["learned"] <= nipkm["mse"],  # unknown: not met
            **scarce}


def _trials(log: str) -> list[dict]:
    """Finished trials of a search, in order: number, how proposed, hyperparameters, objective."""
    from training.tune.tuner import read_trials

    finished = read_trials(Path(log))[1]
    return [{k: finished[t][k] for k in ("trial", "method", "params", "y")} for t in sorted(finished)]


def _mae(m: dict) -> str:
    return "n/a (no frames)" if m["mae"] is None else f"{m['mae']:.4f}"


def _fmt(m: dict) -> str:
    return f"{m['mean']:.3g} ± {m['ci95']:.2g}" if m.get("ci95") is not None else f"{m['mean']:.3g}"


def _markdown(r: dict, sheet: Path) -> str:
    from training.compare import fmt_pct, fmt_signed, table

    rare, clear, off, tg = r["compare"]["rare"], r["compare"]["clear"], r["offline"], r["targets"]
    d = r["dataset"]
    lines = [f"# metasteer pipeline report: `{r['run']}`", "",
             f"World `{r['world']}`, seed {r['config']['seed']}, {d['frames']} training frames ({d['abnormal_share']:.1%} rare-scene "
             f"frames: {d['counts']}; events: {d['events']}).", "",
             f"## Per rare scene: {len(rare['routes'])} paired held-out routes at rare-scene rate {rare['abnormal_rate']}", "",
             "A scene passes when no counted infraction happens from its onset until 2 s after it (`metasteer compare`).", "",
             table(rare), "",  # with the scenario-level table when the comparison replayed scenes
             *(["Encounter videos (camera, top-down, steering, verdict per model): " + ", ".join(
                 f"[{Path(v['video']).name}](compare/rare/{Path(v['video']).name})" for v in rare.get("videos", [])), ""]
               if rare.get("videos") else []),
             f"## The plain road: {len(clear['routes'])} paired held-out routes without rare scenes", "", table(clear), "",
             "## Targets (MSE model)", "",
             f"- route completion without rare scenes >= 0.95: **{tg['clear_route_completion']:.2f}** "
             f"({'met' if tg['clear_route_completion_met'] else 'NOT met'})",
             f"- sharp bends and obstacles passed >= 80 %: bends {fmt_pct(tg['pass_rate']['sharp_bend'])}, obstacles "
             f"{fmt_pct(tg['pass_rate']['obstacle'])} ({'met' if tg['bends_obstacles_met'] else 'NOT met'}); pedestrians "
             f"{fmt_pct(tg['pass_rate']['pedestrian'])} (no target)", ""]
    dec = r["dagger_decision"]
    if r["dagger"]:
        lines += ["## DAgger", "", "| round | policy | frames | events (ped / obst / bend) | best step | val balanced MAE |", "|---|---|---|---|---|---|"]
        for rd in r["dagger"]["rounds"]:
            e = rd["events"]
            lines.append(f"| {rd['round']} | `{rd['policy_model_id']}` | {rd['frames']} | {e['pedestrian']} / {e['obstacle']} / {e['sharp_bend']} "
                         f"| {rd['best_step']} | {rd['val_mae_balanced']:.4f} |")
        ci = dec["paired_diff"]["ci95"]
        lines += ["", f"On {dec['routes']} paired tuning routes the rare-scene pass rate went {fmt_pct(dec['rare_pass_rate']['without'])} -> "
                  f"{fmt_pct(dec['rare_pass_rate']['with'])} (paired diff {fmt_signed(dec['paired_diff']['diff'])}, 95 % CI "
                  f"{'n/a' if ci is None else f'[{fmt_signed(ci[0])}, {fmt_signed(ci[1])}]'}): DAgger was **{'kept' if dec['kept'] else 'not kept'}**; "
                  "the learned loss trained on the same data.", ""]
    lines += ["## The learned loss against MSE and oversampling", "",
              f"Every model below is fine-tuned from `{Path(r['start']).relative_to(r['run'])}` on the same data for the same {r['sizes']['trial_steps']} steps; "
              "only the loss (and the share of rare frames per batch) differs. MSE is the learned search's first trial (tau = 0).", ""]
    for space, t in r["tuning"].items():
        lines += [f"### Search: {space} ({len(t['trials'])} trials, rare-scene pass rate on {r['sizes']['tune_episodes']} tuning routes)", "",
                  "| trial | proposed by | hyperparameters | pass rate |", "|---|---|---|---|"]
        lines += [f"| {x['trial']} | {x['method']} | `{json.dumps(x['params'])}` | {fmt_pct(x['y'])} |" for x in t["trials"]]
        lines.append("")
    ch = r["choice"]
    ci = ch["paired_diff"]["ci95"]
    lines += [f"### Final choice: the best {r['sizes']['finalists']} trials of each search and MSE, re-driven on {ch['routes']} fresh tuning routes", "",
              "| finalist | hyperparameters | trial routes | fresh routes | pooled |", "|---|---|---|---|---|"]
    lines += [f"| {k} | `{json.dumps(f['params'])}` | {fmt_pct(f['trial_routes'])} | {fmt_pct(f['fresh_routes'])} | {fmt_pct(f['pooled'])} |"
              for k, f in ch["finalists"].items()]
    lines += ["", f"Chosen by the pooled pass rate: oversampling `{ch['best']['oversample']}`, learned `{ch['best']['learned']}`. "
              f"On the fresh routes, paired with MSE: learned {fmt_pct(ch['rare_pass_rate']['learned'])} vs MSE {fmt_pct(ch['rare_pass_rate']['mse'])} "
              f"(diff {fmt_signed(ch['paired_diff']['diff'])}, 95 % CI {'n/a' if ci is None else f'[{fmt_signed(ci[0])}, {fmt_signed(ci[1])}]'}); "
              f"oversampling {fmt_pct(ch['rare_pass_rate']['oversample'])}. "
              + ("The learned loss was **kept**." if ch["kept"] else "The learned loss did **not** beat MSE there, so `learned.onnx` **is the MSE "
                                                                    "model** (tau = 0): the pipeline never ships a learned loss worse than MSE."), "",
              *_baselines_markdown(r),
              "## Targets (learned loss, held-out routes)", "",
              f"- rare-scene failure rate: MSE {fmt_pct(tg['failure_rate']['mse'])}, oversampling {fmt_pct(tg['failure_rate']['oversample'])}, "
              f"learned {fmt_pct(tg['failure_rate']['learned'])}; <= 0.5x MSE's: **{'met' if tg['learned_half_mse_failures_met'] else 'NOT met'}**; "
              f"<= oversampling's: **{'met' if tg['learned_not_worse_than_oversample_met'] else 'NOT met'}**",
              f"- normal-road infractions per km not above MSE's: **{'met' if tg['learned_normal_road_met'] else 'NOT met'}**",
              *([f"- rare-scene failure rate not above the best label-free baseline's (`{tg['best_baseline']}`, "
                 f"chosen on tuning routes: {fmt_pct(tg['failure_rate'][tg['best_baseline']])}): "
                 f"**{'met' if tg['learned_not_worse_than_best_baseline_met'] else 'NOT met'}**"] if "best_baseline" in tg else []), "",
              "## Offline (validation episodes of the training data, MAE in steer units)", "", "| | " + " | ".join(off) + " |",
              "|---|" + "---|" * len(off)]
    for key in ("overall", "normal", "abnormal"):
        lines.append(f"| {key} | " + " | ".join(_mae(off[name][key]) for name in off) + " |")
    learned_run = Path(r["models"]["learned"]).relative_to(r["run"])
    lines += ["", "## Figures", "", f"![contact sheet]({sheet.name})", "", "![pass rates](compare/rare/compare.png)", "",
              *[f"![{name} trajectories](compare/rare/trajectories_{name}.png)\n" for name in off],
              f"![learning curve, learned]({learned_run}/learning_curve.png)", "",
              *([f"![what the learned loss weighs]({learned_run}/learned_loss.png)", ""] if (Path(r["models"]["learned"]) / "learned_loss.png").exists() else []),
              *[f"![{space} search](tune/{space}/convergence.png)\n" for space in r["tuning"]],
              f"Stage timings (s): `{json.dumps({k: round(v, 1) for k, v in r['timings_s'].items()})}`", ""]
    return "\n".join(lines)


def _baselines_markdown(r: dict) -> list[str]:
    """Label-scarce runs: each label-free baseline's choice (the learned loss's rule) and the best of them."""
    from training.compare import fmt_pct, fmt_signed

    ch = r["choice"]
    if not ch.get("baselines"):
        return []
    lines = ["Label-free baselines (each its own search, same budget and rule; MSE ships in a baseline's place unless it passed "
                 "more rare scenes than MSE on the fresh routes, paired):", ""]
    for b, g in ch["baselines"].items():
        lines.append(f"- `{b}`: finalist `{ch['best'][b]}`, fresh routes {fmt_pct(ch['rare_pass_rate'][b])} (diff with MSE "
                     f"{fmt_signed(g['paired_diff']['diff'])}): " + ("**kept**" if g["kept"] else "**not kept** (`" + b + ".onnx` is MSE)"))
    return lines + ["", f"Best label-free baseline, by its pooled tuning-route pass rate: **`{best_baseline(r)}`**.", ""]


def model_card(name: str, r: dict, seeds_note: str | None = None, onnx: Path | None = None) -> str:
    """The card of the exported model ``name`` of pipeline report ``r``; ``seeds_note`` says what its one seed's
    closed-loop numbers are worth (by default: an anecdote until a study pools seeds); ``onnx``: the file, if moved."""
    from metasteer.policy import OnnxPolicy
    from simulator.encounters import RARE_CATEGORIES
    from training.compare import fmt_pct

    e, off = r["exported"][name], r["offline"][name]
    spec = OnnxPolicy.load(onnx or e["onnx"]).spec
    rare, clear = r["compare"]["rare"], r["compare"]["clear"]
    m, c = rare["models"][name], clear["models"][name]
    params = r["choice"]["params"][name]
    baseline = r["choice"].get("baselines", {}).get(name)
    loss = {"mse": "MSE", "oversample": f"MSE with {params.get('rare_fraction', 0):.0%} rare frames per batch",
            "learned": "MSE (the learned loss did not beat it on the tuning routes)" if r["targets"]["learned_is_mse"]
            else f"learned ({json.dumps(params)})"}.get(name) or (
        f"MSE (the {name} baseline did not beat it on the tuning routes)" if not baseline["kept"]
        else f"label-free baseline {name} ({json.dumps(params)})")
    dagger = " + DAgger" if (r["dagger_decision"] or {}).get("kept") else ""
    lines = [f"# Model card: `{name}.onnx`", "",
             f"- model id (SHA-256 prefix): `{e['model_id']}`; ONNX opset {e['opset']}; parity with torch: max |diff| {e['parity_max_abs_diff']:.2g}",
             f"- input: (N, 3, {spec.height}, {spec.width}) float32 RGB in [-1, 1], the road band of the camera frame (rows "
             f"{spec.crop_top:.0%}-{spec.crop_bottom:.0%} of its height, resized); the preprocessing spec is in the file's metadata",
             "- output: steer in [-1, 1], CARLA convention (+1 = full right)",
             f"- loss: {loss}{dagger}; trained by `metasteer pipeline` (seed {r['config']['seed']}, {r['dataset']['frames']} embedded-world "
             f"frames, events {r['dataset']['events']})", "",
             "## Offline (validation episodes, MAE in steer units)", "",
             f"overall {_mae(off['overall'])}, normal {_mae(off['normal'])}, abnormal {_mae(off['abnormal'])}", "",
             f"## Closed loop ({len(rare['routes'])} paired held-out embedded routes, rare-scene rate {rare['abnormal_rate']})", "",
             seeds_note or f"One training seed (seed {r['config']['seed']}): an anecdote until `metasteer study` pools seeds (README).", ""]
    lines += [f"- {g} scenes passed: {fmt_pct(m['pass_rate'][g]['rate'])} ({m['pass_rate'][g]['passed']}/{m['pass_rate'][g]['n']})"
              for g in RARE_CATEGORIES + ("rare",)]
    lines += [f"- route completion {_fmt(m['route_completion'])}, driving score {_fmt(m['driving_score'])}, "
              f"time without infractions {_fmt(m['time_without_infractions_s'])} s",
              f"- without rare scenes ({len(clear['routes'])} routes): route completion {_fmt(c['route_completion'])}", "",
              "Measured in the embedded world only; transfer to CARLA or a real car has not been measured.", ""]
    return "\n".join(lines)
