"""``metasteer drive --world embedded``: the embedded bridge and the steering node as two ROS 2
processes on a private loopback domain, one episode, its metrics (and the node's infraction log)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from metasteer.nodes.interfaces import INTERFACES
from metasteer.nodes.launching import ros_env, start, stop
from metasteer.preprocess import SOURCE_SIZE_PX


@dataclass(frozen=True)
class DriveConfig:
    seed: int = field(default=0, metadata={"range": (0, None), "help": "route seed"})
    max_time_s: float = field(default=60.0, metadata={"range": (1.0, None), "help": "episode time limit, simulated seconds"})
    abnormal_rate: float = field(default=0.1, metadata={"range": (0.0, 1.0), "help": "rare-scene rate of the route"})
    interface: str = field(default="auto", metadata={"help": "ROS message set of bridge and node", "choices": INTERFACES})
    camera_width: int = field(default=SOURCE_SIZE_PX[0], metadata={"range": (8, 4096), "help": "bridge camera frame width, px"})
    camera_height: int = field(default=SOURCE_SIZE_PX[1], metadata={"range": (8, 4096), "help": "bridge camera frame height, px"})
    record: str = field(default="", metadata={"help": "write the run to this new rosbag2 (MCAP) directory: camera, control, "
                                                      "speedometer, collision, lane invasion, /clock, /diagnostics"})


def drive(model: str | Path, cfg: DriveConfig = DriveConfig(), log_dir: Path | None = None, domain_id: int | None = None) -> dict:
    """One episode through ROS 2: the embedded bridge and the steering node (driving ``model``) as two
    processes on a private loopback domain (``domain_id``, else the process's reserved one), both on the bridge's sim
    time. Returns the world's episode metrics, the node's infraction summary per model id, and
    ``logs``, the directory of both logs. ``cfg.record``: a third process (``simulator.bag_recorder``)
    writes the run to a rosbag2 MCAP, and the bridge waits for it to subscribe before the first step."""
    env = ros_env(domain_id)
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="metasteer-drive-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    infractions = log_dir / "infractions.jsonl"
    recorder = _start_recorder(Path(cfg.record), cfg, env, log_dir) if cfg.record else None
    node = start("metasteer.nodes.steering_node", {"model_path": Path(model).resolve(), "infraction_log": infractions,
                                                    "interface": cfg.interface, "use_sim_time": True}, env,
                 stdout=open(log_dir / "steering_node.log", "w"), stderr=subprocess.STDOUT)
    try:
        bridge = start("simulator.embedded_bridge", {"seed": cfg.seed, "max_time_s": cfg.max_time_s, "abnormal_rate": cfg.abnormal_rate,
                                                          "interface": cfg.interface, "width": cfg.camera_width, "height": cfg.camera_height,
                                                          "result_path": log_dir / "episode.json",
                                                          "wait_for_recorder": recorder is not None},
                       env, stdout=subprocess.PIPE, stderr=open(log_dir / "bridge.log", "w"), text=True)
        bridge.communicate(timeout=cfg.max_time_s * 20 + 120)
        if bridge.returncode != 0 or not (log_dir / "episode.json").exists():
            raise RuntimeError(f"embedded bridge failed (exit {bridge.returncode}); see {log_dir / 'bridge.log'}")
    finally:
        stop(node)
        if recorder:  # after the node: it keeps commanding (braking) once the frames stop
            _finish_recording(recorder)
    if recorder and recorder.returncode != 0:
        raise RuntimeError(f"bag recorder failed (exit {recorder.returncode}); see {log_dir / 'recorder.log'}")
    episode = json.loads((log_dir / "episode.json").read_text())
    lines = [json.loads(line) for line in infractions.read_text().splitlines() if line.strip()] if infractions.exists() else []
    summary = next((r["per_model"] for r in lines if r.get("event") == "summary"), {})
    return {**episode, "node_infraction_summary": summary, "logs": str(log_dir), **({"bag": cfg.record} if cfg.record else {})}


def _start_recorder(bag: Path, cfg: DriveConfig, env: dict, log_dir: Path) -> subprocess.Popen:
    if bag.exists():
        raise FileExistsError(f"{bag}: exists; --record writes a new rosbag2 directory")
    return start("simulator.bag_recorder", {"bag": bag.resolve(), "interface": cfg.interface}, env,
                 stdout=open(log_dir / "recorder.log", "w"), stderr=subprocess.STDOUT)


def _finish_recording(recorder: subprocess.Popen) -> None:
    """The recorder ends by itself once the bridge has gone and its last messages are written."""
    try:
        recorder.wait(timeout=30)
    except subprocess.TimeoutExpired:
        stop(recorder)  # SIGINT closes the bag cleanly too
