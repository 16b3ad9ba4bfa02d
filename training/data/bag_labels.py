"""Which field of a recorded message is the steering label, and which frame it belongs to.

Labels come from ``vehicle_control_cmd`` / ``vehicle_control_cmd_manual`` (``CarlaEgoVehicleControl``:
field ``steer``), ``vehicle_status`` (``CarlaEgoVehicleStatus``: field ``control.steer``, the CARLA
autopilot's control), this project's fallback ``sensor_msgs/Joy`` (``axes[1]``) or any message with a
``steer`` field, top level or one level down.

Pairing (a frame is labelled with the control chosen *after* it):

- a command (``after_frame = False``): the first one stamped in [t_N, t_N+1) and recorded after the
  frame; a driver answers the frame of tick N with a command stamped t_N (sim time), a command
  recorded before the frame arrived (a watchdog's brake stamped t_N) cannot be its answer, and one
  stamped t_N+1 answers the next frame (a frame left unanswered is skipped, not given the next one's).
- ``vehicle_status`` (``after_frame = True``): the first one stamped strictly after the frame, one tick
  later. In synchronous mode the ros-bridge ticks the world to t_N, then publishes the camera frame and
  ``vehicle_status`` of tick N, both stamped t_N; ``status.control`` is ``carla_actor.get_control()``,
  the control applied *during* tick N, chosen after frame N-1 (carla_ros_bridge ``bridge.py``
  ``_synchronous_mode_update``, ``ego_vehicle.py`` ``send_vehicle_msgs``). The control chosen after
  frame N is therefore in the status stamped t_{N+1}: in (t_N, t_N+1].
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from training.data.format import DatasetError

STATUS_TYPES = ("carla_msgs/msg/CarlaEgoVehicleStatus",)
_INDEX = re.compile(r"^(\w+)\[(\d+)\]$")


@dataclass(frozen=True)
class LabelSource:
    topic: str
    msgtype: str
    field: str  # dotted path to the steer value, e.g. "control.steer", "axes[1]"
    after_frame: bool  # True: the label of a frame is the first message stamped strictly after it

    def describe(self) -> dict:
        rule = ("first message stamped strictly after the frame (the next tick: vehicle_status reports the control "
                "applied during the tick that ends at its stamp)" if self.after_frame
                else "first message stamped at or after the frame, before the next frame, and recorded after it "
                     "(the command answering it)")
        return {"topic": self.topic, "type": self.msgtype, "field": self.field, "pairing": rule}


def _fields(msg: Any) -> list[str]:
    return list(getattr(msg, "__dataclass_fields__", {}))


def find_steer(msg: Any) -> str:
    """The path of the steer value in ``msg``; '' if it has none."""
    if "steer" in _fields(msg):
        return "steer"
    for name in _fields(msg):
        if "steer" in _fields(getattr(msg, name)):
            return f"{name}.steer"
    if "axes" in _fields(msg):
        return "axes[1]"  # the project's fallback control: axes = [throttle, steer, brake]
    return ""


def read_path(msg: Any, path: str) -> float:
    """The value at a dotted path with optional ``[i]`` indexes, e.g. ``control.steer``, ``axes[1]``."""
    value = msg
    for part in path.split("."):
        m = _INDEX.match(part)
        value = getattr(value, m.group(1))[int(m.group(2))] if m else getattr(value, part)
    return float(value)


def label_source(bag, topic: str, msgtype: str, first: Any, field: str = "auto") -> LabelSource:
    """The label source of ``topic`` (its first message ``first``); ``field`` 'auto' finds the steer."""
    path = find_steer(first) if field == "auto" else field
    if not path:
        raise DatasetError(f"{bag}: label topic {topic} ({msgtype}) has no steer field (fields: {_fields(first)}); "
                           f"name one with --label-field")
    if "header" not in _fields(first):
        raise DatasetError(f"{bag}: label topic {topic} ({msgtype}) has no header stamp to pair frames by")
    try:
        read_path(first, path)
    except (AttributeError, IndexError, TypeError, ValueError) as exc:
        raise DatasetError(f"{bag}: label topic {topic} ({msgtype}): field {path!r} unreadable ({exc})") from None
    return LabelSource(topic, msgtype, path, after_frame=msgtype in STATUS_TYPES)


def sibling(msg: Any, path: str, name: str) -> float:
    """``name`` next to the steer field (throttle, brake) when the message has it, else 0."""
    if path == "axes[1]":  # the fallback Joy: axes = [throttle, steer, brake]
        path = {"throttle": "axes[0]", "brake": "axes[2]"}[name]
        return read_path(msg, path) if len(msg.axes) == 3 else 0.0
    parent = path.rsplit(".", 1)[0] + "." if "." in path else ""
    try:
        return read_path(msg, parent + name)
    except (AttributeError, TypeError, ValueError):
        return 0.0
