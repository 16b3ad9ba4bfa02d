"""Scenario evaluation: every rare scene of the held-out routes, met by every model from one common state.

Route evaluation (``compare``) judges the scenes a model reaches on its own drive: a model that crashes early
meets fewer, so the denominators differ. Here the world's expert first drives each route (``find_scenarios``);
each of its encounters (``simulator.encounters``) becomes a ``ScenarioSpec``. A model then replays it
(``replay``): ``reset(route seed)``, the expert drives ``handover_step`` steps (``LEAD_S`` before the scene's
onset: the expert's pose, speed and actors, exactly, as the world is deterministic per seed), then the model
drives through ``drive_episode`` (``evaluate``'s code path) until ``PASS_AFTER_S`` + ``SLACK_S`` after the
expert's last frame of the scene, or until the world ends the episode (a collision).

A scene passes as in ``compare``: no counted infraction from its onset until ``PASS_AFTER_S`` after its last
frame (``judge_scenario``). Onset and end are the expert's, widened to the model's own encounter of that
category when it overlaps them (a model that drives differently meets the scene a little earlier or later).
A replay the world ends before the window closes (a collision, the car lost) fails, even before the onset:
every scene gets a verdict, so every model has the same scenes in the same order (``study_stats.scenario_table``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from metasteer.policy import OnnxPolicy
from simulator.base import FIXED_DELTA_S
from simulator.encounters import encounters
from simulator.factory import WorldConfig
from training.compare import GROUPS, MERGE_GAP_S, PASS_AFTER_S, fmt_pct, fmt_signed
from training.data.collect import NoisyExpert
from training.evaluate import EvalConfig, drive_episode, route_seed, run_jobs
from training.study_stats import RARE, pool, scenario_table

LEAD_S = 3.0  # handover this long before onset: the model settles (speed controller, its own lane position)
#               on the road before the scene, yet starts close enough to it that the scene decides the outcome
SLACK_S = 3.0  # the replay runs this long past the expert's window: room for a model that meets the scene later
_STEPS = {name: round(s / FIXED_DELTA_S) for name, s in (("lead", LEAD_S), ("after", PASS_AFTER_S),
                                                           ("slack", SLACK_S), ("gap", MERGE_GAP_S))}


@dataclass(frozen=True)
class ScenarioSpec:
    """One rare scene of a route as the expert met it; steps count from ``reset(route_seed)``."""

    route: int  # index of the route in the evaluation set
    route_seed: int
    category: str
    handover_step: int  # the expert drives this many steps, then the model
    onset_step: int  # the expert's first frame of the scene
    end_step: int  # the expert's last frame of the scene

    @property
    def stop_time_s(self) -> float:
        """The replay's time limit (half a step past its last step: the world's clock is a float sum)."""
        return (self.end_step + _STEPS["after"] + _STEPS["slack"] + 0.5) * FIXED_DELTA_S


def route_scenarios(route: int, seed: int, steps: dict, truncated: bool) -> list[ScenarioSpec]:
    """The scenarios of one expert drive (``drive_episode``'s ``steps``), in order of onset; a scene the route's
    time limit cut off is left out (as ``judge_episode`` leaves it unjudged)."""
    n = len(steps["category"])
    return [ScenarioSpec(route, seed, e.category, max(0, e.start - _STEPS["lead"]), e.start, e.end)
            for e in encounters(steps["category"], _STEPS["gap"])
            if not (truncated and e.end + _STEPS["after"] > n - 1)]


def judge_scenario(steps: dict, spec: ScenarioSpec, truncated: bool, completed: bool) -> dict:
    """The verdict of one replay (``steps`` from the handover on): see the module docstring. ``met``: the model
    had its own encounter of the scene's category; ``cut_off``: the replay's time limit came first."""
    onset, end = spec.onset_step - spec.handover_step, spec.end_step - spec.handover_step
    after = _STEPS["after"]
    own = [e for e in encounters(steps["category"], _STEPS["gap"])
           if e.category == spec.category and e.start <= end + after and e.end >= onset - after]
    start = min([onset] + [e.start for e in own])
    stop = max([end] + [e.end for e in own]) + after
    infraction = np.asarray(steps["infraction"], dtype=bool)
    short = len(infraction) - 1 < stop
    ended_early = short and not truncated and not completed  # the world ended it: a collision, or the car lost
    return {"category": spec.category, "passed": not (infraction[start:stop + 1].any() or ended_early),
            "met": bool(own), "cut_off": short and truncated}


def replay(spec: ScenarioSpec, world_cfg: WorldConfig, policy: OnnxPolicy | None = None, actuation_delay_ticks: int = 0,
           on_step=None) -> dict:
    """``policy`` (or, given None, the world's expert) drives ``spec`` from its common state; its verdict.
    ``on_step``: ``drive_episode``'s hook, first called on the handover state."""
    ep = drive_episode(policy, world_cfg, spec.route_seed, spec.stop_time_s, trace=False,
                       actuation_delay_ticks=actuation_delay_ticks, on_step=on_step, handover_step=spec.handover_step,
                       driver=None if policy else NoisyExpert(noise=False))
    return judge_scenario(ep["steps"], spec, ep["truncated"], ep["metrics"]["route_completion"] >= 1.0)


def _scan_job(args: tuple) -> list[ScenarioSpec]:
    route, world_cfg, seed, max_time_s = args
    ep = drive_episode(None, world_cfg, seed, max_time_s, trace=False, driver=NoisyExpert(noise=False))
    return route_scenarios(route, seed, ep["steps"], ep["truncated"])


def _replay_job(args: tuple) -> dict:
    model, world_cfg, spec, delay_ticks = args
    return replay(spec, world_cfg, OnnxPolicy.load(model) if model else None, delay_ticks if model else 0)


def _check_world(world_cfg: WorldConfig) -> None:
    if world_cfg.world != "embedded":
        raise ValueError(f"scenario replay needs a world that is deterministic per seed (embedded), got {world_cfg.world!r}")


def find_scenarios(world_cfg: WorldConfig, cfg: EvalConfig, progress: bool = True) -> list[ScenarioSpec]:
    """Every rare scene the expert meets on ``cfg``'s routes (``compare``'s routes), in route order."""
    _check_world(world_cfg)
    jobs = [(i, world_cfg, route_seed(cfg.seed, i, cfg.split), cfg.max_time_s) for i in range(cfg.episodes)]
    return [s for specs in run_jobs(_scan_job, jobs, cfg.workers, progress, "scenes") for s in specs]


def _pass_rates(outcomes: list[dict]) -> dict:
    t = scenario_table(outcomes)
    return {g: {"passed": int(t[f"{g}_passed"].sum()), "n": int(t[f"{g}_n"].sum()),
                "rate": float(t[f"{g}_passed"].sum() / t[f"{g}_n"].sum()) if t[f"{g}_n"].sum() else None}
            for g in GROUPS}


def scenario_compare(models: list[Path], names: list[str], world_cfg: WorldConfig, cfg: EvalConfig,
                     against: dict[str, str] | None = None, progress: bool = True) -> dict:
    """Every ONNX model, and the expert, replays every scenario of ``cfg``'s routes. Per model: its outcomes
    and per-scene table (``scenario_table``'s layout, scenes in ``scenes``' order), pass rates with fixed
    denominators; ``stats``: ``study_stats.pool`` over the scenes (one seed: the bootstrap over scenes) with the
    paired differences of every model against the first and of ``against``'s pairs; ``discordant``: per pair,
    the scenes only the reference passed and only the model passed (McNemar's counts)."""
    spec = OnnxPolicy.load(models[0]).spec
    world_cfg = replace(world_cfg, width=spec.width, height=spec.height)
    scenes = find_scenarios(world_cfg, cfg, progress)
    jobs = [(m, world_cfg, s, cfg.actuation_delay_ticks) for m in [None, *map(str, models)] for s in scenes]
    done = run_jobs(_replay_job, jobs, cfg.workers, progress, "scenarios")
    per_driver = [done[k * len(scenes):(k + 1) * len(scenes)] for k in range(len(models) + 1)]
    result = {"lead_s": LEAD_S, "pass_after_s": PASS_AFTER_S, "slack_s": SLACK_S, "scenes": [asdict(s) for s in scenes],
              "expert": {"outcomes": per_driver[0], "pass_rate": _pass_rates(per_driver[0])}, "models": {}}
    for name, outcomes in zip(names, per_driver[1:]):
        result["models"][name] = {"outcomes": outcomes, "pass_rate": _pass_rates(outcomes),
                                  "per_scene": {k: v.tolist() for k, v in scenario_table(outcomes).items()}}
    pairs = [(n, names[0]) for n in names[1:]]
    pairs += [p for p in (against or {}).items() if p not in pairs]
    if scenes:
        tables = {cfg.seed: {n: scenario_table(m["outcomes"]) for n, m in result["models"].items()}}
        result["stats"] = asdict(pool(tables, pairs, "scenario", rng_seed=cfg.seed))
        result["discordant"] = [{"config": c, "reference": r, **discordant(result["models"][r]["outcomes"],
                                                                           result["models"][c]["outcomes"])}
                                for c, r in pairs]
    return result


def discordant(reference: list[dict], other: list[dict]) -> dict:
    """Scenes only ``reference`` passed and scenes only ``other`` passed (the same scenes, in order)."""
    a, b = (np.array([o["passed"] for o in x], bool) for x in (reference, other))
    return {"reference_only": int((a & ~b).sum()), "config_only": int((~a & b).sum()), "scenes": int(len(a))}


def markdown(result: dict) -> str:
    """Pass rates with fixed denominators (every model met every scene), the expert first, then the paired
    differences in the rare-scene pass rate with their bootstrap interval over scenes."""
    rows = [("expert (replays the common state)", result["expert"])] + list(result["models"].items())
    lines = [f"Scenario level: {len(result['scenes'])} scenes, each replayed by every model from the expert's state "
             f"{result['lead_s']:g} s before its onset (same scenes, same denominators).", "",
             "| model | " + " | ".join(GROUPS) + " |", "|" + "---|" * (len(GROUPS) + 1)]
    for name, m in rows:
        cells = [f"{fmt_pct(m['pass_rate'][g]['rate'])} ({m['pass_rate'][g]['passed']}/{m['pass_rate'][g]['n']})"
                 for g in GROUPS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    rare = {(d["config"], d["reference"]): d["estimate"] for d in result.get("stats", {}).get("differences", [])
            if d["stat"] == RARE}
    for disc in result.get("discordant", []):
        c, r = disc["config"], disc["reference"]
        e = rare[c, r]
        ci = "n/a" if e["bootstrap_ci95"] is None else "[{}, {}]".format(*map(fmt_signed, e["bootstrap_ci95"]))
        lines.append(f"\n{c} - {r}: rare-scene pass rate {fmt_signed(e['value'])}, paired bootstrap 95 % CI over "
                     f"scenes {ci}; passed by one only: {disc['config_only']} {c}, {disc['reference_only']} {r}")
    return "\n".join(lines)
