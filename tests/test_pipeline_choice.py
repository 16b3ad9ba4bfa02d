"""The pipeline's decisions on their own, by hand: whether DAgger is kept (``train_base``), which finalists
ship (``choose``) and which targets are met (``targets``). The searches' trial logs and trial results are written here; the re-drive on fresh
routes is a given table (driving is tested in test_compare and end to end in test_pipeline)."""

import json
from pathlib import Path

import pytest

import training.compare as comparing
from simulator.factory import WorldConfig
from training.evaluate import EvalConfig
from training.pipeline import choose, targets


def _rare(passed: int, n: int) -> dict:
    return {"rare": {"passed": passed, "n": n, "rate": passed / n}}


def _search(out: Path, space: str, trials: dict[int, tuple[float, tuple[int, int]]]) -> dict:
    """A finished search: trial -> (objective y, rare scenes passed / met on the trial's routes)."""
    root = out / "tune" / space / "bo"
    lines = []
    for k, (y, (passed, n)) in trials.items():
        run = root / "trials" / f"trial-{k:03d}"
        run.mkdir(parents=True)
        params = {"tau": 0.0} if space == "learned" and k == 0 else {"trial": k}
        (run / "trial.json").write_text(json.dumps({"pass_rate": _rare(passed, n), "params": params}))
        lines.append(json.dumps({"event": "finished", "trial": k, "method": "fixed" if k == 0 else "sobol", "params": params, "y": y}))
    (root / "trials.jsonl").write_text("\n".join(lines) + "\n")
    return {"bo": {"log": str(root / "trials.jsonl")}}


@pytest.fixture
def searches(tmp_path):
    # oversample: trial 1 is the search's best (9/10) but passes 2/20 on fresh routes; trial 2 pools higher
    # learned: trial 0 is MSE (never a learned finalist though its y is the highest); trial 1 pools higher than 2
    return {"oversample": _search(tmp_path, "oversample", {0: (0.5, (5, 10)), 1: (0.9, (9, 10)), 2: (0.7, (7, 10))}),
            "learned": _search(tmp_path, "learned", {0: (0.95, (9, 10)), 1: (0.4, (4, 10)), 2: (0.6, (6, 10))})}


def _fresh(monkeypatch, learned_diff: float | None) -> list:
    """``compare`` on the fresh routes answers this table; the call is recorded."""
    fresh = {"mse": (10, 20), "oversample-1": (2, 20), "oversample-2": (14, 20), "learned-2": (10, 20), "learned-1": (15, 20)}
    calls = []

    def judged(models, world, cfg, out_dir, names, progress, reuse):
        calls.append(names)
        return {"models": {name: {"pass_rate": _rare(*fresh[name]),
                                  **({} if name == "mse" else {"paired_diff": {"pass_rate_rare": {"diff": learned_diff, "ci95": None}}})}
                           for name in names}}

    monkeypatch.setattr(comparing, "compare", judged)
    return calls


def test_choose_pools_trial_and_fresh_routes_and_keeps_the_learned_loss_only_when_it_beats_mse(tmp_path, searches, monkeypatch):
    calls = _fresh(monkeypatch, learned_diff=0.25)
    runs, chosen = choose(tmp_path, searches, WorldConfig(), EvalConfig(episodes=20), finalists=2, progress=False)
    assert calls == [["mse", "oversample-1", "oversample-2", "learned-2", "learned-1"]]  # the best 2 per search by y, MSE apart
    assert chosen["best"] == {"oversample": "oversample-2", "learned": "learned-1"}  # 21/30 over 11/30; 19/30 over 16/30
    assert chosen["finalists"]["oversample-1"]["pooled"] == pytest.approx(11 / 30)
    trials = tmp_path / "tune"
    assert runs == {"mse": trials / "learned" / "bo" / "trials" / "trial-000", "oversample": trials / "oversample" / "bo" / "trials" / "trial-002",
                    "learned": trials / "learned" / "bo" / "trials" / "trial-001"}
    assert chosen["kept"] and chosen["learned_trial"] == 1 and chosen["params"]["learned"] == {"trial": 1}


@pytest.mark.parametrize("diff", [0.0, -0.1, None])
def test_choose_ships_mse_as_the_learned_model_unless_it_passed_more_rare_scenes_paired(tmp_path, searches, monkeypatch, diff):
    _fresh(monkeypatch, learned_diff=diff)
    runs, chosen = choose(tmp_path, searches, WorldConfig(), EvalConfig(episodes=20), finalists=2, progress=False)
    assert not chosen["kept"] and runs["learned"] == runs["mse"] == tmp_path / "tune" / "learned" / "bo" / "trials" / "trial-000"
    assert chosen["best"]["learned"] == "learned-1"  # the best finalist is still reported


