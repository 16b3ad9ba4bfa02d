"""Embedded bridge: the embedded world in lockstep, speaking carla-ros-bridge's topics and types.

The simulator's ROS node (the deployable runtime, ``metasteer``, never imports the simulator). Each step it
publishes /clock, the camera frame (800x600 bgra8 by default, reliable depth 10 like the bridge),
the speedometer and any collision / lane-invasion events, then waits up to ``control_timeout_s``
for a control command (as the ros-bridge's synchronous mode does) and steps the world with it.
At the end it prints the episode's metrics as one JSON line and exits.
"""

from __future__ import annotations

import json
import sys
import time

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.duration import Duration
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import Float32

from metasteer.infractions import EventType
from metasteer.nodes.interfaces import resolve
from metasteer.nodes.lifecycle import run_node
from metasteer.nodes.steering_node import STATUS_NAME
from simulator.bag_recorder import READY_TOPIC

DEFAULTS = {"role_name": "ego_vehicle", "camera": "rgb_front", "width": 800, "height": 600, "seed": 0, "abnormal_rate": 0.1,
            "max_time_s": 60.0, "control_timeout_s": 1.0, "target_speed_mps": 8.0, "interface": "auto", "result_path": "",
            "wait_for_recorder": False}  # start only once simulator.bag_recorder hears every topic


