"""Pooled statistics of a study over training seeds (issue 18): the estimator, fixed here.

Input, per training seed and configuration: a per-unit table in ``compare``'s layout (arrays of per-unit sums:
``rare_passed`` / ``rare_n`` and per category, ``normal_infractions`` / ``normal_km``, ``route_completion``).
A unit is a route (route level: each model's scenes are those it reached) or a scene (scenario level,
``scenario_table``: every model meets every scene, so the tables of one seed hold the same scenes in the same
order). Units are paired across configurations within a seed; seeds are independent replications.

Every statistic is a ratio of sums over units (pass rate = passed / scenes, infractions / km, mean route
completion = sum / routes). A configuration's estimate is the mean over seeds of its per-seed ratio (every seed
weighs the same: the claim is about training seeds); a paired difference is the mean over seeds of the
per-seed difference on the same units. Two 95 % intervals:

- two-level bootstrap: draw K seeds with replacement, then each drawn seed's units with replacement (a fresh
  draw each time a seed is drawn); the same draws for every configuration (paired) and statistic; the 2.5 and
  97.5 percentiles; a drawn seed where a statistic is undefined (no scene of the kind) is left out of that
  resample's mean, a resample with none left is dropped (as in ``compare``);
- Student t over the K per-seed values (K - 1 degrees of freedom).
With one seed (the tuning seed, reported apart) the bootstrap is ``compare``'s over units, and there is no t.

A difference is ``supported`` only when both intervals exclude 0 on the same side (the claim's interval is
their hull). Why both: resampling both levels counts scene noise twice (wide when it dominates), while with
few seeds a percentile bootstrap is too narrow when seed-to-seed spread dominates (a t with K - 1 degrees of
freedom is wider than its normal approximation): on synthetic data with seed spread 3x the scene noise it
covered 80 % at K = 3 and 86 % at K = 5, the t-interval 93-96 %; the t-interval is exact for normal per-seed
values, at any K. ``scenes_needed`` sizes the scene count of a paired comparison.

``gap_ratio`` (issue 19, label-scarce): how much of the gap from ``low`` to ``high`` a configuration closes,
(config - low) / (high - low), e.g. (learned - MSE) / (oversampling - MSE) on the rare-scene pass rate: the
ratio of the two pooled paired differences, its interval the percentiles of the same ratio in every resample of
the same two-level bootstrap. It is left undefined (no value, no interval) unless the denominator is a
supported difference: where the gap itself may be 0, the ratio is a quotient of noise (huge, either sign).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from simulator.encounters import RARE_CATEGORIES
from training.compare import BOOTSTRAP_SAMPLES, GROUPS, fmt_pct
from training.evaluate import mean_ci95
from training.figures import pyplot

LEVELS = ("scenario", "route")
# statistic -> (numerator, denominator) columns of the per-unit table; None: one per unit (a mean)
RATIOS: dict[str, tuple[str, str | None]] = {f"pass_rate_{g}": (f"{g}_passed", f"{g}_n") for g in GROUPS}
RATIOS["normal_infractions_per_km"] = ("normal_infractions", "normal_km")
RATIOS["route_completion"] = ("route_completion", None)
RARE, NORMAL = "pass_rate_rare", "normal_infractions_per_km"


@dataclass
class Estimate:
    """One statistic pooled over seeds (the module docstring's estimator)."""

    value: float | None  # mean over the seeds where it is defined of the per-seed values
    per_seed: list[float | None]  # in the order of ``LevelStats.seeds``
    seed_sd: float | None  # seed-to-seed standard deviation of the per-seed values
    bootstrap_ci95: list[float] | None
    t_ci95: list[float] | None
    totals: list[float] | None = None  # one configuration's [numerator, denominator] over all seeds and units


@dataclass
class Difference:
    """``config - reference`` for one statistic, paired on the same units of every seed."""

    config: str
    reference: str
    stat: str
    estimate: Estimate
    supported: bool  # both intervals exclude 0 on the same side


@dataclass
class LevelStats:
    """Every configuration's pooled statistics and the asked-for paired differences at one level."""

    level: str  # "scenario" or "route"
    seeds: list[int]
    units_per_seed: list[int]
    samples: int
    rng_seed: int
    configs: dict[str, dict[str, Estimate]]
    differences: list[Difference]

    def difference(self, config: str, reference: str, stat: str) -> Difference:
        for d in self.differences:
            if (d.config, d.reference, d.stat) == (config, reference, stat):
                return d
        raise KeyError(f"no {stat} difference {config} - {reference} at the {self.level} level")


@dataclass(frozen=True)
class Resamples:
    """The two-level bootstrap's draws, shared by every configuration and statistic of a level."""

    slot_seed: np.ndarray  # (samples, K): the seed each of a resample's K slots drew
    counts: list[np.ndarray]  # per seed: (slots that drew it, its units): how often each unit was drawn


def draw_resamples(units_per_seed: list[int], samples: int, rng_seed: int) -> Resamples:
    """``samples`` resamples: K seeds drawn with replacement, then a fresh draw of the units for every slot."""
    rng = np.random.default_rng(rng_seed)
    k = len(units_per_seed)
    slot_seed = rng.integers(0, k, size=(samples, k))
    counts = []
    for s, n in enumerate(units_per_seed):
        m = int((slot_seed == s).sum())
        flat = (np.arange(m)[:, None] * n + rng.integers(0, n, size=(m, n))).ravel()
        counts.append(np.bincount(flat, minlength=m * n).reshape(m, n).astype(float))
    return Resamples(slot_seed, counts)


def _ratio(sums: np.ndarray) -> np.ndarray:
    """``sums[..., 0] / sums[..., 1]``, NaN where the denominator is 0 (undefined)."""
    num, den = sums[..., 0], sums[..., 1]
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _paired(sums: np.ndarray) -> np.ndarray:
    """Columns [reference num, den, config num, den]: config - reference."""
    return _ratio(sums[..., 2:]) - _ratio(sums[..., :2])


def _seed_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis (seeds or slots) of the defined values; NaN where none is."""
    ok = ~np.isnan(values)
    n = ok.sum(-1)
    return np.divide(np.where(ok, values, 0.0).sum(-1), n, out=np.full(n.shape, np.nan), where=n > 0)


Stat = Callable[[np.ndarray], np.ndarray]  # per-unit column sums (..., c) -> statistic (...), NaN if undefined


def two_level_replicates(columns: list[np.ndarray], fn: Stat, res: Resamples) -> np.ndarray:
    """``fn`` (per-unit column sums -> statistic) pooled over the slots of every resample: (samples,), NaN
    where undefined. ``columns[s]``: seed s's (units, c) matrix of per-unit values."""
    sums = np.empty(res.slot_seed.shape + (columns[0].shape[1],))
    for s, x in enumerate(columns):
        sums[res.slot_seed == s] = res.counts[s] @ x  # each slot: its own draw of the seed's units
    return _seed_mean(fn(sums))


def percentile_ci(replicates: np.ndarray) -> list[float] | None:
    """2.5 / 97.5 percentiles of the defined replicates; None when fewer than half are (``compare``'s rule)."""
    ok = replicates[~np.isnan(replicates)]
    if len(ok) < len(replicates) / 2:
        return None
    return [float(np.percentile(ok, 2.5)), float(np.percentile(ok, 97.5))]


def t_interval(values: list[float]) -> list[float] | None:
    """Mean +- t(0.975, K - 1) * sd / sqrt(K) over per-seed values; None below 2 values."""
    m = mean_ci95(values)
    return None if m["ci95"] is None else [m["mean"] - m["ci95"], m["mean"] + m["ci95"]]


def _estimate(columns: list[np.ndarray], fn: Stat, res: Resamples) -> Estimate:
    per_seed = fn(np.stack([x.sum(0) for x in columns]))
    defined = [float(v) for v in per_seed if not np.isnan(v)]
    return Estimate(value=float(np.mean(defined)) if defined else None,
                    per_seed=[None if np.isnan(v) else float(v) for v in per_seed],
                    seed_sd=float(np.std(defined, ddof=1)) if len(defined) > 1 else None,
                    bootstrap_ci95=percentile_ci(two_level_replicates(columns, fn, res)),
                    t_ci95=t_interval(defined))


def _columns(table: dict, stat: str) -> np.ndarray:
    num, den = RATIOS[stat]
    x = np.asarray(table[num], float)
    return np.stack([x, np.ones_like(x) if den is None else np.asarray(table[den], float)], axis=1)


def scenario_table(scenes: list[dict]) -> dict[str, np.ndarray]:
    """One unit per scene, from scene verdicts ``{"category", "passed"}`` (``judge_episode``'s), listed in the
    same order for every configuration of a seed."""
    cats = [s["category"] for s in scenes]
    if unknown := set(cats) - set(RARE_CATEGORIES):
        raise ValueError(f"scenario table: unknown scene categories {sorted(unknown)} "
                         f"(known: {RARE_CATEGORIES})")
    passed = np.array([bool(s["passed"]) for s in scenes], float)
    t = {}
    for g in GROUPS:
        member = np.array([g in ("rare", c) for c in cats], float)
        t[f"{g}_n"], t[f"{g}_passed"] = member, member * passed
    return t


def _check(tables: dict[int, dict[str, dict]], pairs: list[tuple[str, str]],
           level: str) -> tuple[list[str], list[int]]:
    """Configurations and units per seed, after checking that the tables can be pooled and paired."""
    if level not in LEVELS:
        raise ValueError(f"level {level!r}: expected one of {LEVELS}")
    if not tables:
        raise ValueError("no seeds to pool")
    seeds = list(tables)
    configs = list(tables[seeds[0]])
    n_units = []
    for s in seeds:
        if set(tables[s]) != set(configs):
            raise ValueError(f"seed {s} has configurations {sorted(tables[s])}, "
                             f"seed {seeds[0]} has {sorted(configs)}")
        lengths = {c: len(np.asarray(t["rare_n"])) for c, t in tables[s].items()}
        if len(set(lengths.values())) != 1 or 0 in lengths.values():
            raise ValueError(f"seed {s}: configurations must share their (non-empty) {level}s, "
                             f"got unit counts {lengths}")
        if level == "scenario":
            first = tables[s][configs[0]]
            counts = [f"{g}_n" for g in GROUPS if f"{g}_n" in first]
            for c, t in tables[s].items():
                if any(k not in t or not np.array_equal(t[k], first[k]) for k in counts):
                    raise ValueError(f"seed {s}: scenario level needs every configuration on the same scenes "
                                     f"in the same order; {c} and {configs[0]} differ")
            if not np.all(np.asarray(first["rare_n"]) == 1):
                raise ValueError(f"seed {s}: a scenario-level unit is one rare scene (rare_n == 1)")
        n_units.append(next(iter(lengths.values())))
    for pair in pairs:
        if unknown := [c for c in pair if c not in configs]:
            raise ValueError(f"pair {pair}: unknown configurations {unknown} (known: {configs})")
    return configs, n_units


def pool(tables: dict[int, dict[str, dict]], pairs: list[tuple[str, str]], level: str, rng_seed: int = 0,
         samples: int = BOOTSTRAP_SAMPLES) -> LevelStats:
    """Pooled statistics of ``tables`` (training seed -> configuration -> per-unit table) at ``level``, and the
    paired difference ``config - reference`` of every ``(config, reference)`` in ``pairs``, for every statistic
    whose columns every table has. The same ``rng_seed`` gives the same numbers."""
    configs, n_units = _check(tables, pairs, level)
    seeds = list(tables)
    every = [tables[s][c] for s in seeds for c in configs]
    stats = [k for k, keys in RATIOS.items() if all(key is None or key in t for t in every for key in keys)]
    res = draw_resamples(n_units, samples, rng_seed)
    cols = {(c, k): [_columns(tables[s][c], k) for s in seeds] for c in configs for k in stats}
    out = {}
    for c in configs:
        out[c] = {}
        for k in stats:
            e = _estimate(cols[c, k], _ratio, res)
            e.totals = [float(v) for v in sum(x.sum(0) for x in cols[c, k])]
            out[c][k] = e
    diffs = []
    for c, ref in pairs:
        for k in stats:
            e = _estimate([np.hstack([r, x]) for r, x in zip(cols[ref, k], cols[c, k])], _paired, res)
            diffs.append(Difference(c, ref, k, e, supported=supported(e)))
    return LevelStats(level, [int(s) for s in seeds], n_units, samples, rng_seed, out, diffs)


def supported(e: Estimate) -> bool:
    """Both intervals exist and exclude 0 on the same side."""
    cis = (e.bootstrap_ci95, e.t_ci95)
    return all(ci is not None for ci in cis) and (all(ci[0] > 0 for ci in cis) or all(ci[1] < 0 for ci in cis))


@dataclass
class GapRatio:
    """``(config - low) / (high - low)`` for one statistic: the share of the gap from ``low`` to ``high`` that
    ``config`` closes (0: no better than ``low``; 1: as good as ``high``)."""

    config: str
    low: str
    high: str
    stat: str
    value: float | None  # pooled numerator / pooled denominator; None when undefined
    bootstrap_ci95: list[float] | None  # percentiles of the per-resample ratio; None when undefined
    numerator: Estimate  # config - low, paired
    denominator: Estimate  # high - low, paired
    undefined: str | None  # why there is no value, or None


def gap_ratio(tables: dict[int, dict[str, dict]], config: str, low: str, high: str, level: str, stat: str = RARE,
              rng_seed: int = 0, samples: int = BOOTSTRAP_SAMPLES) -> GapRatio:
    """The gap-closing ratio of ``config`` between ``low`` and ``high`` over ``tables`` (as ``pool``'s; the same
    ``rng_seed`` draws the same resamples as ``pool``). Undefined unless ``high - low`` is ``supported``."""
    _, n_units = _check(tables, [(config, low), (high, low)], level)
    seeds = list(tables)
    res = draw_resamples(n_units, samples, rng_seed)

    def paired(c: str) -> list[np.ndarray]:
        return [np.hstack([_columns(tables[s][low], stat), _columns(tables[s][c], stat)]) for s in seeds]

    num, den = _estimate(paired(config), _paired, res), _estimate(paired(high), _paired, res)
    out = GapRatio(config, low, high, stat, None, None, num, den, None)
    if not supported(den):
        out.undefined = (f"{high} - {low} is not a supported difference (bootstrap 95 % {fmt_ci(stat, den.bootstrap_ci95, True)}, "
                         f"t 95 % {fmt_ci(stat, den.t_ci95, True)}): the gap may be 0, so the ratio is unstable")
        return out
    if num.value is None:
        out.undefined = f"{config} - {low} is undefined (no unit of the kind)"
        return out
    top, bottom = two_level_replicates(paired(config), _paired, res), two_level_replicates(paired(high), _paired, res)
    ratios = np.divide(top, bottom, out=np.full(top.shape, np.nan), where=bottom != 0)
    out.value, out.bootstrap_ci95 = num.value / den.value, percentile_ci(ratios)
    return out


def difference_text(d: Difference) -> str:
    """One paired difference in words: pooled value, both intervals, whether it is supported."""
    e = d.estimate
    return (f"{fmt_stat(d.stat, e.value, True)} (two-level bootstrap 95 % {fmt_ci(d.stat, e.bootstrap_ci95, True)}, t 95 % "
            f"{fmt_ci(d.stat, e.t_ci95, True)}; supported: {'yes' if d.supported else 'no'})")


def gap_ratio_text(g: GapRatio) -> str:
    """A gap-closing ratio in words, or why it is undefined."""
    name = f"({g.config} - {g.low}) / ({g.high} - {g.low})"
    if g.undefined:
        return f"{name}: undefined ({g.undefined})"
    ci = "n/a" if g.bootstrap_ci95 is None else f"[{g.bootstrap_ci95[0]:.2f}, {g.bootstrap_ci95[1]:.2f}]"
    return f"{name}: {g.value:.2f} (two-level bootstrap 95 % {ci})"


def beaten_on_both_axes(rates: LevelStats, normal: LevelStats, config: str, other: str) -> bool:
    """``other`` beats ``config`` on both axes, each by a supported difference: a higher rare-scene pass rate
    (``rates``' level) and fewer normal-road infractions per km (issue 18 asks this to be false for learned
    against oversampling at every share)."""
    rate, road = rates.difference(config, other, RARE), normal.difference(config, other, NORMAL)
    return rate.supported and rate.estimate.value < 0 and road.supported and road.estimate.value > 0


def to_json(levels: dict[str, LevelStats]) -> str:
    return json.dumps({name: asdict(v) for name, v in levels.items()}, indent=2) + "\n"


def scenes_needed(d: float, p: float | None = None, discordance: float | None = None, alpha: float = 0.05,
                  power: float = 0.8) -> int:
    """Scenes each method must meet (the same scenes, paired: scenario level) for McNemar's test at two-sided
    level ``alpha`` to detect a pass-rate difference ``d`` with probability ``power`` (Connor, Biometrics 1987):

        n = (z(1 - alpha/2) * sqrt(psi) + z(power) * sqrt(psi - d^2))^2 / d^2

    psi, the discordance rate (the share of scenes that one method passes and the other fails), decides n:
    methods that fail the same scenes need fewer. Without ``discordance``, psi is that of independent outcomes
    at pass rates ``p`` and ``p + d``: p (1 - p - d) + (p + d)(1 - p). Near p = 0.9, d = 0.03 needs 1359 scenes
    if independent (psi = 0.156) and 521 at psi = 0.06. This is scene noise alone; seed-to-seed spread comes on
    top, and the t-interval over K seeds needs the per-seed differences to agree (n is a total over seeds)."""
    from scipy.stats import norm

    if discordance is None:
        if p is None or not (0 < p < 1 and 0 <= p + d <= 1):
            raise ValueError(f"scenes_needed: give discordance, or p in (0, 1) with p + d in [0, 1] "
                             f"(p={p}, d={d})")
        discordance = p * (1 - p - d) + (p + d) * (1 - p)
    if not (0 < abs(d) <= discordance <= 1):
        raise ValueError(f"scenes_needed: need 0 < |d| <= discordance <= 1 (d={d}, discordance={discordance})")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"scenes_needed: alpha and power in (0, 1) (alpha={alpha}, power={power})")
    za, zb = norm.ppf(1 - alpha / 2), norm.ppf(power)
    return math.ceil((za * math.sqrt(discordance) + zb * math.sqrt(discordance - d * d)) ** 2 / (d * d))


