"""ROS 2 steering node: camera frames in, vehicle control out, infractions logged, models hot-swapped.

Topics (all names are parameters; defaults are carla-ros-bridge's for ``role_name``/``camera``):
  in   /carla/<role>/<camera>/image       sensor_msgs/Image (bgra8 | bgr8 | rgb8)
  in   /carla/<role>/speedometer          std_msgs/Float32, m/s
  in   /carla/<role>/collision            carla_msgs/CarlaCollisionEvent (or fallback, see interfaces.py)
  in   /carla/<role>/lane_invasion        carla_msgs/CarlaLaneInvasionEvent (or fallback)
  out  /carla/<role>/vehicle_control_cmd  carla_msgs/CarlaEgoVehicleControl (or fallback sensor_msgs/Joy)
  out  /diagnostics                       diagnostic_msgs/DiagnosticArray, once per ``diagnostics_period_s``
Setting the ``model_path`` parameter swaps the model atomically; a file that fails validation is
rejected with the reason and the current model keeps driving.

Camera QoS: reliable, keep-last 1. Measured here (notes/ros2-from-pip.md): a best-effort
subscription lost ~40 % of 800x600 frames from the bridge's reliable publisher; reliable lost none.
Depth 1 makes the newest frame win when the node falls behind.

Clocks: commands are stamped in the node's ROS clock (simulation time under ``use_sim_time``); the
camera watchdog and the diagnostics run on the steady clock, so a silent camera brakes within
``camera_timeout_s`` (+ one ``watchdog_period_s``) of the last answered frame whatever simulation time
does (CARLA resets it on a world reload; it can jump forward or stop), and a simulator slower than real
time brakes only if its frames come more than ``camera_timeout_s`` of real time apart. A jump of the
ROS clock is logged (ROS log and infraction log) and never counted as driving time.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType, JumpThreshold, TimeJump
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Float32

from metasteer.infraction_log import InfractionLog
from metasteer.nodes.interfaces import resolve
from metasteer.nodes.lifecycle import run_node
from metasteer.preprocess import ImageError
from metasteer.steering import Command, SafetyConfig, SteeringCore

CAMERA_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1)
DEFAULTS = {
    "role_name": "ego_vehicle", "camera": "rgb_front", "camera_topic": "", "control_topic": "", "speedometer_topic": "",
    "collision_topic": "", "lane_invasion_topic": "", "model_path": "", "target_speed_mps": 8.0, "camera_timeout_s": 0.5,
    "max_frame_age_s": 0.2, "interface": "auto", "infraction_log": "", "diagnostics_period_s": 1.0,
    "watchdog_period_s": 0.1, "inference_threads": 1,
}


def _stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


STATUS_NAME = "metasteer: steering"  # its /diagnostics status (the embedded bridge reads it to know the node hears it)


def default_log_path() -> Path:
    """A directory per run under ROS's log directory (``ROS_LOG_DIR``, else ``~/.ros/log``), not the cwd."""
    root = Path(os.environ.get("ROS_LOG_DIR") or Path(os.environ.get("ROS_HOME", Path.home() / ".ros")) / "log")
    return root / "metasteer" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}" / "infractions.jsonl"