class EmbeddedBridge(Node):
    """The embedded world stepped in lockstep with the steering node, on carla-ros-bridge's topics
    (see the module docstring); writes the episode's metrics to ``result_path`` at the end."""

    def __init__(self) -> None:
        super().__init__("metasteer_embedded_bridge")
        from simulator.base import CameraSpec
        from simulator.embedded import embedded_world

        for name, value in DEFAULTS.items():
            self.declare_parameter(name, value)
        self.params = {name: self.get_parameter(name).value for name in DEFAULTS}
        base = f"/carla/{self.params['role_name']}"
        self.iface = resolve(self.params["interface"])
        camera = CameraSpec(image_size_x=self.params["width"], image_size_y=self.params["height"])
        self.world = embedded_world(self.params["abnormal_rate"], camera, target_speed_mps=self.params["target_speed_mps"], max_time_s=self.params["max_time_s"])
        self.clock_pub = self.create_publisher(Clock, "/clock", 10)
        self.image_pub = self.create_publisher(Image, f"{base}/{self.params['camera']}/image", 10)
        self.speed_pub = self.create_publisher(Float32, f"{base}/speedometer", 10)
        self.collision_pub = self.create_publisher(self.iface.collision_type, f"{base}/collision", 10)
        self.lane_pub = self.create_publisher(self.iface.lane_type, f"{base}/lane_invasion", 10)
        self.create_subscription(self.iface.control_type, f"{base}/vehicle_control_cmd", self.on_control, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 10)
        self.control = None
        self.awaited: tuple[int, int] | None = None  # the stamp of the frame whose command the episode waits for
        self.unmatched = 0
        self.node_matched = False
        self.controls_by_model: dict[str, int] = {}
        self.published: dict[str, int] = {}

    def control_pub_count(self) -> int:
        return self.count_publishers(f"/carla/{self.params['role_name']}/vehicle_control_cmd")

    def on_control(self, msg) -> None:
        """Keep the command that answers the frame just sent (the node copies its stamp); taking any other (a
        late answer to an earlier frame, a watchdog brake stamped at another time) as this step's would put
        every later command one tick behind its frame."""
        try:
            control = self.iface.read_control(msg)
        except ValueError as exc:
            self.get_logger().warning(f"ignored a control message: {exc}", throttle_duration_sec=2.0)
            return
        if (msg.header.stamp.sec, msg.header.stamp.nanosec) == self.awaited:
            self.control = control
        else:
            self.unmatched += 1

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == STATUS_NAME:
                values = {kv.key: kv.value for kv in status.values}
                self.node_matched = all(int(values.get(k, "0")) > 0 for k in ("camera_publishers", "speedometer_publishers"))

    def _send(self, pub, msg) -> None:
        pub.publish(msg)
        self.published[pub.topic_name] = self.published.get(pub.topic_name, 0) + 1

    def _topics_out(self) -> list:
        return [self.clock_pub, self.image_pub, self.speed_pub, self.collision_pub, self.lane_pub]

    def _subscribed(self) -> bool:
        """Matched both ways: our writers hold the node's readers and the node's diagnostics say its camera
        and speedometer readers hold our writers (a reader matches later than its writer does; until then
        DDS drops what we send, and a node that missed the first speeds counts that driving as standing still)."""
        recorder = not self.params["wait_for_recorder"] or self.count_subscribers(READY_TOPIC) > 0
        ours = self.image_pub.get_subscription_count() > 0 and self.speed_pub.get_subscription_count() > 0
        return ours and self.node_matched and recorder

    def _publish(self, obs) -> None:
        # stamps are simulation time, as the ros-bridge stamps them in synchronous mode; split whole
        # nanoseconds (rounding the fraction alone sent 4.9999999 s as 4.0 s: a stamp 1 s in the past)
        sec, nanosec = divmod(round(obs.time_s * 1e9), 1_000_000_000)
        stamp = Time(sec=int(sec), nanosec=int(nanosec))
        self.awaited = (stamp.sec, stamp.nanosec)
        self._send(self.clock_pub, Clock(clock=stamp))
        img = Image(height=obs.image.shape[0], width=obs.image.shape[1], encoding="bgra8", is_bigendian=0, step=obs.image.shape[1] * 4)
        img.header.stamp, img.header.frame_id = stamp, f"{self.params['role_name']}/{self.params['camera']}"
        img.data = obs.image.tobytes()
        self._send(self.image_pub, img)
        self._send(self.speed_pub, Float32(data=float(obs.speed_mps)))
        for e in obs.events:
            if e.type.is_collision:
                self._send(self.collision_pub, self.iface.make_collision(stamp, e.other_actor_id, (e.impulse_n_s, 0.0, 0.0)))
            elif e.type == EventType.LANE_INVASION:
                self._send(self.lane_pub, self.iface.make_lane(stamp, list(e.markings)))

    def run_episode(self) -> dict:
        from simulator.base import VehicleControl

        obs = self.world.reset(self.params["seed"])
        deadline = time.monotonic() + 30.0  # give the steering node time to start and be discovered
        while not (self._subscribed() and self.control_pub_count() > 0) and time.monotonic() < deadline:
            rclpy.spin_once(self, timeout_sec=0.05)
        timeouts = 0
        while not obs.done:
            self.control = None
            self._publish(obs)
            deadline = time.monotonic() + self.params["control_timeout_s"]
            while self.control is None and time.monotonic() < deadline:
                rclpy.spin_once(self, timeout_sec=0.002)
            if self.control is None:
                timeouts += 1
                control = VehicleControl(0.0, 0.0, 1.0)
            else:
                throttle, steer, brake, model_id = self.control
                self.controls_by_model[model_id] = self.controls_by_model.get(model_id, 0) + 1
                control = VehicleControl(throttle, steer, brake)
            obs = self.world.step(control)
        self._publish(obs)
        for pub in self._topics_out():  # the last frames reach every subscriber (a recorder) before the process ends
            pub.wait_for_all_acked(Duration(seconds=2.0))
        result = {"seed": self.params["seed"], **self.world.metrics.summary(), "control_timeouts": timeouts,
                  "controls_by_model": self.controls_by_model, "unmatched_controls": self.unmatched, "published": self.published}
        if self.params["result_path"]:
            with open(self.params["result_path"], "w") as fh:
                json.dump(result, fh, indent=2)
        return result


def main(argv: list[str] | None = None) -> int:
    return run_node(EmbeddedBridge, lambda node: print(json.dumps(node.run_episode(), sort_keys=True), flush=True), argv)


if __name__ == "__main__":
    sys.exit(main())
