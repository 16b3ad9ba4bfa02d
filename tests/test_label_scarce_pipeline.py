"""The label-scarce comparison (issue 19) in the pipeline and the study, without training: the searches a
meta-only pipeline runs (every label-free baseline, with the learned search's budget), the finalists and the
keep rule applied to every baseline, the best baseline chosen on tuning routes only, the gap-closing ratio by
hand (and where it is undefined), and the meta set's share of the training frames."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

import training.compare as comparing
import training.pipeline as pipeline
import training.tune.tuner as tuner
from simulator.factory import WorldConfig
from training.evaluate import EvalConfig
from training.label_modes import BASELINES, FRONTIER, SEARCHES, best_baseline, names
from training.pipeline import PipelineConfig, choose, targets
from training.study import configurations, label_scarce, label_scarce_markdown, pairs
from training.study_stats import gap_ratio, pool, scenario_table

from tests.test_pipeline_choice import _rare, _search


class _Stop(Exception):
    pass


def _searches_run(tmp_path, monkeypatch, labels: str) -> tuple[list, list]:
    """``run_pipeline`` up to its choice, with collection, the base model and every search given: the searches
    it starts (name, tuning settings, trial budget) and the ``searches`` it hands ``choose``."""
    started, chose = [], []
    monkeypatch.setattr(pipeline, "collect_data", lambda out, *a, **k: (out / "train", out / "meta"))
    monkeypatch.setattr(pipeline, "DrivingDataset", lambda data: None)
    monkeypatch.setattr(pipeline, "contact_sheet", lambda *a, **k: None)
    monkeypatch.setattr(pipeline, "train_base", lambda out, *a, **k: {"dagger": None, "decision": None, "start": str(out / "runs" / "mse"),
                                                                      "data": [str(out / "train")]})
    monkeypatch.setattr(pipeline, "claim_start", lambda search, start: None)  # no start model was trained

    def tune(out, cfg, objective, **kwargs):
        started.append((Path(out).name, cfg, kwargs["budget"], kwargs["data"], kwargs["meta_data"]))
        return {}

    def choose_(out, tuned, world, cfg, finalists, progress, searches):
        chose.append((list(tuned), searches, finalists, cfg))
        raise _Stop

    monkeypatch.setattr(tuner, "tune", tune)
    monkeypatch.setattr(pipeline, "choose", choose_)
    with pytest.raises(_Stop):
        pipeline.run_pipeline(tmp_path, WorldConfig(), PipelineConfig(size="quick", labels=labels), progress=False)
    return started, chose


def test_a_meta_only_pipeline_searches_every_label_free_baseline_with_the_learned_searchs_budget(tmp_path, monkeypatch):
    started, chose = _searches_run(tmp_path / "scarce", monkeypatch, "meta-only")
    assert [s[0] for s in started] == ["oversample", "learned", *BASELINES]
    by_name = {s[0]: s for s in started}
    learned = by_name["learned"][2]
    assert (learned.space, learned.labels) == ("label-free", "meta-only") and by_name["oversample"][2].labels == "full"
    for b in BASELINES:
        name, tune_cfg, budget, data, meta = by_name[b]
        assert (budget.space, budget.labels) == (b, "meta-only")
        # the same trials, seed, steps, learning rate, start model, tuning routes and data as the learned search
        assert tune_cfg == by_name["learned"][1] and replace(budget, space="label-free") == learned
        assert (data, meta) == by_name["learned"][3:]
    tuned, searches, finalists, cfg = chose[0]
    assert tuned == list(names("meta-only"))[1:] and searches == SEARCHES["meta-only"]
    assert all(searches[b].guarded for b in BASELINES)  # the learned loss's keep rule applies to every baseline

    started, chose = _searches_run(tmp_path / "full", monkeypatch, "full")
    assert [s[0] for s in started] == ["oversample", "learned"] and names("full") == ("mse", "oversample", "learned")
    assert (started[1][2].space, started[1][2].labels) == ("learned", "full")


def test_every_baseline_gets_the_finalists_and_keep_rule_of_the_learned_loss(tmp_path, monkeypatch):
    tuned = {"oversample": _search(tmp_path, "oversample", {0: (0.5, (5, 10)), 1: (0.6, (6, 10))}),
             "learned": _search(tmp_path, "learned", {0: (0.9, (9, 10)), 1: (0.4, (4, 10)), 2: (0.6, (6, 10))})}
    # every baseline: trial 0 (its published setting, not MSE) is a finalist like any other
    tuned |= {b: _search(tmp_path, b, {0: (0.7, (7, 10)), 1: (0.3, (3, 10)), 2: (0.5, (5, 10))}) for b in BASELINES}
    fresh = {"mse": 10, "oversample-1": 12, "oversample-0": 11, "learned-2": 11, "learned-1": 9}
    fresh |= {f"{b}-{k}": 10 + (2 if (b == "keyframe" and k == 0) else 0) for b in BASELINES for k in (0, 2)}
    calls = []

    def judged(models, world, cfg, out_dir, names, progress, reuse):
        calls.append(names)
        return {"models": {n: {"pass_rate": _rare(fresh[n], 20), **({} if n == "mse" else {"paired_diff": {"pass_rate_rare": {
            "diff": (fresh[n] - fresh["mse"]) / 20, "ci95": None}}})} for n in names}}

    monkeypatch.setattr(comparing, "compare", judged)
    runs, chosen = choose(tmp_path, tuned, WorldConfig(), EvalConfig(episodes=20), 2, False, SEARCHES["meta-only"])
    assert len(calls) == 1 and all(f"{b}-0" in calls[0] and f"{b}-2" in calls[0] for b in BASELINES)  # the same fresh routes
    assert all(f"{b}-1" not in calls[0] for b in BASELINES)  # the best 2 by y, as for every search
    trials = tmp_path / "tune"
    assert runs["keyframe"] == trials / "keyframe" / "bo" / "trials" / "trial-000"  # 19/30 pooled, and beat MSE on fresh routes
    assert chosen["baselines"]["keyframe"] == {"trial": 0, "kept": True, "paired_diff": {"diff": 0.1, "ci95": None}}
    for b in BASELINES[1:]:  # a tie with MSE on the fresh routes: MSE ships in the baseline's place, as for the learned loss
        assert chosen["best"][b] == f"{b}-0" and not chosen["baselines"][b]["kept"] and runs[b] == runs["mse"]
    assert set(runs) == set(names("meta-only"))


def _report(tuning: dict[str, float], held_out_failures: dict[str, float]) -> dict:
    """A meta-only pipeline report: each baseline's chosen finalist's pooled tuning-route pass rate, and the
    held-out failure rates."""
    finalists = {f"{b}-1": {"pooled": p} for b, p in tuning.items()} | {"mse": {"pooled": 0.5}, "learned-2": {"pooled": 0.6}}
    models = {k: {"failure_rate": f, "normal_infractions_per_km": 1.0,
                  "pass_rate": {g: {"rate": 1 - f} for g in ("sharp_bend", "obstacle", "pedestrian")}} for k, f in held_out_failures.items()}
    return {"choice": {"best": {"oversample": "oversample-1", "learned": "learned-2", **{b: f"{b}-1" for b in tuning}}, "finalists": finalists,
                       "kept": True},
            "compare": {"rare": {"models": models}, "clear": {"models": {"mse": {"route_completion": {"mean": 1.0}}}}}}


def test_the_best_baseline_is_chosen_on_tuning_routes_never_on_held_out_routes():
    # tuning: steer-bins best; held out: keyframe fails least, steer-bins most
    tuning = {"keyframe": 0.55, "failure-proximity": 0.6, "loss-emphasis": 0.5, "steer-bins": 0.7}
    held = {"mse": 0.4, "oversample": 0.3, "learned": 0.35, "keyframe": 0.1, "failure-proximity": 0.2, "loss-emphasis": 0.3, "steer-bins": 0.5}
    r = _report(tuning, held)
    assert best_baseline(r) == "steer-bins"
    t = targets(r)
    assert t["best_baseline"] == "steer-bins" and t["learned_not_worse_than_best_baseline_met"]  # 0.35 <= 0.5
    assert best_baseline(_report(tuning | {"keyframe": 0.8}, held)) == "keyframe"
    assert "best_baseline" not in targets(_report({}, {k: held[k] for k in ("mse", "oversample", "learned")}))  # full labels


def test_a_meta_only_study_retrains_every_baselines_chosen_trial_and_pairs_learned_with_each(tmp_path):
    root = tmp_path / "tuning"
    requests = {("learned", 0): "mse", ("learned", 2): "label-free-weighted", ("oversample", 1): "mse",
                **{(b, 1): b for b in BASELINES}}
    for (name, trial), loss in requests.items():
        d = root / "tune" / name / "bo" / "trials" / f"trial-{trial:03d}"
        d.mkdir(parents=True)
        share = 0.3 if name == "oversample" else 0.0
        (d / "request.json").write_text(json.dumps({"loss": {"loss": loss}, "meta": {}, "train": {"rare_fraction": share, "labels": "meta-only"}}))
    r = _report({"keyframe": 0.55, "failure-proximity": 0.6, "loss-emphasis": 0.5, "steer-bins": 0.7}, {})
    r["choice"]["learned_trial"] = 2
    r["models"] = {"oversample": str(root / "tune" / "oversample" / "bo" / "trials" / "trial-001")}
    (root / "report.json").write_text(json.dumps(r))
    configs = configurations(root, FRONTIER["meta-only"])
    assert list(configs) == ["mse", "oversample", "learned", *BASELINES]  # no frontier shares: the tuned share is the reference
    assert all(configs[b]["loss"]["loss"] == b for b in BASELINES) and configs["learned"]["loss"]["loss"] == "label-free-weighted"
    assert all(("learned", b) in pairs(list(configs)) for b in BASELINES)
    scenes = scenario_table([{"category": "obstacle", "passed": True}, {"category": "pedestrian", "passed": False}])
    tables = {"scenario": {1: {k: scenes for k in configs}, 2: {k: scenes for k in configs}}}
    scarce = label_scarce(r, tables, "meta-only")
    assert scarce["best_baseline"] == "steer-bins" and scarce["tuning_scores"]["steer-bins"] == 0.7
    assert scarce["gap_ratio"]["scenario"].undefined  # oversample - mse is 0 here: no ratio
    text = label_scarce_markdown(scarce, {"scenario": pool(tables["scenario"], pairs(list(configs)), "scenario", samples=100)})
    assert "**steer-bins**" in text and "learned - steer-bins" in text and "undefined" in text


def _scenes(passed: list[int]) -> dict:
    return scenario_table([{"category": "obstacle", "passed": bool(p)} for p in passed])


def _gap_tables(over: list[list[int]], learned: list[list[int]]) -> dict:
    return {s + 1: {"mse": _scenes([0, 0, 0, 0]), "oversample": _scenes(o), "learned": _scenes(x)} for s, (o, x) in enumerate(zip(over, learned))}


def test_gap_closing_ratio_by_hand():
    # mse passes nothing, oversampling everything: every unit's gap is 1, in every resample; learned 2/4 and 1/4
    t = _gap_tables([[1, 1, 1, 1]] * 2, [[1, 1, 0, 0], [1, 0, 0, 0]])
    g = gap_ratio(t, "learned", "mse", "oversample", "scenario", samples=400)
    assert g.undefined is None and g.denominator.value == 1.0 and g.denominator.t_ci95 == [1.0, 1.0]
    assert g.value == pytest.approx(0.375)  # ((0.5 - 0) + (0.25 - 0)) / 2 over (1 + 1) / 2
    numerator = pool(t, [("learned", "mse")], "scenario", samples=400).difference("learned", "mse", "pass_rate_rare").estimate
    assert g.bootstrap_ci95 == pytest.approx(numerator.bootstrap_ci95)  # denominator 1 in every resample: the ratio's interval is the gain's
    # three seeds, gap 2/4 3/4 2/4, learned 2/4 1/4 2/4: (5/12) / (7/12)
    t = _gap_tables([[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0]], [[1, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 1]])
    g = gap_ratio(t, "learned", "mse", "oversample", "scenario", samples=400)
    assert g.undefined is None and g.value == pytest.approx(5 / 7) and g.bootstrap_ci95[0] < 5 / 7 < g.bootstrap_ci95[1]


@pytest.mark.parametrize("over", [[[0, 0, 0, 0], [0, 0, 0, 0]],  # no gap at all: 0 / 0
                                  [[1, 1, 0, 0], [1, 1, 1, 0]]])  # a gap of 2/4 and 3/4 on 2 seeds: its t interval holds 0
def test_gap_closing_ratio_is_undefined_where_the_gap_may_be_zero(over):
    g = gap_ratio(_gap_tables(over, [[1, 0, 0, 0], [1, 1, 0, 0]]), "learned", "mse", "oversample", "scenario", samples=400)
    assert g.value is None and g.bootstrap_ci95 is None and "unstable" in g.undefined
    assert g.numerator.value == pytest.approx(0.375)


def test_meta_share_sets_the_meta_sets_size(tmp_path):
    from training.data.dataset import DrivingDataset

    assert PipelineConfig(frames=200).sizes()["meta_frames"] == 1000  # unset: today's 10 %, at least 1000 frames
    assert PipelineConfig(size="demo").sizes()["meta_frames"] == 2000
    for share in (0.1, 0.02):
        cfg = PipelineConfig(frames=200, meta_share=share, train_abnormal_rate=0.3)
        n = cfg.sizes()
        assert n["meta_frames"] == round(200 * share)
        _, meta = pipeline.collect_data(tmp_path / str(share), WorldConfig(), cfg, n, progress=False)
        assert len(DrivingDataset(meta)) == round(200 * share)
    assert PipelineConfig(size="quick", meta_share=0.02).sizes()["meta_frames"] == 60  # of the preset's 3000 frames
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="meta_share"):
            PipelineConfig(meta_share=bad)
