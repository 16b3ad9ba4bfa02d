"""The main job end to end (`metasteer pipeline --quick`): every stage runs for real, once."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from metasteer.policy import OnnxPolicy
from tests.conftest import METASTEER, ROOT, file_stamps
from training.pipeline import claim_start, targets


# what a resumed pipeline writes again: the killed stage's files and the report; and, today, the summaries and
# plots of finished stages, and the finished MSE run's outputs (Run finishes it again; its checkpoint shows no training)
REDONE_ON_RESUME = ("export/", "report.")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pipeline") / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run(METASTEER + ["pipeline", "--size", "quick", "--out", str(out), "--keep", str(out.parent / "keep"), "--json",
                                      "--no-progress"], env=env,
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_quick_pipeline_end_to_end(quick_run):
    out, summary = quick_run
    report = json.loads((out / "report.json").read_text())
    assert set(report["dataset"]["events"]) == {"pedestrian", "obstacle", "sharp_bend"}
    assert report["dagger"]["rounds"][0]["frames"] > 0
    # DAgger is kept exactly when its saved paired check passed more rare scenes, and the trials start where it says
    check = json.loads((out / "dagger" / "check" / "compare.json").read_text())["models"]["with"]["paired_diff"]["pass_rate_rare"]["diff"]
    kept = report["dagger_decision"]["kept"]
    assert kept == (check is not None and check > 0)
    trial = json.loads((out / "tune" / "learned" / "bo" / "trials" / "trial-001" / "request.json").read_text())
    assert trial["train"]["init_from"] == (report["dagger"]["final"] if kept else str(out / "runs" / "mse"))
    assert isinstance(trial["data"], list) == kept  # with DAgger: the collected data and every round's
    for which, routes in (("rare", 4), ("clear", 2)):
        block = report["compare"][which]
        assert len(block["routes"]) == routes
        for name in ("mse", "oversample", "learned"):
            assert block["models"][name]["route_completion"]["n"] == routes
        assert "paired_diff" in block["models"]["learned"] and "paired_diff" in block["models"]["oversample"]
    # every model met every scene of the held-out routes (scenario level), and the report links the encounter videos
    scenes = report["compare"]["rare"]["scenarios"]
    assert {len(m["outcomes"]) for m in scenes["models"].values()} == {len(scenes["scenes"])}
    md = (out / "report.md").read_text()
    assert "Scenario level" in md
    for v in report["compare"]["rare"]["videos"]:
        assert Path(v["video"]).exists() and f"(compare/rare/{Path(v['video']).name})" in md
    policies = {name: OnnxPolicy.load(out / "export" / f"{name}.onnx") for name in ("mse", "oversample", "learned")}
    for name, policy in policies.items():
        assert policy.model_id == report["exported"][name]["model_id"]
        assert "Closed loop" in (out / "export" / f"{name}.md").read_text()
    frames = np.random.default_rng(0).integers(0, 256, (8, 66, 200, 3), dtype=np.uint8)
    steer = {name: p.predict_bands(frames) for name, p in policies.items()}
    assert not np.allclose(steer["mse"], steer["oversample"])  # the baselines are different models
    # the learned model ships only when it beat MSE on the tuning routes; otherwise it is MSE itself
    assert np.allclose(steer["mse"], steer["learned"]) == (not report["choice"]["kept"])
    choice = report["choice"]
    assert choice["kept"] == ((choice["paired_diff"]["diff"] or 0) > 0)
    # the finalists (MSE and each search's best trials) are re-driven on fresh tuning routes
    assert set(choice["finalists"]) == {"mse", "oversample-0", "oversample-1", "learned-1"}
    assert report["models"]["oversample"] == choice["finalists"][choice["best"]["oversample"]]["run"]
    fresh = json.loads((out / "choice" / "compare.json").read_text())["routes"]
    searched = json.loads((out / "tune" / "learned" / "bo" / "trials" / "trial-000" / "trial.json").read_text())["routes"]
    assert len(fresh) == 2 and not set(fresh) & set(searched)
    tuning = report["tuning"]
    assert [len(tuning[s]["trials"]) for s in ("oversample", "learned")] == [2, 2]
    assert tuning["learned"]["trials"][0]["method"] == "fixed" and tuning["learned"]["trials"][0]["params"]["tau"] == 0.0
    # the targets and the printed summary come from the saved held-out comparisons
    saved = {which: json.loads((out / "compare" / which / "compare.json").read_text()) for which in ("rare", "clear")}
    assert report["targets"] == targets({"compare": saved, "choice": choice})
    assert summary["compare"] == {name: {"rare_pass_rate": saved["rare"]["models"][name]["pass_rate"]["rare"]["rate"],
                                         "clear_route_completion": saved["clear"]["models"][name]["route_completion"]["mean"]}
                                  for name in ("mse", "oversample", "learned")}
    text = (out / "report.md").read_text()
    for png in ("contact_sheet.png", "compare/rare/compare.png", "compare/rare/trajectories_mse.png", "tune/learned/convergence.png"):
        assert (out / png).exists() and png in text


@pytest.mark.slow
def test_dagger_curve_trains_each_round_as_the_trials_were_and_reuses_the_last(quick_run, tmp_path, cli_env):
    """`bench dagger-curve` on the pipeline's run: one point per DAgger round (0 = collected data only),
    each round's three models started from that round's model on that round's data; the last round is
    the trials themselves when they started there. The run was moved (as one restored from its --keep lives
    elsewhere than the paths its report and requests name, here a directory that no longer exists): the curve
    finds every trial, request and dataset inside the run it is given."""
    out, _ = quick_run
    moved = tmp_path / "moved"
    shutil.copytree(out, moved, ignore=shutil.ignore_patterns("*.mp4"))
    for f in [moved / "report.json", *moved.glob("tune/*/bo/trials/*/request.json")]:
        f.write_text(f.read_text().replace(str(out), "/gone/run"))
    res = subprocess.run(METASTEER + ["bench", "dagger-curve", "--run", str(moved), "--work", str(tmp_path / "curve"), "--episodes", "2",
                                      "--json", "--no-progress"], env=cli_env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    curve = json.loads(res.stdout.strip().splitlines()[-1])
    report = json.loads((out / "report.json").read_text())
    assert [p["round"] for p in curve["points"]] == [0, 1]
    first, last = curve["points"]
    assert all(last["events"][c] >= first["events"][c] for c in first["events"]) and sum(last["events"].values()) > sum(first["events"].values())
    finalist = {"mse": "mse"} | report["choice"]["best"]
    for name in ("mse", "oversample", "learned"):
        request = json.loads((Path(first["runs"][name]) / "request.json").read_text())
        assert request["train"]["init_from"] == str(moved / "runs" / "mse") and request["data"] == str(moved / "data" / "train")
        assert set(first["models"][name]["pass_rate"]) == {"pedestrian", "obstacle", "sharp_bend", "rare"}
        trial_run = report["choice"]["finalists"][finalist[name]]["run"]
        trial = json.loads((Path(trial_run) / "request.json").read_text())
        assert request["loss"] == trial["loss"] and request["meta"] == trial["meta"] and request["train"]["steps"] == trial["train"]["steps"]
        # the last round is the trial itself (in the moved run) exactly when the trials started from the last DAgger model
        assert (last["runs"][name] == trial_run.replace(str(out), str(moved))) == report["dagger_decision"]["kept"]
        assert Path(last["runs"][name]).is_relative_to(moved if report["dagger_decision"]["kept"] else tmp_path / "curve")
    assert Path(curve["plot"]).exists()


@pytest.mark.slow
def test_a_pipeline_killed_in_the_export_stage_resumes_without_redoing_finished_stages(quick_run, cli_env):
    """The export stage killed (its files gone), the same command again: the data, DAgger rounds, trials,
    the final choice and the held-out comparisons (the same exported bytes) are not rewritten; the report
    is the same."""
    out, _ = quick_run
    before = json.loads((out / "report.json").read_text())
    stamps = file_stamps(out)
    shutil.rmtree(out / "export")
    for name in ("report.json", "report.md"):
        (out / name).unlink()
    res = subprocess.run(METASTEER + ["pipeline", "--size", "quick", "--out", str(out), "--json", "--no-progress"], env=cli_env,
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    after = file_stamps(out)
    assert set(after) == set(stamps)
    redone = sorted(k for k in stamps if after[k] != stamps[k])
    unexpected = [k for k in redone if not k.startswith(REDONE_ON_RESUME)]
    assert not unexpected, unexpected
    assert any(k.startswith("export/") for k in redone)
    report = json.loads((out / "report.json").read_text())
    assert {k: v for k, v in report.items() if k != "timings_s"} == {k: v for k, v in before.items() if k != "timings_s"}


@pytest.mark.slow
def test_a_pipeline_whose_out_was_lost_resumes_from_its_keep_without_running_a_search_again(quick_run, tmp_path, cli_env):
    """The machine went during the choice: its --out is gone, its --keep holds the finished searches. A new --out
    makes the data, MSE and DAgger again and reads the searches (their logs byte-equal: a search run again logs
    other trial times), and ends where the first run did. A search over another start model is refused."""
    out, _ = quick_run
    keep = tmp_path / "keep"
    shutil.copytree(out.parent / "keep", keep)
    for gone in ("choice", "compare", "export", "report.json", "report.md"):
        (shutil.rmtree if (keep / gone).is_dir() else Path.unlink)(keep / gone)
    searches = sorted(p.parent.name for p in keep.glob("tune/*/start.json"))
    assert searches == sorted(p.name for p in (out / "tune").iterdir())
    assert not (keep / "tune" / "oversample" / "bo" / "trials" / "trial-000" / "checkpoint.pt").exists()  # small: no checkpoints
    fresh = tmp_path / "fresh"
    cmd = METASTEER + ["pipeline", "--size", "quick", "--out", str(fresh), "--keep", str(keep), "--json", "--no-progress"]
    res = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in searches:
        log = Path("tune") / name / "bo" / "trials.jsonl"
        assert (fresh / log).read_bytes() == (out / log).read_bytes() == (keep / log).read_bytes()
    first, again = (json.loads((d / "report.json").read_text()) for d in (out, fresh))
    assert again["tuning"] == first["tuning"] and again["choice"]["rare_pass_rate"] == first["choice"]["rare_pass_rate"]
    assert {k: m["pass_rate"] for k, m in again["compare"]["rare"]["models"].items()} == \
        {k: m["pass_rate"] for k, m in first["compare"]["rare"]["models"].items()}
    assert (keep / "report.json").read_bytes() == (fresh / "report.json").read_bytes()  # kept as it finished
    start = fresh / "tune" / "oversample" / "start.json"
    start.write_text(json.dumps({"start_sha256": "0" * 64}))  # as if kept over another start model
    with pytest.raises(ValueError, match="fine-tuned another start model"):
        claim_start(start.parent, Path(again["start"]))


@pytest.mark.slow
def test_a_studys_model_cards_are_the_tuning_seeds_with_the_pooled_claims(quick_run, tmp_path):
    from tests.test_study_targets import PER_KM, SCENES, _levels
    from training import study_targets
    from training.study_card import write_cards

    out, _ = quick_run
    levels = _levels(SCENES, PER_KM)  # 4 synthetic evaluation seeds of mse, oversample (two shares) and learned
    cards = write_cards(tmp_path / "cards", json.loads((out / "report.json").read_text()), levels, "runs/s/study.md",
                        study_targets.judge(levels))
    assert [c.name for c in cards] == ["mse.md", "oversample.md", "learned.md"]
    card = cards[2].read_text()
    assert card.startswith("# Model card: `learned.onnx`") and "the study's tuning seed" in card and "until `metasteer study`" not in card
    assert "## Across training seeds (4 evaluation seeds: 1, 2, 3, 4; `runs/s/study.md`)" in card
    assert "all rare scenes passed: 93.8% (" in card and "rare scenes: +0.438 (" in card  # learned 75/80 scenes, mse 40/80
    assert "Issue 18's targets (`runs/s/study.md` has the table): frontier met" in card and "Paired against MSE" not in cards[0].read_text()
    report = json.loads((out / "report.json").read_text())  # where the pipeline shipped MSE as learned.onnx the card says so
    assert ("this file does not hold it" in card) == report["targets"]["learned_is_mse"]
    moved = {**report, "exported": {k: {**e, "onnx": f"/gone/{k}.onnx"} for k, e in report["exported"].items()}}
    again = write_cards(tmp_path / "again", moved, levels, "runs/s/study.md", study_targets.judge(levels), export_dir=out / "export")
    assert [c.read_text() for c in again] == [c.read_text() for c in cards]  # a study resumed in a new --out finds its exports