def fmt_stat(stat: str, x: float | None, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    if signed:
        return f"{x:+.3f}"
    return fmt_pct(x) if stat.startswith("pass_rate") else f"{x:.3f}"


def fmt_ci(stat: str, ci: list[float] | tuple[float, float] | None, signed: bool = False) -> str:
    return "n/a" if ci is None else f"[{fmt_stat(stat, ci[0], signed)}, {fmt_stat(stat, ci[1], signed)}]"


def markdown(levels: dict[str, LevelStats]) -> str:
    """Per level: one row per configuration (pooled value, bootstrap interval, seed range), then the paired
    differences with both intervals, every per-seed value and whether the claim is supported."""
    out = []
    for lv in levels.values():
        stats = list(next(iter(lv.configs.values())))
        out += [f"### {lv.level} level: {len(lv.seeds)} seeds ({', '.join(map(str, lv.seeds))}), "
                f"{min(lv.units_per_seed)}-{max(lv.units_per_seed)} {lv.level}s per seed", "",
                "| configuration | " + " | ".join(stats) + " |", "|---" * (len(stats) + 1) + "|"]
        for c, by_stat in lv.configs.items():
            cells = []
            for k, e in by_stat.items():
                seen = [v for v in e.per_seed if v is not None]
                spread = f"seeds {fmt_stat(k, min(seen))}-{fmt_stat(k, max(seen))}" if seen else "no seed"
                cells.append(f"{fmt_stat(k, e.value)} {fmt_ci(k, e.bootstrap_ci95)}, {spread}")
            out.append(f"| {c} | " + " | ".join(cells) + " |")
        out += ["", "| difference | statistic | pooled | two-level bootstrap 95 % | t 95 % (seeds) | per seed "
                    "| supported |", "|---" * 7 + "|"]
        for d in lv.differences:
            e = d.estimate
            if e.value is None:  # no unit of the kind at this level (pass rates on routes without rare scenes)
                continue
            out.append(f"| {d.config} - {d.reference} | {d.stat} | {fmt_stat(d.stat, e.value, True)} | "
                       f"{fmt_ci(d.stat, e.bootstrap_ci95, True)} | {fmt_ci(d.stat, e.t_ci95, True)} | "
                       f"{' '.join(fmt_stat(d.stat, v, True) for v in e.per_seed)} | "
                       f"{'yes' if d.supported else 'no'} |")
        out.append("")
    return "\n".join(out)


def _differences_panel(ax, lv: LevelStats, stat: str, title: str) -> None:
    diffs = [d for d in lv.differences if d.stat == stat]
    for i, d in enumerate(diffs):
        e = d.estimate
        seen = [v for v in e.per_seed if v is not None]
        ax.plot(np.full(len(seen), i) + np.linspace(-0.12, 0.12, len(seen)), seen, "o", color="0.6", ms=4,
                label="per seed" if i == 0 else None)
        for ci, dx, colour, name in ((e.bootstrap_ci95, -0.22, "tab:blue", "two-level bootstrap 95 %"),
                                     (e.t_ci95, 0.22, "tab:orange", "t 95 % over seeds")):
            if ci is not None:
                ax.plot([i + dx] * 2, ci, color=colour, lw=3, label=name if i == 0 else None)
        if e.value is not None:
            ax.plot([i - 0.3, i + 0.3], [e.value] * 2, "k-", lw=1.5, label="pooled" if i == 0 else None)
    ax.axhline(0, color="k", lw=0.6, ls=":")
    ax.set_xticks(range(len(diffs)), [f"{d.config} - {d.reference}" for d in diffs], fontsize=7, rotation=30,
                  ha="right")
    ax.set(title=title, ylabel="difference")
    if diffs:
        ax.legend(fontsize=7)


def _nan(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], float)


