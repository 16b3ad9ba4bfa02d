"""Message types of the control and infraction topics: carla_msgs, or a documented fallback.

``carla_msgs`` (CarlaEgoVehicleControl, CarlaCollisionEvent, CarlaLaneInvasionEvent) comes with a
user's carla-ros-bridge workspace; it is not on PyPI. Without it (``interface: fallback``, or
``auto`` when it cannot be imported) the node speaks standard types:

- control: ``sensor_msgs/Joy``, ``axes = [throttle, steer, brake]``, ``header.frame_id`` = model id;
- collision / lane invasion: ``std_msgs/String`` holding JSON with carla_msgs' field names
  (``{"other_actor_id": int, "normal_impulse": [x, y, z]}``, ``{"crossed_lane_markings": [int]}``).

With carla_msgs, the model id travels in ``header.frame_id`` of each control message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

INTERFACES = ("auto", "carla_msgs", "fallback")


@dataclass
class Interface:
    name: str
    control_type: Any
    collision_type: Any
    lane_type: Any
    make_control: Callable[[Any, float, float, float, str], Any]  # (stamp, throttle, steer, brake, model_id) -> msg
    read_control: Callable[[Any], tuple[float, float, float, str]]
    make_collision: Callable[[Any, int, tuple[float, float, float]], Any]
    read_collision: Callable[[Any], tuple[int, tuple[float, float, float]]]
    make_lane: Callable[[Any, list[int]], Any]
    read_lane: Callable[[Any], list[int]]


def _carla() -> Interface:
    from carla_msgs.msg import CarlaCollisionEvent, CarlaEgoVehicleControl, CarlaLaneInvasionEvent

    def make_control(stamp, throttle, steer, brake, model_id):
        m = CarlaEgoVehicleControl(throttle=throttle, steer=steer, brake=brake)
        m.header.stamp, m.header.frame_id = stamp, model_id
        return m

    def make_collision(stamp, other, impulse):
        m = CarlaCollisionEvent(other_actor_id=int(other))
        m.header.stamp = stamp
        m.normal_impulse.x, m.normal_impulse.y, m.normal_impulse.z = map(float, impulse)
        return m

    def make_lane(stamp, markings):
        m = CarlaLaneInvasionEvent(crossed_lane_markings=[int(x) for x in markings])
        m.header.stamp = stamp
        return m

    return Interface("carla_msgs", CarlaEgoVehicleControl, CarlaCollisionEvent, CarlaLaneInvasionEvent, make_control,
                     lambda m: (m.throttle, m.steer, m.brake, m.header.frame_id), make_collision,
                     lambda m: (m.other_actor_id, (m.normal_impulse.x, m.normal_impulse.y, m.normal_impulse.z)),
                     make_lane, lambda m: list(m.crossed_lane_markings))


def _fallback() -> Interface:
    from sensor_msgs.msg import Joy
    from std_msgs.msg import String

    def make_control(stamp, throttle, steer, brake, model_id):
        m = Joy(axes=[float(throttle), float(steer), float(brake)])
        m.header.stamp, m.header.frame_id = stamp, model_id
        return m

    def read_control(m):
        if len(m.axes) != 3:
            raise ValueError(f"fallback control needs axes [throttle, steer, brake], got {len(m.axes)} values")
        return m.axes[0], m.axes[1], m.axes[2], m.header.frame_id

    def read_collision(m):
        d = json.loads(m.data)
        return int(d["other_actor_id"]), tuple(float(v) for v in d["normal_impulse"])

    return Interface("fallback", Joy, String, String, make_control, read_control,
                     lambda stamp, other, imp: String(data=json.dumps({"other_actor_id": int(other), "normal_impulse": list(map(float, imp))})),
                     read_collision,
                     lambda stamp, marks: String(data=json.dumps({"crossed_lane_markings": [int(x) for x in marks]})),
                     lambda m: [int(x) for x in json.loads(m.data)["crossed_lane_markings"]])


def resolve(name: str) -> Interface:
    if name not in INTERFACES:
        raise ValueError(f"interface must be one of {INTERFACES}, got {name!r}")
    if name in ("auto", "carla_msgs"):
        try:
            return _carla()
        except ImportError:
            if name == "carla_msgs":
                raise ImportError("interface 'carla_msgs' asked for, but carla_msgs is not importable: source your ros-bridge workspace") from None
    return _fallback()
