"""Do the tests fail when their feature is removed? For each feature of issue 21's review: copy the
committed tree (``git archive HEAD``) to a temporary directory, remove the feature there with a small
patch, run the test that claims it, and report whether it failed. The shared working tree is never
touched. Not part of ``make test`` (pytest collects ``test_*.py`` only).

    nice -n 19 .venv/bin/python tests/mutations.py [--only NAME ...] [--skip-slow] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # file the patch edits
    old: str  # exact text, once in the file
    new: str
    tests: tuple[str, ...]  # pytest node ids that must fail
    slow: bool = False  # runs the quick pipeline or a study (~10 min on 2 cores)


MUTATIONS = (
    Mutation("train resume ignores the checkpoint", "training/fit.py",
             "ckpt = load(self.checkpoint_path) if resume and self.checkpoint_path.exists() else None", "ckpt = None",
             ("tests/test_train.py::test_killed_training_resumes_where_it_stopped_to_the_same_numbers",
              "tests/test_train.py::test_a_killed_online_run_resumes_where_it_stopped_to_the_same_numbers")),
    Mutation("the meta phase ignores its checkpoint (phi's optimiser, samplers)", "training/fit.py",
             "        if ckpt:\n            trainer.load_state_dict(", "        if False:\n            trainer.load_state_dict(",
             ("tests/test_train.py::test_killed_training_resumes_where_it_stopped_to_the_same_numbers[meta]",)),
    Mutation("the fit phase ignores its checkpoint (model, optimiser, samplers)", "training/fit.py",
             "        if ckpt:\n            model.load_state_dict(", "        if False:\n            model.load_state_dict(",
             ("tests/test_train.py::test_killed_training_resumes_where_it_stopped_to_the_same_numbers[fit]",
              "tests/test_train.py::test_a_killed_online_run_resumes_where_it_stopped_to_the_same_numbers")),
    Mutation("an online run's resume forgets phi's optimiser", "training/fit.py", 'phi.opt.load_state_dict(ckpt["phi_opt"])', "pass",
             ("tests/test_train.py::test_a_killed_online_run_resumes_where_it_stopped_to_the_same_numbers",)),
    Mutation("no isfinite guard on the model's steer", "training/evaluate.py", "        if not math.isfinite(steer):\n",
             "        if False:\n", ("tests/test_compare.py::test_a_model_that_outputs_nan_brakes_to_a_standstill_on_the_road",)),
    Mutation("compare reuse ignores the route settings", "training/compare.py", 'same = (held["config"] == asdict(cfg) and ', "same = (",
             ("tests/test_compare.py::test_compare_pairs_any_two_models_and_reuses_a_saved_result_only_for_the_same_models",)),
    Mutation("compare reuse ignores the world backend", "training/compare.py", 'held["world"] == world_cfg.world and ', "",
             ("tests/test_compare.py::test_compare_pairs_any_two_models_and_reuses_a_saved_result_only_for_the_same_models",)),
    Mutation("compare reuse ignores the rare-scene rate", "training/compare.py", 'held["abnormal_rate"] == world_cfg.abnormal_rate\n', "True\n",
             ("tests/test_compare.py::test_compare_pairs_any_two_models_and_reuses_a_saved_result_only_for_the_same_models",)),
    Mutation("compare reuse ignores the cruise speed", "training/compare.py",
             'held.get("target_speed_mps", DEFAULT_SPEED_MPS) == world_cfg.target_speed_mps', "True", ("tests/test_compare.py::test_compare_pairs_any_two_models_and_reuses_a_saved_result_only_for_the_same_models",)),
    Mutation("compare reuse ignores the model names", "training/compare.py", 'list(held["models"]) == names and ', "", ("tests/test_compare.py::test_compare_pairs_any_two_models_and_reuses_a_saved_result_only_for_the_same_models",)),
    Mutation("compare reuse ignores the extra pairs", "training/compare.py", 'held.get("against", {}) == against)', "True)", ("tests/test_compare.py::test_compare_pairs_any_two_models_and_reuses_a_saved_result_only_for_the_same_models",)),
    Mutation("compare reuse ignores the models' bytes", "training/compare.py",
             'all(held["models"][n].get("source_sha256") == source_sha256(m) for n, m in zip(names, models))', "True", ("tests/test_compare.py::test_compare_pairs_any_two_models_and_reuses_a_saved_result_only_for_the_same_models",)),
    Mutation("targets: an unknown value counts as met", "training/pipeline.py",
             '"learned_normal_road_met": None not in (nipkm["learned"], nipkm["mse"]) and nipkm["learned"] <= nipkm["mse"]}',
             '"learned_normal_road_met": None in (nipkm["learned"], nipkm["mse"]) or nipkm["learned"] <= nipkm["mse"]}',
             ("tests/test_pipeline_choice.py::test_targets_are_not_met_when_a_value_is_unknown",)),
    Mutation("choose keeps the learned loss without a positive paired diff", "training/pipeline.py",
             'kept = best["learned"] != "mse" and (diff["diff"] or 0.0) > 0', 'kept = best["learned"] != "mse"',
             ("tests/test_pipeline_choice.py::test_choose_ships_mse_as_the_learned_model_unless_it_passed_more_rare_scenes_paired",)),
    Mutation("choose ranks finalists by their trial routes only", "training/pipeline.py", 'key=lambda k: scores[k]["pooled"]',
             'key=lambda k: scores[k]["trial_routes"]',
             ("tests/test_pipeline_choice.py::test_choose_pools_trial_and_fresh_routes_and_keeps_the_learned_loss_only_when_it_beats_mse",)),
    Mutation("DAgger kept when its paired check is unknown", "training/pipeline.py",
             'keep = diff["diff"] is not None and diff["diff"] > 0', 'keep = diff["diff"] is None or diff["diff"] > 0', ("tests/test_pipeline_choice.py::test_dagger_is_not_kept_unless_it_passed_more_rare_scenes_paired",)),
    Mutation("DAgger kept on a tie", "training/pipeline.py",
             'keep = diff["diff"] is not None and diff["diff"] > 0', 'keep = diff["diff"] is not None and diff["diff"] >= 0', ("tests/test_pipeline_choice.py::test_dagger_is_not_kept_unless_it_passed_more_rare_scenes_paired",)),
    Mutation("kept DAgger: the trials still start from the MSE model", "training/pipeline.py",
             '            start = Path(dag["final"])\n', "            pass\n", ("tests/test_pipeline_choice.py::test_dagger_is_kept_when_it_passed_more_rare_scenes_paired_and_the_trials_start_from_it",)),
    Mutation("kept DAgger: the trials train without its rounds' data", "training/pipeline.py",
             'train_data = [data] + [out / "dagger"', 'train_data = [data] + 0 * [out / "dagger"', ("tests/test_pipeline_choice.py::test_dagger_is_kept_when_it_passed_more_rare_scenes_paired_and_the_trials_start_from_it",)),
    Mutation("a DAgger round records its finished shards again", "training/dagger.py",
             '            if not shard_paths(out, k)["marker"].exists()]', "            ]",
             ("tests/test_dagger.py::test_a_finished_round_is_not_recorded_again",)),
    Mutation("DAgger re-runs a finished round's training", "training/fit.py",
             "return json.loads(done.read_text()) if done.exists() else", "return json.loads(done.read_text()) if False else",
             ("tests/test_dagger.py::test_dagger_command_runs_rounds_and_fine_tunes_from_the_policy",)),
    Mutation("int8: linear layers quantised too", "training/quantize.py", 'op_types_to_quantize=["Conv"]', 'op_types_to_quantize=["Conv", "Gemm"]',
             ("tests/test_closed_loop.py::test_quantized_copy_keeps_the_contract_and_provenance_and_is_parity_checked",)),
    Mutation("a model card with a stale model id", "models/mse.md", "model id (SHA-256 prefix): `", "model id (SHA-256 prefix): `0",
             ("tests/test_closed_loop.py::test_shipped_models_load_have_cards_and_the_int8_copy_is_of_the_shipped_float_model",)),
    Mutation("node without a model reports no ERROR", "metasteer/nodes/steering_node.py", "DiagnosticStatus.ERROR if self.core.policy is None else",
             "DiagnosticStatus.ERROR if False else",
             ("tests/test_node_faults.py::test_a_node_started_without_a_model_brakes_every_frame_and_reports_error",)),
    Mutation("node drops the frame on an inference error", "metasteer/nodes/steering_node.py", 'cmd = self.core.brake("inference_error")', "return",
             ("tests/test_node_faults.py::test_an_inference_error_brakes_the_frame_and_is_logged",)),
    Mutation("watchdog silent before the first frame", "metasteer/steering.py",
             "if last is None or steady_s - last > self.safety.camera_timeout_s:", "if last is not None and steady_s - last > self.safety.camera_timeout_s:",
             ("tests/test_node_faults.py::test_the_watchdog_brakes_before_the_first_frame",)),
    Mutation("negative steer not clamped", "metasteer/steering.py", "max(-1.0, min(1.0, steer))", "min(1.0, steer)",
             ("tests/test_node_faults.py::test_a_negative_out_of_range_steer_is_clamped_to_full_left",)),
    Mutation("the node's inference_threads never reach its onnxruntime session", "metasteer/nodes/steering_node.py",
             ', threads=p["inference_threads"])', ")",
             ("tests/test_ros.py::test_node_latency_bench_measures_the_node_against_an_echo_of_the_same_transport",)),
    Mutation("tune forgets its finished trials on resume", "training/tune/tuner.py", "proposed, finished = self.records()",
             "proposed, finished = {}, {}", ("tests/test_tune.py::test_killed_tuner_resumes_without_rerunning_finished_trials",)),
    Mutation("a part-empty design batch stays part-empty (a worker idles)", "training/tune/tuner.py",
             "        if len(points) < n and finished:", "        if not points:",
             ("tests/test_tune.py::test_every_batch_runs_parallel_trials_when_the_initial_design_does_not_divide_into_them",)),
    Mutation("BoTorch ignores the batch's pending points", "training/tune/bo.py", ", X_pending=pending)", ")",
             ("tests/test_tune.py::test_a_pending_point_moves_the_suggestion_off_it",)),
    Mutation("dagger trains fp32 whatever --precision says", "training/cli.py", "train_cfg=TrainConfig(precision=args.precision), ", "",
             ("tests/test_dagger.py::test_dagger_command_runs_rounds_and_fine_tunes_from_the_policy",)),
    Mutation("the bridge takes any command as the step's answer", "simulator/embedded_bridge.py",
             "if (msg.header.stamp.sec, msg.header.stamp.nanosec) == self.awaited:", "if True:",
             ("tests/test_ros.py::test_the_bridge_takes_as_a_steps_command_only_the_answer_to_that_steps_frame",)),
    Mutation("bf16 forward pass hands the loss bfloat16", "training/precision.py",
             "return model(x.contiguous(memory_format=torch.channels_last)).float()", "return model(x.contiguous(memory_format=torch.channels_last))",
             ("tests/test_train.py::test_a_bf16_run_computes_its_convolutions_in_bfloat16_and_keeps_float32_weights",)),
    Mutation("workers and nodes outlive a killed run", "metasteer/nodes/launching.py",
             "_PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)", "pass",
             ("tests/test_workers.py::test_a_child_process_dies_with_the_run_that_started_it",)),
    Mutation("tune runs no Sobol baseline", "training/tune/tuner.py", "    if baseline:\n", "    if False:\n",
             ("tests/test_tune.py::test_the_sobol_baseline_runs_the_same_budget_from_the_same_first_points",)),
    Mutation("closed-loop trials drive the evaluation routes", "training/tune/objectives.py", 'workers=1, split="tune",', 'workers=1, split="eval",',
             ("tests/test_tune.py::test_the_closed_loop_objective_is_the_metric_of_its_model_on_the_tuning_routes",)),
    Mutation("ranged options not checked where parsed", "training/config.py",
             'kind = bounded(tp, *f.metadata["range"]) if "range" in f.metadata else tp', "kind = tp",
             ("tests/test_cli_options.py::test_the_reported_cases",)),
    Mutation("a model path's file kind not checked", "training/cli.py", 'if (path.is_file() and path.suffix == ".onnx") or _is_run(path):', "if True:",
             ("tests/test_cli_options.py::test_every_path_option_names_a_wrong_kind_of_file", "tests/test_cli_options.py::test_the_reported_cases")),
    Mutation("pipeline re-drives the held-out comparison on resume", "training/pipeline.py",
             'against=PAIRED,\n                   reuse=True, scenarios=True, videos=VIDEOS)',
             'against=PAIRED,\n                   reuse=False, scenarios=True, videos=VIDEOS)',
             ("tests/test_pipeline.py::test_a_pipeline_killed_in_the_export_stage_resumes_without_redoing_finished_stages",), slow=True),
    Mutation("a resumed study runs its finished seeds again", "training/study.py", "        if not done.exists():\n", "        if True:\n",
             ("tests/test_study.py::test_a_study_killed_during_seed_2_resumes_without_redoing_seed_1",), slow=True),
    Mutation("the Pareto target ignores the rare-scene lower bound", "training/study_targets.py", "rare[0] >= RARE_LOWER_BOUND", "True",
             ("tests/test_study_targets.py::test_each_target_misses_when_its_own_condition_breaks",)),
    Mutation("the frontier target reads one normal-road measure", "training/study_targets.py",
             "for lv in NORMAL_LEVELS if beaten", "for lv in NORMAL_LEVELS[:1] if beaten", ("tests/test_study_targets.py::test_each_target_misses_when_its_own_condition_breaks",)),
    Mutation("a file of other bytes given as a checkpoint raises the unpickler's error", "training/checkpoint.py",
             "except (RuntimeError, EOFError, KeyError, ValueError, IndexError) as exc:", "except (RuntimeError, EOFError) as exc:",
             ("tests/test_train.py::test_a_file_that_is_no_checkpoint_is_named_as_such",)),
    Mutation("a manifest's totals not checked against its shards", "training/data/dataset.py",
             "if key in manifest and manifest[key] != total:", "if False:", ("tests/test_dataset.py::test_a_manifest_of_the_wrong_shape_is_named",)),
    Mutation("meta-only picks the kept snapshot on the training logs' categories", "training/data/label_view.py",
             'return ("val", val) if self.labels == "full" else ("meta", meta)', 'return ("val", val)',
             ("tests/test_label_scarce.py::test_meta_only_training_is_bit_identical_when_the_training_sets_labels_are_shuffled",)),
    Mutation("a DAgger round records no infraction onsets", "training/data/collect.py",
             'onsets_s = [t for t, hit in zip(steps["time_s"], steps["infraction"]) if hit]', "onsets_s = []",
             ("tests/test_dagger.py::test_states_the_policy_visits_are_labelled_with_the_expert_steering",)),
    Mutation("a study in meta-only mode trains a further loss that reads training labels", "training/study.py",
             "if labels != \"full\" and (bad := [n for n in extra if n not in LABEL_FREE or n in BASELINES]):", "if False:",
             ("tests/test_study.py::test_further_losses_are_retrained_as_mse_was_and_paired_with_learned",)),
    Mutation("meta-only training without a labelled meta set is not refused", "training/data/label_view.py",
             "        if meta_data is None:\n            raise", "        if False:\n            raise",
             ("tests/test_dagger.py::test_dagger_command_runs_rounds_and_fine_tunes_from_the_policy",)),
    Mutation("metasteer dagger drops its label mode", "training/cli.py", "TrainConfig(precision=args.precision, labels=args.labels)",
             "TrainConfig(precision=args.precision)", ("tests/test_dagger.py::test_dagger_command_runs_rounds_and_fine_tunes_from_the_policy",)),
    Mutation("bench architecture pools a seed given twice", "training/bench/architecture.py", "    if len(set(seeds)) < len(seeds):", "    if False:",
             ("tests/test_bench_architecture.py::test_kept_seeds_are_read_not_rerun_and_other_settings_are_refused",)),
    Mutation("a pipeline's --keep is not restored", "training/pipeline.py", "    if keep:\n        restore(out, keep)\n", "",
             ("tests/test_pipeline.py::test_a_pipeline_whose_out_was_lost_resumes_from_its_keep_without_running_a_search_again",), slow=True),
    Mutation("ROS domains picked at random, not reserved", "metasteer/nodes/launching.py", "    LOCK_DIR.mkdir(exist_ok=True)\n",
             "    return random.choice(DOMAINS)\n", ("tests/test_domains.py::test_reserved_domains_are_distinct_within_and_across_live_processes",)),
    Mutation("a forked worker reuses its parent's domain", "metasteer/nodes/launching.py", "_own[os.getpid()] = reserve_domain()\n    return _own[os.getpid()]",
             "_own[0] = reserve_domain()\n    return next(iter(_own.values()))",
             ("tests/test_domains.py::test_a_forked_worker_gets_its_own_domain_and_its_parent_keeps_one",)),
)


def _copy_of_head(into: Path) -> None:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True).stdout
    with tempfile.TemporaryFile() as fh:
        fh.write(archive)
        fh.seek(0)
        with tarfile.open(fileobj=fh) as tar:
            tar.extractall(into, filter="data")


def _outcome(returncode: int, stdout: str) -> str:
    """``failed``: a test ran and failed; a setup error (a fixture, an import) is no evidence and is reported as such."""
    if returncode == 0:
        return "passed"
    if returncode == 1 and any(line.startswith("FAILED ") for line in stdout.splitlines()):
        return "failed"
    errors = [line for line in stdout.splitlines() if line.startswith("ERROR ")]
    return f"error (exit {returncode}){': ' + errors[0][:200] if errors else ''}"


def run(m: Mutation) -> dict:
    """Apply ``m`` in a fresh copy of HEAD, run its tests there; ``killed``: every test failed."""
    with tempfile.TemporaryDirectory(prefix="metasteer-mutation-") as tmp:
        copy = Path(tmp)
        _copy_of_head(copy)
        target = copy / m.path
        text = target.read_text()
        if text.count(m.old) != 1:
            return {"mutation": m.name, "file": m.path, "applied": False, "killed": False, "tests": {}, "why": {}, "seconds": 0.0}
        target.write_text(text.replace(m.old, m.new))
        env = dict(os.environ, PYTHONPATH=str(copy))  # the copy's packages before the editable install's
        outcome, why, start = {}, {}, time.perf_counter()
        for test in m.tests:
            res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-rfE", "-p", "no:cacheprovider", test], cwd=copy, env=env,
                                 capture_output=True, text=True)
            outcome[test] = _outcome(res.returncode, res.stdout)
            why[test] = next((line[:300] for line in res.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))), "")
        return {"mutation": m.name, "file": m.path, "applied": True, "killed": all(v == "failed" for v in outcome.values()),
                "tests": outcome, "why": why, "seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=None, help="mutation names (substrings) to run")
    parser.add_argument("--skip-slow", action="store_true", help="leave out the slow mutations (the quick pipeline, a study)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object instead of the table")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if (args.only is None or any(o in m.name for o in args.only)) and not (args.skip_slow and m.slow)]
    rows = []
    for m in chosen:
        rows.append(run(m))
        r = rows[-1]
        print(f"{'KILLED' if r['killed'] else 'SURVIVED' if r['applied'] else 'NOT APPLIED'}: {m.name} ({r['seconds']} s)", file=sys.stderr, flush=True)
    if args.json:  # the JSON alone: a file it is redirected to parses
        print(json.dumps({"mutations": rows}, sort_keys=True))
    else:
        print("| feature removed | file | test(s) | result |\n|---|---|---|---|")
        for r in rows:
            tests = "<br>".join(f"`{t.split('::')[-1]}`: {v}" for t, v in r["tests"].items()) or "-"
            verdict = "fails (caught)" if r["killed"] else "patch did not apply" if not r["applied"] else "**passes (not caught)**"
            print(f"| {r['mutation']} | `{r['file']}` | {tests} | {verdict} |")
    return 0 if all(r["killed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
