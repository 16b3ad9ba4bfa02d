"""One way every metasteer process runs a node: init, work, and a clean shutdown on Ctrl-C or an
external shutdown (the pattern of ROS 2's demo_nodes_py, written once)."""

from __future__ import annotations

import sys
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def run_node(make: Callable[[], Node], work: Callable[[Node], None] = rclpy.spin, argv: list[str] | None = None) -> int:
    """``make()`` the node after ``rclpy.init``, run ``work(node)`` (default: spin until shut down),
    then ``node.close()`` if it has one, destroy it and shut rclpy down."""
    rclpy.init(args=argv if argv is not None else sys.argv)
    node = make()
    try:
        work(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if hasattr(node, "close"):
            node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
