"""Bag recorder: a drive's topics -> a rosbag2 MCAP, as ``ros2 bag record --use-sim-time`` would write it.

Subscribes to the bridge's and the node's topics (``/clock``, camera, ``vehicle_control_cmd``,
speedometer, collision, lane invasion, ``/diagnostics``) and writes each message's bytes exactly as
received (``raw=True``: no re-serialisation) with rosbags, under its ROS type name and with its
message definition (``simulator.ros_types``: carla_msgs included), so Foxglove and ``ros2 bag play``
read it. Log times are simulation time: the message's own stamp (header or ``/clock``), the last
``/clock`` for a message without one (the speedometer), nudged by 1 ns where needed to keep arrival order.
Once it has discovered a publisher on every topic but ``/diagnostics`` (its readers are matched: DDS drops
what a writer sends before that) it subscribes to ``READY_TOPIC``; the bridge waits for that. The recorder ends by itself once the
bridge has left (no ``/clock`` publisher) and nothing more arrives; SIGINT also closes the bag cleanly.
"""

from __future__ import annotations

import struct
import sys
from collections import Counter
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import Empty, Float32

from metasteer.nodes.interfaces import resolve
from metasteer.nodes.lifecycle import run_node

DEFAULTS = {"bag": "", "role_name": "ego_vehicle", "camera": "rgb_front", "interface": "auto", "idle_s": 1.0}
READY_TOPIC = "/metasteer/recorder_ready"  # subscribed to once the recorder hears every topic's publisher
QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)  # a slow disk queues, never drops
CDR_LE = b"\x00\x01"  # encapsulation of a little-endian CDR message (what every ROS 2 RMW writes here)


def type_name(cls) -> str:
    """``sensor_msgs.msg.Image`` -> ``sensor_msgs/msg/Image``."""
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


def leading_stamp_ns(raw: bytes) -> int:
    """The ``builtin_interfaces/Time`` a message starts with (a Header's stamp, ``Clock.clock``)."""
    if raw[:2] != CDR_LE:
        raise ValueError(f"not little-endian CDR (encapsulation {raw[:2].hex()})")
    sec, nanosec = struct.unpack_from("<iI", raw, 4)
    return sec * 1_000_000_000 + nanosec


class BagRecorder(Node):
    def __init__(self) -> None:
        super().__init__("metasteer_bag_recorder")
        from rosbags.rosbag2 import StoragePlugin, Writer

        from simulator.ros_types import default_typestore

        for name, value in DEFAULTS.items():
            self.declare_parameter(name, value)
        p = {name: self.get_parameter(name).value for name in DEFAULTS}
        if not p["bag"]:
            raise ValueError("parameter 'bag' (the rosbag2 directory to write) is required")
        iface, base = resolve(p["interface"]), f"/carla/{p['role_name']}"
        topics = {"/clock": Clock, f"{base}/{p['camera']}/image": Image, f"{base}/vehicle_control_cmd": iface.control_type,
                  f"{base}/speedometer": Float32, f"{base}/collision": iface.collision_type,
                  f"{base}/lane_invasion": iface.lane_type, "/diagnostics": DiagnosticArray}
        store = default_typestore()
        self.idle_s = p["idle_s"]
        self.writer = Writer(Path(p["bag"]), version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.topics = list(topics)
        self.counts: Counter[str] = Counter()
        self.pending: list[tuple] = []  # (received ns, connection, stamped, bytes) taken but not yet written
        self.clock_ns = self.log_ns = 0
        self.seen_clock = False
        for topic, cls in topics.items():
            conn = self.writer.add_connection(topic, type_name(cls), typestore=store)
            stamped = cls is Clock or hasattr(cls(), "header")
            self.create_subscription(cls, topic, lambda raw, info, c=conn, s=stamped: self.pending.append(
                (info["received_timestamp"], c, s, raw)), QOS, raw=True)

    def _take_ready(self) -> None:
        """Take every message that has arrived, then write them in arrival order (the executor serves
        ready subscriptions in its own order: a command could precede the frame it answers)."""
        n = -1
        while len(self.pending) != n:
            n = len(self.pending)
            rclpy.spin_once(self, timeout_sec=0.0)
        self._write_pending()

    def _write_pending(self) -> None:
        for _, conn, stamped, raw in sorted(self.pending, key=lambda p: p[0]):
            t = leading_stamp_ns(raw) if stamped else self.clock_ns
            if conn.topic == "/clock":
                self.clock_ns, self.seen_clock = t, True
            self.log_ns = max(t, self.log_ns + 1)  # sim time, 1 ns apart where equal: arrival order survives
            self.writer.write(conn, self.log_ns, raw)
            self.counts[conn.topic] += 1
        self.pending.clear()

    def _announce_when_matched(self) -> bool:
        if all(self.count_publishers(t) > 0 for t in self.topics if t != "/diagnostics"):
            self.create_subscription(Empty, READY_TOPIC, lambda _: None, 1)
            return True
        return False

    def record(self) -> None:
        """Record until the bridge has come and gone and ``idle_s`` passes without a message."""
        quiet_since, announced = None, False
        while rclpy.ok():
            announced = announced or self._announce_when_matched()
            before = sum(self.counts.values())
            rclpy.spin_once(self, timeout_sec=0.1)
            self._take_ready()
            bridge_gone = self.seen_clock and self.count_publishers("/clock") == 0
            if not bridge_gone or sum(self.counts.values()) != before:
                quiet_since = None
                continue
            quiet_since = quiet_since or self.get_clock().now().nanoseconds  # system clock: sim time has stopped
            if self.get_clock().now().nanoseconds - quiet_since > self.idle_s * 1e9:
                return

    def close(self) -> None:
        self._write_pending()
        self.writer.close()
        self.get_logger().info(f"bag closed: {dict(self.counts)}")


def main(argv: list[str] | None = None) -> int:
    return run_node(BagRecorder, lambda node: node.record(), argv)


if __name__ == "__main__":
    sys.exit(main())