def _error_bar(e: Estimate) -> list[list[float]] | None:
    ci = e.bootstrap_ci95
    return None if ci is None else [[e.value - ci[0]], [ci[1] - e.value]]


def _frontier_panel(ax, rates: LevelStats, normal: LevelStats, frontier: dict[str, float]) -> None:
    for c in normal.configs:
        x, y = normal.configs[c][NORMAL], rates.configs[c][RARE]
        colour = "tab:orange" if c in frontier else "tab:blue"
        ax.plot(_nan(x.per_seed), _nan(y.per_seed), ".", alpha=0.4, color=colour)
        if x.value is None or y.value is None:
            continue
        ax.errorbar(x.value, y.value, xerr=_error_bar(x), yerr=_error_bar(y), fmt="o", capsize=3, color=colour)
        ax.annotate(c if c not in frontier else f"share {frontier[c]:.2g}", (x.value, y.value), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    by_share = sorted(frontier, key=frontier.get)
    curve = [(normal.configs[c][NORMAL].value, rates.configs[c][RARE].value) for c in by_share]
    curve = [(x, y) for x, y in curve if x is not None and y is not None]
    if curve:
        ax.plot(*zip(*curve), "-", color="tab:orange", lw=1, label="oversampling across shares")
        ax.legend(fontsize=7)
    ax.set(xlabel="normal-road infractions per km (route level)",
           ylabel=f"rare-scene pass rate ({rates.level} level)",
           title="pass rate vs normal road (pooled, bootstrap 95 %)")


def plot_study(levels: dict[str, LevelStats], out: Path, frontier: dict[str, float] | None = None) -> Path:
    """Paired differences (per-seed points, pooled value, both intervals) of the rare-scene pass rate (scenario
    level when there is one) and of normal-road infractions per km, and the frontier: pass rate against
    normal-road infractions per km per configuration, ``frontier`` (configuration -> oversampling share) joined
    as a curve in share order."""
    rates = levels.get("scenario") or levels["route"]
    normal = levels.get("route")
    if unknown := set(frontier or {}) - set(rates.configs):
        raise ValueError(f"plot_study: frontier configurations {sorted(unknown)} are not in the study "
                         f"({list(rates.configs)})")
    plt = pyplot()
    fig, axes = plt.subplots(1, 3 if normal else 1, figsize=(17 if normal else 6, 4.8), squeeze=False)
    _differences_panel(axes[0, 0], rates, RARE, f"rare-scene pass rate ({rates.level} level)")
    if normal:
        _differences_panel(axes[0, 1], normal, NORMAL, "normal-road infractions per km")
        _frontier_panel(axes[0, 2], rates, normal, frontier or {})
    fig.suptitle(f"{len(rates.seeds)} training seeds, pooled (mean over seeds)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
