"""``metasteer drive --world embedded``: the embedded bridge and the steering node as two ROS 2
processes on a private loopback domain, one episode, its metrics (and the node's infraction log)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from metasteer.nodes.launching import ros_env, start, stop


def drive(model: str | Path, seed: int = 0, max_time_s: float = 60.0, abnormal_rate: float = 0.1, interface: str = "auto",
          width: int = 800, height: int = 600, log_dir: Path | None = None, domain_id: int | None = None) -> dict:
    """One episode through ROS 2: the embedded bridge and the steering node (driving ``model``) as two
    processes on a private loopback domain (``domain_id``, random if None). Returns the world's episode
    metrics, the node's infraction summary per model id, and ``logs``, the directory of both logs."""
    env = ros_env(domain_id)
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="metasteer-drive-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    infractions = log_dir / "infractions.jsonl"
    node = start("metasteer.nodes.steering_node", {"model_path": Path(model).resolve(), "infraction_log": infractions,
                                                    "interface": interface, "use_sim_time": True}, env,
                 stdout=open(log_dir / "steering_node.log", "w"), stderr=subprocess.STDOUT)
    try:
        bridge = start("simulator.embedded_bridge", {"seed": seed, "max_time_s": max_time_s, "abnormal_rate": abnormal_rate,
                                                          "interface": interface, "width": width, "height": height,
                                                          "result_path": log_dir / "episode.json"},
                       env, stdout=subprocess.PIPE, stderr=open(log_dir / "bridge.log", "w"), text=True)
        out, _ = bridge.communicate(timeout=max_time_s * 20 + 120)
        if bridge.returncode != 0 or not (log_dir / "episode.json").exists():
            raise RuntimeError(f"embedded bridge failed (exit {bridge.returncode}); see {log_dir / 'bridge.log'}")
    finally:
        stop(node)
    episode = json.loads((log_dir / "episode.json").read_text())
    lines = [json.loads(line) for line in infractions.read_text().splitlines() if line.strip()] if infractions.exists() else []
    summary = next((r["per_model"] for r in lines if r.get("event") == "summary"), {})
    return {**episode, "node_infraction_summary": summary, "logs": str(log_dir)}