class SteeringNode(Node):
    """Camera frames in, ``vehicle_control_cmd`` out (see the module docstring for topics and types).

    A thin ROS shell: the decisions (staleness, safety, inference, hot-swap) live in ``SteeringCore``;
    collisions and lane invasions go to the ``InfractionLog``; ``/diagnostics`` once per period."""

    def __init__(self) -> None:
        super().__init__("metasteer_steering")
        for name, value in DEFAULTS.items():
            self.declare_parameter(name, value)
        p = {name: self.get_parameter(name).value for name in DEFAULTS}
        base = f"/carla/{p['role_name']}"
        self.iface = resolve(p["interface"])
        self.core = SteeringCore(SafetyConfig(p["camera_timeout_s"], p["max_frame_age_s"], p["target_speed_mps"]), threads=p["inference_threads"])
        self.log = InfractionLog(p["infraction_log"] or default_log_path())
        self._last_stamp_s: float | None = None
        self.steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._jump_handle = self.get_clock().create_jump_callback(JumpThreshold(
            min_forward=Duration(seconds=p["camera_timeout_s"]), min_backward=Duration(nanoseconds=-1), on_clock_change=False),
            post_callback=self.on_clock_jump)
        self.control_pub = self.create_publisher(self.iface.control_type, p["control_topic"] or f"{base}/vehicle_control_cmd", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.camera_sub = self.create_subscription(Image, p["camera_topic"] or f"{base}/{p['camera']}/image", self.on_image, CAMERA_QOS)
        self.speed_sub = self.create_subscription(Float32, p["speedometer_topic"] or f"{base}/speedometer", lambda m: self.core.on_speed(m.data), 10)
        self.create_subscription(self.iface.collision_type, p["collision_topic"] or f"{base}/collision", self.on_collision, 10)
        self.create_subscription(self.iface.lane_type, p["lane_invasion_topic"] or f"{base}/lane_invasion", self.on_lane_invasion, 10)
        self.create_timer(p["watchdog_period_s"], self.on_watchdog, clock=self.steady)
        self.create_timer(p["diagnostics_period_s"], self.publish_diagnostics, clock=self.steady)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        if p["model_path"]:
            self._swap(p["model_path"])
        self.get_logger().info(f"interface {self.iface.name}; camera QoS reliable/keep-last 1; model {self.core.model_id}")

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def steady_s(self) -> float:
        return self.steady.now().nanoseconds * 1e-9

    # ---- callbacks: short, the work is in SteeringCore --------------------------------------------

    def on_image(self, msg: Image) -> None:
        now = self.now_s()
        try:
            cmd = self.core.on_frame(msg.encoding, msg.height, msg.width, msg.step, msg.data, _stamp_s(msg.header.stamp), now,
                                     self.steady_s())
        except ImageError as exc:
            self.get_logger().warning(f"dropped a malformed image: {exc}", throttle_duration_sec=2.0)
            return
        except Exception as exc:  # noqa: BLE001 - no input may kill the node: brake and report
            self.get_logger().error(f"inference failed: {exc}", throttle_duration_sec=2.0)
            cmd = self.core.brake("inference_error")
        if cmd is None:
            self.get_logger().warning(
                f"dropped a stale camera frame: stamped {self.core.stats.last_stale_age_s:.2f} s before the node's clock "
                f"(max_frame_age_s {self.core.safety.max_frame_age_s}); if the publisher stamps in simulation time "
                "(CARLA, the ros-bridge, /clock), run the node with use_sim_time:=true", throttle_duration_sec=2.0)
            return
        if cmd.reason == "non_finite_output":
            self.get_logger().error("model output is not finite: braking", throttle_duration_sec=2.0)
        self.publish(cmd, msg.header.stamp)

    def on_watchdog(self) -> None:
        cmd = self.core.watchdog(self.steady_s())
        if cmd is not None:
            self.get_logger().warning("no camera frame answered within the timeout: braking", throttle_duration_sec=5.0)
            self.publish(cmd)

    def on_clock_jump(self, jump: TimeJump) -> None:
        now, delta = self.now_s(), jump.delta.nanoseconds * 1e-9
        if now - delta <= 0.0:  # the first /clock message sets simulation time: nothing jumped
            return
        self.get_logger().warning(f"ROS clock jumped {delta:+.3f} s to {now:.3f} s (a world reload resets simulation "
                                  "time); the watchdog runs on the steady clock")
        self.log.clock_jump(now, self.core.model_id, delta)

    def publish(self, cmd: Command, stamp=None) -> None:
        """Send ``cmd``; its header carries the answered frame's stamp (else the ROS clock's now) and, in
        frame_id, the model id.

        Time and distance of the infraction summary advance between answered frames' stamps: the
        clock the camera (and the world) runs on, whatever the node's own clock does. A gap that runs
        backwards or is longer than ``camera_timeout_s`` (a world reload, a jump) is not driving time."""
        if stamp is not None:
            stamp_s = _stamp_s(stamp)
            gap_s = stamp_s - self._last_stamp_s if self._last_stamp_s is not None else -1.0
            if 0.0 <= gap_s <= self.core.safety.camera_timeout_s:
                self.log.odometry(cmd.model_id, gap_s, self.core.speed_mps)
            self._last_stamp_s = stamp_s
        stamp = stamp if stamp is not None else self.get_clock().now().to_msg()
        self.control_pub.publish(self.iface.make_control(stamp, cmd.throttle, cmd.steer, cmd.brake, cmd.model_id))

    def on_collision(self, msg) -> None:
        try:
            other, impulse = self.iface.read_collision(msg)
        except (ValueError, KeyError, TypeError) as exc:
            self.get_logger().warning(f"unreadable collision event: {exc}", throttle_duration_sec=2.0)
            return
        self.log.collision(self.now_s(), self.core.model_id, other, impulse)

    def on_lane_invasion(self, msg) -> None:
        try:
            markings = self.iface.read_lane(msg)
        except (ValueError, KeyError, TypeError) as exc:
            self.get_logger().warning(f"unreadable lane-invasion event: {exc}", throttle_duration_sec=2.0)
            return
        self.log.lane_invasion(self.now_s(), self.core.model_id, markings)

    def on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            if param.name == "model_path":
                ok, reason = self._swap(str(param.value))
                return SetParametersResult(successful=ok, reason=reason)
        return SetParametersResult(successful=True)

    def _swap(self, path: str) -> tuple[bool, str]:
        ok, reason = self.core.swap_model(path)
        if ok:  # separate call sites: rclpy refuses one site logging at two severities
            self.get_logger().info(reason)
        else:
            self.get_logger().error(f"model rejected, keeping {self.core.model_id}: {reason}")
        return ok, reason

    def publish_diagnostics(self) -> None:
        values = self.core.diagnostics()
        summary = self.log.summary()
        values["infractions"] = str(sum(v["infractions"] for v in summary.values()))
        values["clock_jumps"] = str(self.log.clock_jumps)
        # publishers this node's readers have matched: DDS drops what a writer sends before that
        values["camera_publishers"] = str(self.camera_sub.get_publisher_count())
        values["speedometer_publishers"] = str(self.speed_sub.get_publisher_count())
        values["pid"] = str(os.getpid())  # which process this is, where two nodes (or a dead one's last reports) share a topic
        s = self.core.stats
        level = DiagnosticStatus.ERROR if self.core.policy is None else DiagnosticStatus.WARN if (s.malformed or s.stale or s.non_finite) else DiagnosticStatus.OK
        status = DiagnosticStatus(level=level, name=STATUS_NAME, hardware_id=values["model_id"],
                                  message={DiagnosticStatus.OK: "driving", DiagnosticStatus.WARN: "driving; frames dropped",
                                           DiagnosticStatus.ERROR: "no model"}[level],
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    def close(self) -> dict:
        summary = self.log.close()
        self.get_logger().info(f"infraction summary per model: {summary}")
        return summary


def main(argv: list[str] | None = None) -> int:
    return run_node(SteeringNode, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
