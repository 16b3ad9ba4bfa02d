"""The main job end to end (`metasteer pipeline --quick`): every stage runs for real, once."""

import json
import subprocess

import numpy as np
import pytest

from metasteer.policy import OnnxPolicy
from tests.conftest import METASTEER


@pytest.mark.slow
def test_quick_pipeline_end_to_end(tmp_path, cli_env):
    out = tmp_path / "run"
    res = subprocess.run(METASTEER + ["pipeline", "--quick", "--out", str(out), "--json", "--no-progress"], env=cli_env,
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    report = json.loads((out / "report.json").read_text())
    assert set(report["dataset"]["events"]) == {"pedestrian", "obstacle", "sharp_bend"}
    assert report["dagger"]["rounds"][0]["frames"] > 0 and report["dagger_decision"]["kept"] in (True, False)
    for which, routes in (("rare", 4), ("clear", 2)):
        block = report["compare"][which]
        assert len(block["routes"]) == routes
        for name in ("mse", "oversample", "learned"):
            assert block["models"][name]["route_completion"]["n"] == routes
        assert "paired_diff" in block["models"]["learned"] and "paired_diff" in block["models"]["oversample"]
    policies = {name: OnnxPolicy.load(out / "export" / f"{name}.onnx") for name in ("mse", "oversample", "learned")}
    for name, policy in policies.items():
        assert policy.model_id == report["exported"][name]["model_id"]
        assert "Closed loop" in (out / "export" / f"{name}.md").read_text()
    frames = np.random.default_rng(0).integers(0, 256, (8, 66, 200, 3), dtype=np.uint8)
    steer = {name: p.predict_bands(frames) for name, p in policies.items()}
    assert not np.allclose(steer["mse"], steer["oversample"])  # the baselines are different models
    # the learned model ships only when it beat MSE on the tuning routes; otherwise it is MSE itself
    assert np.allclose(steer["mse"], steer["learned"]) == (not report["choice"]["kept"])
    assert report["choice"]["kept"] == ((report["choice"]["paired_diff"]["diff"] or 0) > 0)
    tuning = report["tuning"]
    assert [len(tuning[s]["trials"]) for s in ("oversample", "learned")] == [2, 2]
    assert tuning["learned"]["trials"][0]["method"] == "fixed" and tuning["learned"]["trials"][0]["params"]["tau"] == 0.0
    assert summary["targets"] == report["targets"]
    text = (out / "report.md").read_text()
    for png in ("contact_sheet.png", "compare/rare/compare.png", "compare/rare/trajectories_mse.png", "tune/learned/convergence.png"):
        assert (out / png).exists() and png in text
