"""Issue 18's targets, judged on a full-label study's pooled statistics (fixed before the full-size result).

Rare scenes are judged at the scenario level (every model met every scene). The normal road is judged on both
measures the study has, and a target holds only if it holds on both: ``route`` (normal-road stretches of the
held-out routes at the rare-scene rate) and ``clear_route`` (routes without rare scenes). An interval's bound is
the hull of the two-level bootstrap and the t over seeds (a claim needs both):

- ``frontier``: at no oversampling share is oversampling better than learned on both axes by supported
  differences (``study_stats.beaten_on_both_axes``);
- ``pareto_tuned``: against the tuned share, learned - oversample on the rare-scene pass rate has lower bound
  >= -0.02 and on normal-road infractions per km upper bound < 0;
- ``failure_halved``: learned's rare-scene failure rate is at most half MSE's (pooled point estimates);
- ``every_seed``: learned passes at least as many rare scenes as MSE on every evaluation seed;
- ``protocol``: the study is the size the targets are stated for (>= 4 evaluation seeds, >= 48 routes per seed).

Issue 19's targets, for a label-scarce study (``judge_scarce``; the learned loss is the label-free weighting):

- ``gap_closed``: the gap-closing ratio (learned - mse) / (oversample - mse) at the scenario level >= 0.75 (point
  value; undefined, so not met, unless oversampling's own gain over MSE is supported; its bootstrap interval shown);
- ``beats_best_baseline``: learned - the best label-free baseline (chosen on tuning routes), lower bound of the hull > 0;
- ``normal_road``: learned's normal-road infractions per km not above MSE's, point estimates, on both measures;
- ``protocol``: as above.

``frontier`` holding means no supported win was found, not that a tie was shown; ``failure_halved`` compares point
estimates (no interval): the markdown says both.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.study_stats import NORMAL, RARE, GapRatio, LevelStats, beaten_on_both_axes, fmt_ci, fmt_stat

RARE_LOWER_BOUND, FAILURE_RATIO, GAP_CLOSED = -0.02, 0.5, 0.75
MIN_SEEDS, MIN_ROUTES = 4, 48
NORMAL_LEVELS = ("route", "clear_route")


@dataclass
class Target:
    name: str
    asks: str
    met: bool
    measured: str


def _hull(d) -> tuple[float, float] | None:
    cis = (d.estimate.bootstrap_ci95, d.estimate.t_ci95)
    return None if None in cis else (min(c[0] for c in cis), max(c[1] for c in cis))


def _signed(d) -> str:
    return fmt_stat(d.stat, d.estimate.value, True) + ("*" if d.supported else "")


def applies(levels: dict[str, LevelStats]) -> bool:
    """A full-label study: learned, MSE and the tuned oversampling share were all studied."""
    return all(c in levels["scenario"].configs for c in ("learned", "mse", "oversample"))


def judge(levels: dict[str, LevelStats]) -> list[Target]:
    """``levels``: ``scenario``, ``route`` and ``clear_route``, each pooled with ``study.pairs``."""
    scen = levels["scenario"]
    shares = [c for c in scen.configs if c.startswith("oversample")]
    beaten = [(s, lv) for s in shares for lv in NORMAL_LEVELS if beaten_on_both_axes(scen, levels[lv], "learned", s)]
    gaps = "; ".join(f"{s}: rare {_signed(scen.difference('learned', s, RARE))}, road /km "
                     + "/".join(_signed(levels[lv].difference("learned", s, NORMAL)) for lv in NORMAL_LEVELS) for s in shares)
    out = [Target("frontier", "no oversampling share beats learned on both axes (supported differences)", not beaten,
                  ("beaten by " + ", ".join(f"{s} ({lv} normal road)" for s, lv in beaten) if beaten
                   else "no supported win on both axes (absence of evidence, not a shown tie)") + f"; learned - share: {gaps}")]

    rare = _hull(scen.difference("learned", "oversample", RARE))
    road = {lv: _hull(levels[lv].difference("learned", "oversample", NORMAL)) for lv in NORMAL_LEVELS}
    pareto = (rare is not None and rare[0] >= RARE_LOWER_BOUND
              and all(b is not None and b[1] < 0 for b in road.values()))
    out.append(Target("pareto_tuned", f"learned - oversample (tuned share): rare-scene lower bound >= {RARE_LOWER_BOUND}, "
                      "normal-road upper bound < 0", pareto,
                      f"hull of both intervals: rare {fmt_ci(RARE, rare, True)}; normal road /km "
                      + ", ".join(f"{lv} {fmt_ci(NORMAL, b, True)}" for lv, b in road.items())))

    learned, mse = scen.configs["learned"][RARE].value, scen.configs["mse"][RARE].value
    defined = learned is not None and mse is not None
    out.append(Target("failure_halved", f"learned's rare-scene failure <= {FAILURE_RATIO}x MSE's (pooled point estimates)",
                      defined and 1.0 - learned <= FAILURE_RATIO * (1.0 - mse),
                      "n/a" if not defined else f"failure {1 - learned:.1%} vs {1 - mse:.1%}"
                      + (f": {(1 - learned) / (1 - mse):.2f}x" if mse < 1.0 else "") + " (no interval)"))

    per_seed = scen.difference("learned", "mse", RARE).estimate.per_seed
    out.append(Target("every_seed", "learned >= MSE on rare scenes on every evaluation seed",
                      all(v is not None and v >= 0 for v in per_seed),
                      "learned - mse per seed: " + " ".join(fmt_stat(RARE, v, True) for v in per_seed)))

    return out + [protocol(levels)]


def protocol(levels: dict[str, LevelStats]) -> Target:
    seeds, routes = len(levels["scenario"].seeds), min(levels["route"].units_per_seed)
    return Target("protocol", f">= {MIN_SEEDS} evaluation seeds, >= {MIN_ROUTES} held-out routes per seed",
                  seeds >= MIN_SEEDS and routes >= MIN_ROUTES, f"{seeds} seeds, {routes}-{max(levels['route'].units_per_seed)} routes per seed")


def judge_scarce(levels: dict[str, LevelStats], ratio: GapRatio, best: str | None) -> list[Target]:
    """Issue 19's targets: ``ratio`` is the scenario level's gap-closing ratio, ``best`` the best label-free baseline."""
    ci = "" if ratio.bootstrap_ci95 is None else f" [{ratio.bootstrap_ci95[0]:.2f}, {ratio.bootstrap_ci95[1]:.2f}]"
    out = [Target("gap_closed", f"(learned - mse) / (oversample - mse) on rare scenes >= {GAP_CLOSED} (point value; needs a supported gap)",
                  ratio.value is not None and ratio.value >= GAP_CLOSED,
                  f"undefined: {ratio.undefined}" if ratio.undefined else f"{ratio.value:.2f}{ci} (two-level bootstrap 95 %)")]
    if best is None:
        out.append(Target("beats_best_baseline", "learned - the best label-free baseline on rare scenes: lower bound > 0", False,
                          "no baseline search had a finalist"))
    else:
        d = levels["scenario"].difference("learned", best, RARE)
        hull = _hull(d)
        out.append(Target("beats_best_baseline", f"learned - {best} (best label-free baseline) on rare scenes: lower bound > 0",
                          hull is not None and hull[0] > 0, f"{_signed(d)}, hull of both intervals {fmt_ci(RARE, hull, True)}"))
    road = {lv: levels[lv].difference("learned", "mse", NORMAL) for lv in NORMAL_LEVELS}
    out.append(Target("normal_road", "learned's normal-road infractions / km not above MSE's (point estimates, both measures)",
                      all(d.estimate.value is not None and d.estimate.value <= 0 for d in road.values()),
                      "learned - mse /km: " + ", ".join(f"{lv} {_signed(d)} {fmt_ci(NORMAL, _hull(d), True)}" for lv, d in road.items())))
    return out + [protocol(levels)]


def for_study(levels: dict[str, LevelStats], scarce: dict | None) -> list[Target] | None:
    """The targets a study is judged on: issue 19's for a label-scarce one (``study.label_scarce``), else issue 18's
    where they apply, else none."""
    if scarce:
        return judge_scarce(levels, scarce["gap_ratio"]["scenario"], scarce["best_baseline"])
    return judge(levels) if applies(levels) else None


def markdown(targets: list[Target], seeds: list[int]) -> str:
    lines = [f"## {title(targets)} ({len(seeds)} evaluation seeds, scenario level; normal road on both measures)", "",
             "Differences are learned - other (pass rates as fractions, infractions per km); * marks a supported one "
             "(both intervals exclude 0).", "",
             "| target | asks | met | measured |", "|---|---|---|---|"]
    lines += [f"| {t.name} | {t.asks} | {'**yes**' if t.met else 'no'} | {t.measured} |" for t in targets]
    return "\n".join(lines) + "\n"


def title(targets: list[Target]) -> str:
    """Whose targets these are: issue 19's (label-scarce) or issue 18's."""
    return "Issue 19's targets (label-scarce)" if targets[0].name == "gap_closed" else "Issue 18's targets"