def _report(fail: dict, nipkm: dict, clear: float = 0.96, bend: float = 0.8, obstacle: float = 0.79) -> dict:
    models = {name: {"failure_rate": fail[name], "normal_infractions_per_km": nipkm[name],
                     "pass_rate": {"sharp_bend": {"rate": bend}, "obstacle": {"rate": obstacle}, "pedestrian": {"rate": 0.5}}}
              for name in ("mse", "oversample", "learned")}
    return {"compare": {"rare": {"models": models}, "clear": {"models": {"mse": {"route_completion": {"mean": clear}}}}},
            "choice": {"kept": True}}


def test_targets_by_hand():
    t = targets(_report({"mse": 0.4, "oversample": 0.3, "learned": 0.2}, {"mse": 1.0, "oversample": 1.0, "learned": 1.0}))
    assert t["clear_route_completion_met"] and not t["bends_obstacles_met"]  # obstacles 0.79 < 0.8
    assert t["learned_half_mse_failures_met"] and t["learned_not_worse_than_oversample_met"] and t["learned_normal_road_met"]
    t = targets(_report({"mse": 0.4, "oversample": 0.2, "learned": 0.25}, {"mse": 1.0, "oversample": 1.0, "learned": 1.5}, clear=0.9, obstacle=0.8))
    assert not t["clear_route_completion_met"] and t["bends_obstacles_met"]
    assert not (t["learned_half_mse_failures_met"] or t["learned_not_worse_than_oversample_met"] or t["learned_normal_road_met"])


@pytest.mark.parametrize("unknown", ["mse", "learned"])
def test_targets_are_not_met_when_a_value_is_unknown(unknown):
    """No rare scene reached, or no normal road driven: the target is unknown, not met."""
    fail, nipkm = {"mse": 0.4, "oversample": 0.3, "learned": 0.1}, {"mse": 1.0, "oversample": 1.0, "learned": 0.5}
    t = targets(_report(fail | {unknown: None}, nipkm))
    assert not t["learned_half_mse_failures_met"] and not t["learned_not_worse_than_oversample_met"]
    t = targets(_report(fail, nipkm | {unknown: None}))
    assert t["learned_normal_road_met"] is False


def _base(tmp_path, monkeypatch, dagger_diff: float | None) -> tuple[dict, list]:
    """``train_base`` with its training, DAgger rounds and comparison given: the MSE run trains (recorded),
    two DAgger rounds finish in ``final``, and the paired check on tuning routes answers ``dagger_diff``."""
    import training.dagger
    import training.fit
    from training.pipeline import PipelineConfig, train_base

    trained, compared = [], []
    monkeypatch.setattr(training.fit, "train_once", lambda out, *args, **kwargs: trained.append(Path(out)))
    final = tmp_path / "dagger" / "round-2" / "run"
    monkeypatch.setattr(training.dagger, "dagger", lambda out, start, data, *args, **kwargs: {
        "final": str(final), "rounds": [{"round": 1}, {"round": 2}]})

    def check(models, world, cfg, out_dir, names, progress, reuse):
        compared.append({"models": [Path(m) for m in models], "split": cfg.split, "names": names, "abnormal_rate": world.abnormal_rate})
        return {"models": {"without": {"pass_rate": _rare(5, 10)},
                           "with": {"pass_rate": _rare(6, 10), "paired_diff": {"pass_rate_rare": {"diff": dagger_diff, "ci95": None}}}}}

    monkeypatch.setattr(comparing, "compare", check)
    n = {"steps": 10, "dagger_rounds": 2, "dagger_routes": 2, "dagger_steps": 5, "tune_episodes": 4, "max_time_s": 20.0}
    base = train_base(tmp_path, tmp_path / "train", tmp_path / "meta", WorldConfig(), PipelineConfig(), n, {}, progress=False)
    assert trained == [tmp_path / "runs" / "mse"]
    assert compared == [{"models": [tmp_path / "runs" / "mse", final], "split": "tune", "names": ["without", "with"],
                         "abnormal_rate": PipelineConfig().eval_abnormal_rate}]  # MSE without vs with DAgger, tuning routes
    return base, compared


def test_dagger_is_kept_when_it_passed_more_rare_scenes_paired_and_the_trials_start_from_it(tmp_path, monkeypatch):
    base, _ = _base(tmp_path, monkeypatch, dagger_diff=0.1)
    assert base["decision"]["kept"] and base["start"] == str(tmp_path / "dagger" / "round-2" / "run")
    assert base["data"] == [str(tmp_path / "train")] + [str(tmp_path / "dagger" / f"round-{r}" / "data") for r in (1, 2)]


@pytest.mark.parametrize("diff", [0.0, -0.1, None])
def test_dagger_is_not_kept_unless_it_passed_more_rare_scenes_paired(tmp_path, monkeypatch, diff):
    """A tie, fewer scenes passed, or no rare scene reached (unknown): the trials start from MSE on the collected data."""
    base, _ = _base(tmp_path, monkeypatch, dagger_diff=diff)
    assert base["decision"]["kept"] is False and base["decision"]["paired_diff"]["diff"] == diff
    assert base["start"] == str(tmp_path / "runs" / "mse") and base["data"] == [str(tmp_path / "train")]
