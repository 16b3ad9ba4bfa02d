"""The message definitions a bag is written and read with when it carries none: ROS 2 Jazzy's standard
types (rosbags' store) plus carla-ros-bridge's ``carla_msgs`` as this project defines them
(``ros2_ws/src/carla_msgs/msg``). No rclpy: the recorder node and ``training``'s ingest share it."""

from __future__ import annotations

from pathlib import Path

MSG_DIR = Path(__file__).resolve().parents[1] / "ros2_ws" / "src" / "carla_msgs" / "msg"


def default_typestore():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    for path in sorted(MSG_DIR.glob("*.msg")):
        store.register(get_types_from_msg(path.read_text(), f"carla_msgs/msg/{path.stem}"))
    return store
