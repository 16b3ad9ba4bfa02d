"""``metasteer bench node-soak``: the node fed 20 Hz frames for minutes, answered share and RSS growth.
The long run is a benchmark (its numbers are in the README); here its arithmetic by hand and a short
run end to end, real processes and real DDS."""

import json
import subprocess
from pathlib import Path

import pytest

from metasteer.nodes.bench_soak import growth

MODEL = Path(__file__).resolve().parents[1] / "models" / "learned.onnx"


def test_rss_growth_counts_only_samples_after_the_warm_up():
    samples = [(0.0, 100.0), (10.0, 150.0), (20.0, 150.0), (30.0, 151.0)]  # the jump to 150 MB is the warm-up
    g = growth(samples, warmup_s=10.0)
    # after warm-up: 150, 150, 151 at 10, 20, 30 s: +1 MB; slope 0.05 MB/s (by hand) = 30 MB per 10 min
    assert g == {"rss_growth_mb": 1.0, "rss_slope_mb_per_10min": pytest.approx(30.0), "samples_after_warmup": 3}
    assert growth(samples, warmup_s=30.0)["rss_growth_mb"] is None  # one sample: no growth to speak of


def test_a_short_soak_end_to_end(cli_env):
    pytest.importorskip("rclpy")
    from tests.conftest import METASTEER

    out = subprocess.run(METASTEER + ["bench", "node-soak", "--model", str(MODEL), "--minutes", "0.2", "--warmup-s", "4", "--json"],
                         env=cli_env, capture_output=True, text=True, timeout=300, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["frames"] == 240 and 0 < r["answered"] == r["frames"] - r["unanswered"]
    assert int(r["node_counters"]["answered"]) >= r["answered"]  # every command counted came from the node's answers
    assert r["samples_after_warmup"] >= 3 and all(mb > 10.0 for _, mb in r["rss_samples"])  # a real process's memory
