"""The transport baseline of ``bench node-latency``: a node that answers every camera frame at once
with a tiny stamped message (``sensor_msgs/Joy``, the frame's header copied), over the same
transport and camera QoS as the steering node, so the time a frame spends in DDS alone is measured
in the same run as the steering node."""

from __future__ import annotations

import sys

from rclpy.node import Node
from sensor_msgs.msg import Image, Joy

from metasteer.nodes.lifecycle import run_node
from metasteer.nodes.steering_node import CAMERA_QOS


class EchoNode(Node):
    """Parameters: ``camera_topic`` (sensor_msgs/Image in), ``reply_topic`` (sensor_msgs/Joy out)."""

    def __init__(self) -> None:
        super().__init__("metasteer_echo")
        camera = self.declare_parameter("camera_topic", "/metasteer_echo/image").value
        reply = self.declare_parameter("reply_topic", "/metasteer_echo/reply").value
        self.reply_pub = self.create_publisher(Joy, reply, 10)
        self.create_subscription(Image, camera, lambda msg: self.reply_pub.publish(Joy(header=msg.header)), CAMERA_QOS)


def main(argv: list[str] | None = None) -> int:
    return run_node(EchoNode, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
