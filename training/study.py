"""``metasteer study``: the pipeline's claims over training seeds, judged per scene.

Seed ``tuning_seed`` runs the whole pipeline (``OUT/tuning``): its searches, on tuning routes only, fix every
hyperparameter. Then every further training seed runs, under ``OUT/seed-S``: its own collection, MSE base
model and DAgger rounds (the pipeline's stages 1-4), and every configuration trained from that seed's start
model on that seed's data exactly as its tuning trial was (loss, meta-learning, steps, learning rate), with
the seed's own training seed:

- ``mse``; ``oversample`` at its tuned share and, in the full-label mode, at ``label_modes.FRONTIER``'s shares; ``learned`` (the learned search's choice,
  also when the pipeline shipped MSE in its place);
- with ``--labels meta-only`` also every label-free baseline (``training.label_modes``), each its search's
  choice (also where MSE shipped in its place). The study then reports the learned loss against each baseline
  and against the best one (``label_modes.best_baseline``: the best tuning score on the tuning seed's tuning
  routes, never a held-out result), and the gap-closing ratio (learned - MSE) / (oversample - MSE) on the
  rare-scene pass rate (``training.study_stats.gap_ratio``).

Each seed's configurations drive that seed's held-out routes (rare-scene rate ``eval_abnormal_rate``), replay
every rare scene of those routes from the expert's state before it (``training.scenarios``: every model meets
every scene) and drive routes without rare scenes; ``training.study_stats.pool`` pools the seeds at the
scenario and the route level. The tuning seed is
reported apart and is never pooled: its routes chose the hyperparameters. Held-out routes choose nothing.
Every stage resumes: a re-run skips finished seeds, runs and comparisons without touching their files.
``keep`` (a small directory to commit) receives what the pooled claims need, as each part finishes: the tuning
run's (``keep/tuning``: ``run_pipeline``'s keep, every finished search on its own) and every finished seed's
``seed.json``; a study whose ``OUT`` was lost resumes from it (a full-size study takes longer than one machine lives). ``OUT`` and ``keep``
each hold the study's settings (``request.json``) and refuse another study's; seeds may be added.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from simulator.factory import WorldConfig
from training.files import atomic_write_bytes, read_json
from training.keep import claim_dirs, keep_files
from training.keep import restore as keep_restore
from training.label_modes import BASELINES, FRONTIER, baselines, best_baseline, tuning_scores
from training.pipeline import PipelineConfig


@dataclass(frozen=True)
class StudyConfig:
    seeds: int = field(default=5, metadata={"help": "training seeds in all: the first tunes, the others are pooled", "range": (2, None)})
    tuning_seed: int = field(default=0, metadata={"help": "the seed whose pipeline run fixes every hyperparameter", "range": (0, None)})
    routes: int = field(default=48, metadata={"help": "held-out routes per evaluation seed at the rare-scene rate", "range": (1, None)})
    clear_routes: int = field(default=16, metadata={"help": "held-out routes per evaluation seed without rare scenes", "range": (1, None)})
    losses: str = field(default="", metadata={"help": "further losses retrained on every seed, comma-separated (e.g. balanced-mse,"
                                                      "inverse-freq): each as MSE's trial was, its loss swapped, at its default settings"})

    def __post_init__(self) -> None:
        from training.losses import LOSSES

        if unknown := [n for n in self.extra_losses() if n not in LOSSES]:
            raise ValueError(f"--losses: unknown {unknown} (known: {', '.join(LOSSES)})")

    def extra_losses(self) -> list[str]:
        return [n.strip() for n in self.losses.split(",") if n.strip()]


def configurations(tuning: Path, shares: tuple[float, ...] = FRONTIER["full"], extra: tuple[str, ...] = ()) -> dict[str, dict]:
    """Name -> the tuning trial's request to train it again (``loss``, ``meta``, ``train``), from the tuning run;
    ``shares``: oversampling's frontier besides its tuned share; ``extra``: further losses, each MSE's request with
    its loss swapped (``LossSpec``'s defaults otherwise)."""
    report = read_json(tuning / "report.json")
    trials = tuning / "tune"
    learned = report["choice"]["learned_trial"]

    def request(space: str, trial: int | str) -> dict:
        name = trial if isinstance(trial, str) else f"trial-{trial:03d}"
        return read_json(trials / space / "bo" / "trials" / name / "request.json")

    over = request("oversample", Path(report["models"]["oversample"]).name)
    out = {"mse": request("learned", 0), "oversample": over}
    for share in shares:
        if share != over["train"]["rare_fraction"]:
            out[f"oversample-{share:g}"] = {**over, "train": {**over["train"], "rare_fraction": share}}
    if learned is not None:
        out["learned"] = request("learned", learned)
    for name in extra:
        if name not in out:
            out[name] = {**out["mse"], "loss": {**out["mse"]["loss"], "loss": name}}
    for b in baselines(list(report["choice"].get("best", {}))):
        if report["choice"]["best"][b] != "mse":
            out[b] = request(b, int(report["choice"]["best"][b].rsplit("-", 1)[1]))
    return out


def _stage(seed: int, name: str) -> float:
    print(f"\n== study seed {seed}: {name}", file=sys.stderr, flush=True)
    return time.perf_counter()


def run_seed(root: Path, seed: int, world_cfg: WorldConfig, pcfg: PipelineConfig, configs: dict[str, dict], cfg: StudyConfig,
             progress: bool) -> dict:
    """One evaluation seed: data, start model, every configuration, and its two comparisons."""
    from training.compare import compare
    from training.evaluate import EvalConfig
    from training.fit import TrainConfig, train_once, warm_start
    from training.losses import LossSpec
    from training.meta import MetaConfig
    from training.pipeline import collect_data, train_base

    pcfg = replace(pcfg, seed=seed)
    n, timings = pcfg.sizes(), {}
    t = _stage(seed, "collect")
    data, meta = collect_data(root / "data", world_cfg, pcfg, n, progress)
    timings["collect_s"] = time.perf_counter() - t
    base = train_base(root, data, meta, world_cfg, pcfg, n, timings, progress)
    runs = {}
    t = _stage(seed, f"train {len(configs)} configurations from {Path(base['start']).relative_to(root)}")
    for name, req in configs.items():
        runs[name] = root / "configs" / name
        train_once(runs[name], [Path(d) for d in base["data"]], meta, LossSpec(**req["loss"]), MetaConfig(**req["meta"]),
                   replace(warm_start(TrainConfig(**req["train"]), base["start"]), seed=seed), progress=progress)
    timings["configurations_s"] = time.perf_counter() - t
    t = _stage(seed, f"compare on {cfg.routes} + {cfg.clear_routes} held-out routes")
    ecfg = EvalConfig(episodes=cfg.routes, seed=seed, workers=2, max_time_s=n["max_time_s"])
    names = list(runs)
    rare = compare([runs[k] for k in names], replace(world_cfg, abnormal_rate=pcfg.eval_abnormal_rate), ecfg, root / "compare" / "rare",
                   names=names, progress=progress, reuse=True, scenarios=True)
    clear = compare([runs[k] for k in names], replace(world_cfg, abnormal_rate=0.0), replace(ecfg, episodes=cfg.clear_routes),
                    root / "compare" / "clear", names=names, progress=progress, reuse=True)
    timings["compare_s"] = time.perf_counter() - t
    return {"seed": seed, "start": base["start"], "dagger_kept": (base["decision"] or {}).get("kept"), "timings_s": timings,
            "rare": {k: m["per_route"] for k, m in rare["models"].items()},
            "scenario": {k: m["per_scene"] for k, m in rare["scenarios"]["models"].items()},
            "clear": {k: m["per_route"] for k, m in clear["models"].items()}}


def pairs(names: list[str]) -> list[tuple[str, str]]:
    """Every configuration against MSE; the learned loss against every other configuration (every oversampling
    share, every label-free baseline, every further loss given)."""
    out = [(k, "mse") for k in names if k != "mse"]
    return out + [("learned", k) for k in names if k not in ("learned", "mse")] if "learned" in names else out


def label_scarce(tuning_report: dict, tables: dict[str, dict[int, dict[str, dict]]], labels: str) -> dict | None:
    """Label-scarce studies (``labels`` not ``full``; a full-label study given a baseline's name as a further loss is
    not one): the best baseline, chosen on the tuning seed's tuning routes (``tuning_scores``; None if no baseline
    search had a finalist), and per level (``tables``: level -> seed -> configuration -> per-unit table) the
    gap-closing ratio (learned - mse) / (oversample - mse) on the rare-scene pass rate; None otherwise."""
    from training.study_stats import gap_ratio

    configs = list(next(iter(next(iter(tables.values())).values())))
    if labels == "full" or "learned" not in configs:
        return None
    return {"best_baseline": best_baseline(tuning_report), "tuning_scores": tuning_scores(tuning_report),
            "gap_ratio": {level: gap_ratio(t, "learned", "mse", "oversample", level) for level, t in tables.items()}}


def label_scarce_markdown(scarce: dict, levels: dict) -> str:
    """The label-scarce section of ``study.md``: the best baseline and why, then per level the learned loss
    against it and the gap-closing ratio."""
    from training.study_stats import difference_text, gap_ratio_text

    best, scores = scarce["best_baseline"], scarce["tuning_scores"]
    lines = ["## Label-scarce: the learned loss against the label-free baselines", "",
             "Best label-free baseline, chosen on the tuning seed's tuning routes (pooled pass rate of each one's chosen finalist: "
             + ", ".join(f"{b} {v:.0%}" for b, v in scores.items()) + f"): **{best}**.", ""]
    for level, lv in levels.items():
        against = ("no baseline search had a finalist" if best is None
                   else f"learned - {best} (the best baseline): " + difference_text(lv.difference("learned", best, "pass_rate_rare")))
        lines += [f"- {level} level: {against}; gap-closing ratio " + gap_ratio_text(scarce["gap_ratio"][level])]
    return "\n".join(lines) + "\n"


KEPT = ("tuning/tune/*/bo/trials/*/request.json", "tuning/export/*", "tuning/report.json")  # what seeds and cards read; the report last


def restore(out: Path, keep: Path) -> None:
    """``training.keep.restore``, refused when both hold a tuning run and they differ (seeds of one tuning run
    are never pooled with another's)."""
    ours, kept = out / "tuning" / "report.json", keep / "tuning" / "report.json"
    if ours.exists() and kept.exists() and ours.read_bytes() != kept.read_bytes():
        raise ValueError(f"{ours} and {kept} are two different tuning runs; resume with the --out or the --keep that made it")
    keep_restore(out, keep)


def check_losses(extra: list[str], labels: str) -> None:
    """Refuse, before any work, a further loss the mode cannot train (one that reads training labels, in meta-only
    mode) or one that would stand in for a searched baseline of the same name."""
    from training.losses import LABEL_FREE

    if labels != "full" and (bad := [n for n in extra if n not in LABEL_FREE or n in BASELINES]):
        raise ValueError(f"--losses {','.join(bad)}: with --labels {labels} a further loss must be label-free and not one of the "
                         f"searched baselines ({', '.join(BASELINES)}); label-free: {', '.join(LABEL_FREE)}")


def run_study(out: Path, world_cfg: WorldConfig, pcfg: PipelineConfig, cfg: StudyConfig, progress: bool = True,
              keep: Path | None = None) -> dict:
    from training import study_targets
    from training.export import git_commit
    from training.pipeline import run_pipeline
    from training.study_card import write_cards
    from training.study_stats import markdown, plot_study, pool, to_json

    out, keep = Path(out), Path(keep) if keep else None
    check_losses(cfg.extra_losses(), pcfg.labels)
    settings = {"world": asdict(world_cfg), "pipeline": {k: v for k, v in asdict(pcfg).items() if k != "seed"},
                "study": {k: v for k, v in asdict(cfg).items() if k != "seeds" and (k != "losses" or v)}}  # more seeds extend a study; anything else is another
    claim_dirs(out, keep, settings, "study")
    if keep:
        restore(out, keep)
    start = time.perf_counter()
    tuning = out / "tuning"
    if not (tuning / "report.json").exists():
        print(f"\n== study: tuning seed {cfg.tuning_seed} (the whole pipeline)", file=sys.stderr, flush=True)
        run_pipeline(tuning, world_cfg, replace(pcfg, seed=cfg.tuning_seed), progress=progress, keep=keep / "tuning" if keep else None)
    keep_files(out, keep, KEPT)  # also a tuning run that finished before this study had a keep
    configs = configurations(tuning, FRONTIER[pcfg.labels], tuple(cfg.extra_losses()))
    made_by = hashlib.sha256(json.dumps(configs, sort_keys=True).encode()).hexdigest()  # the configurations every seed retrains
    seeds = [cfg.tuning_seed + k for k in range(1, cfg.seeds)]
    per_seed = []
    for seed in seeds:
        done = out / f"seed-{seed}" / "seed.json"
        if not done.exists():
            result = run_seed(out / f"seed-{seed}", seed, world_cfg, pcfg, configs, cfg, progress)
            record = {**result, "configurations_sha256": made_by, "git_commit": git_commit()}  # a study may span sessions and commits
            atomic_write_bytes(done, (json.dumps(record) + "\n").encode())
        per_seed.append(read_json(done))
        if per_seed[-1].get("configurations_sha256", made_by) != made_by:
            raise ValueError(f"{done}: trained the configurations of another tuning run than {tuning}; it cannot be pooled with it")
        keep_files(out, keep, (f"seed-{seed}/seed.json",))
    names = list(configs)
    tables = {"scenario": {s["seed"]: s["scenario"] for s in per_seed}, "route": {s["seed"]: s["rare"] for s in per_seed}}
    levels = {"scenario": pool(tables["scenario"], pairs(names), "scenario"), "route": pool(tables["route"], pairs(names), "route"),
              "clear_route": pool({s["seed"]: s["clear"] for s in per_seed}, pairs(names), "route")}
    tuning_report = read_json(tuning / "report.json")
    scarce = label_scarce(tuning_report, tables, pcfg.labels)
    targets = study_targets.for_study(levels, scarce)
    shares = {k: float(configs[k]["train"]["rare_fraction"]) for k in names if k.startswith("oversample")}
    report = {"config": asdict(cfg), "pipeline": asdict(pcfg), "seeds": seeds, "tuning_seed": cfg.tuning_seed,
              "configurations": {k: {"loss": v["loss"], "rare_fraction": v["train"]["rare_fraction"]} for k, v in configs.items()},
              "tuning_seed_result": tuning_report["compare"]["rare"]["models"],
              "git_commits": {s["seed"]: s.get("git_commit", "unrecorded") for s in per_seed},
              "wall_s": time.perf_counter() - start, "timings_s": {s["seed"]: s["timings_s"] for s in per_seed},
              # wall_s is this invocation's (a resumed study re-times only what it ran); this is every stage's, tuning seed included
              "stages_s_total": sum(sum(s["timings_s"].values()) for s in per_seed) + sum(tuning_report.get("timings_s", {}).values()),
              **({"targets": [asdict(t) for t in targets]} if targets else {}),
              **({"label_scarce": {**scarce, "gap_ratio": {k: asdict(g) for k, g in scarce["gap_ratio"].items()}}} if scarce else {})}
    (out / "study_stats.json").write_text(to_json(levels))
    (out / "study.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    cards = write_cards(out / "cards", tuning_report, levels, str(out / "study.md"), targets, export_dir=tuning / "export")
    rates = {k: levels[k] for k in ("scenario", "route")}
    plot = plot_study(rates, out / "study.png", frontier=shares)
    (out / "study.md").write_text(f"# metasteer study: {len(seeds)} evaluation seeds {seeds} (tuning seed {cfg.tuning_seed} apart)\n\n"
                                  "## Held-out routes at the rare-scene rate: every scene replayed by every model, and the routes\n\n"
                                  + markdown(rates) +
                                  "\n\n## Held-out routes without rare scenes\n\n" + markdown({"route": levels["clear_route"]}) +
                                  ("\n\n" + study_targets.markdown(targets, seeds) if targets else "") +
                                  ("\n\n" + label_scarce_markdown(scarce, rates) if scarce else "") +
                                  f"\n\n![study]({plot.name})\n")
    return {"out": str(out), "seeds": seeds, "report": str(out / "study.md"), "cards": [str(c) for c in cards], "wall_s": report["wall_s"]}
