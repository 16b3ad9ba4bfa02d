"""Model cards whose claims come from a study: the tuning seed's card (the shipped file is that seed's export) with
its closed-loop numbers labelled as one seed, and a section pooling the same configuration retrained on every
evaluation seed (``study_stats``; scenario level for rare scenes, both normal-road measures)."""

from __future__ import annotations

from pathlib import Path

from training.study_stats import NORMAL, RARE, LevelStats, difference_text
from training.study_targets import Target, title

RATES = ("pass_rate_pedestrian", "pass_rate_obstacle", "pass_rate_sharp_bend", RARE)


def _estimate(lv: LevelStats, config: str, stat: str) -> str:
    e = lv.configs[config].get(stat)
    if e is None or e.value is None:
        return "n/a"
    fmt = (lambda x: f"{x:.1%}") if stat.startswith("pass_rate") else (lambda x: f"{x:.3f}")
    ci = "n/a" if e.bootstrap_ci95 is None else f"[{fmt(e.bootstrap_ci95[0])}, {fmt(e.bootstrap_ci95[1])}]"
    seen = [v for v in e.per_seed if v is not None]
    return f"{fmt(e.value)} (two-level bootstrap 95 % {ci}; per seed {', '.join(fmt(v) for v in seen)})"


def section(config: str, levels: dict[str, LevelStats], study: str, targets: list[Target] | None, ships_mse: bool = False) -> str:
    """The pooled claims about ``config``'s recipe; ``study``: where the study's report lives, for the reader;
    ``ships_mse``: the file is MSE (the tuning seed's ``config`` did not beat it), not the recipe studied."""
    scen, route, clear = levels["scenario"], levels["route"], levels["clear_route"]
    seeds = ", ".join(map(str, scen.seeds))
    lines = [f"## Across training seeds ({len(scen.seeds)} evaluation seeds: {seeds}; `{study}`)", "",
             f"This configuration retrained on each evaluation seed's own data and MSE + DAgger start model, exactly as its "
             f"tuning trial was; each seed judged on its own held-out routes. The claims are about the recipe; "
             + (f"**this file does not hold it**: it is MSE, because the tuning seed's {config} did not beat MSE on its tuning "
                f"routes." if ships_mse else "this file is the tuning seed's model, whose own numbers are above."), "",
             f"Every rare scene of the held-out routes replayed from the expert's state ({min(scen.units_per_seed)}-"
             f"{max(scen.units_per_seed)} scenes per seed, every model on every scene):", ""]
    lines += [f"- {stat.removeprefix('pass_rate_').replace('rare', 'all rare scenes')} passed: {_estimate(scen, config, stat)}"
              for stat in RATES if stat in scen.configs[config]]
    lines += [f"- normal-road infractions per km: {_estimate(route, config, NORMAL)} on the routes at the rare-scene rate, "
              f"{_estimate(clear, config, NORMAL)} on routes without rare scenes",
              f"- route completion: {_estimate(route, config, 'route_completion')}", ""]
    if config != "mse":
        lines += ["Paired against MSE (a claim only where both intervals exclude 0):", "",
                  f"- rare scenes: {difference_text(scen.difference(config, 'mse', RARE))}",
                  f"- normal road per km (routes at the rare-scene rate): {difference_text(route.difference(config, 'mse', NORMAL))}",
                  f"- normal road per km (routes without rare scenes): {difference_text(clear.difference(config, 'mse', NORMAL))}", ""]
    if config == "learned" and targets:
        lines += [f"{title(targets)} (`{study}` has the table): " + "; ".join(f"{t.name} {'met' if t.met else 'not met'}" for t in targets), ""]
    return "\n".join(lines)


def _ships_mse(name: str, r: dict) -> bool:
    """The pipeline shipped MSE under ``name`` (its rule: the learned loss or a baseline must beat MSE on tuning routes)."""
    if name == "learned":
        return bool(r["targets"]["learned_is_mse"])
    baseline = r["choice"].get("baselines", {}).get(name)
    return baseline is not None and not baseline["kept"]


def write_cards(out: Path, tuning_report: dict, levels: dict[str, LevelStats], study: str,
                targets: list[Target] | None, export_dir: Path | None = None) -> list[Path]:
    """``out/NAME.md`` for every model the tuning seed exported: its card, then the study's section. ``export_dir``:
    where the exports are now (a study resumed from ``--keep`` in a new ``--out``), if not where the report says."""
    from training.pipeline import model_card

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in tuning_report["exported"]:
        note = f"One training seed (seed {tuning_report['config']['seed']}, the study's tuning seed): an anecdote; the pooled claims follow."
        card = model_card(name, tuning_report, seeds_note=note, onnx=export_dir / f"{name}.onnx" if export_dir else None)
        if name in levels["scenario"].configs:
            card += "\n" + section(name, levels, study, targets, ships_mse=_ships_mse(name, tuning_report))
        paths.append(out / f"{name}.md")
        paths[-1].write_text(card)
    return paths
