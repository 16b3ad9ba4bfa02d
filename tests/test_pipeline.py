"""The main job end to end (`metasteer pipeline --quick`): every stage runs for real, once."""

import json
import subprocess

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
    for name in ("mse", "learned"):
        cl = report["closed_loop"][name]
        assert cl["time_without_infractions_s"]["n"] == 4 and cl["time_without_infractions_s"]["ci95"] is not None
        assert OnnxPolicy.load(out / "export" / f"{name}.onnx").model_id == report["exported"][name]["model_id"]
        assert "Closed loop" in (out / "export" / f"{name}.md").read_text()
    assert report["tuning"]["trials"] == 2
    assert summary["time_without_infractions_ratio"] == pytest.approx(report["time_without_infractions_ratio"])
    text = (out / "report.md").read_text()
    for png in ("contact_sheet.png", "comparison.png", "closed_loop/mse/trajectories.png", "tune/convergence.png"):
        assert (out / png).exists() and png in text
