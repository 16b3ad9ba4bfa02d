"""FAKE — stands in for a CARLA *server* + client module, which cannot run on this machine.

Labelled fake at the one boundary the project cannot reach here. It implements only the subset of
the ``carla`` 0.9.16 client API that ``simulator.carla_world`` calls, on a straight road along
+x (CARLA axes), and records what the backend asked for (settings, spawns, destroys) so tests can
check the backend's protocol: synchronous settings, sensor blueprints, event conversion, cleanup.
Never used outside tests.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from types import SimpleNamespace


@dataclass
class Vector3D:
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0


Location = Vector3D


@dataclass
class Rotation:
    pitch: float = 0.0
    yaw: float = 0.0
    roll: float = 0.0


@dataclass
class Transform:
    location: Vector3D = field(default_factory=Vector3D)
    rotation: Rotation = field(default_factory=Rotation)

    def get_forward_vector(self) -> Vector3D:
        yaw = math.radians(self.rotation.yaw)
        return Vector3D(math.cos(yaw), math.sin(yaw), 0.0)


def _record(**kw):
    return SimpleNamespace(**kw)


WeatherParameters = VehicleControl = WalkerControl = _record


@dataclass
class Settings:
    synchronous_mode: bool = False
    fixed_delta_seconds: float | None = None


class Blueprint:
    def __init__(self, id: str) -> None:
        self.id, self.attributes = id, {}

    def set_attribute(self, name: str, value: str) -> None:
        self.attributes[name] = value


_BLUEPRINTS = ["vehicle.tesla.model3", "vehicle.audi.tt", "walker.pedestrian.0001", "static.prop.constructioncone",
               "static.prop.streetbarrier", "static.prop.trafficcone01", "sensor.camera.rgb", "sensor.other.collision",
               "sensor.other.lane_invasion"]


class BlueprintLibrary:
    def find(self, id: str) -> Blueprint:
        if id not in _BLUEPRINTS:
            raise IndexError(id)
        return Blueprint(id)

    def filter(self, pattern: str) -> list[Blueprint]:
        return [Blueprint(b) for b in _BLUEPRINTS if fnmatch.fnmatch(b, pattern)]


class Actor:
    def __init__(self, world: "World", actor_id: int, type_id: str, transform: Transform, parent=None, attributes=None) -> None:
        self.world, self.id, self.type_id, self._tf, self.parent = world, actor_id, type_id, transform, parent
        self.attributes = attributes or {}
        self.bounding_box = SimpleNamespace(extent=Vector3D(2.35, 0.95, 0.75) if type_id.startswith("vehicle") else Vector3D(0.3, 0.3, 0.9))
        self.callback, self.control, self.speed = None, None, 0.0

    def get_transform(self) -> Transform:
        return self._tf

    def get_velocity(self) -> Vector3D:
        f = self._tf.get_forward_vector()
        return Vector3D(f.x * self.speed, f.y * self.speed, 0.0)

    def get_physics_control(self):
        wheels = [SimpleNamespace(position=Vector3D(x, 0, 0), max_steer_angle=70.0 if x > 0 else 0.0) for x in (145, 145, -145, -145)]
        return SimpleNamespace(wheels=wheels)

    def apply_control(self, control) -> None:
        self.control = control

    def set_autopilot(self, enabled: bool, port: int = 8000) -> None:
        self.autopilot = enabled

    def listen(self, callback) -> None:
        self.callback = callback

    def stop(self) -> None:
        self.callback = None

    def destroy(self) -> bool:
        self.world.destroyed.append(self.id)
        self.world.actors.pop(self.id, None)
        return True


class Waypoint:
    lane_width = 3.5

    def __init__(self, x: float) -> None:
        self.transform = Transform(Vector3D(x, 0.0, 0.0), Rotation())

    def next(self, distance: float) -> list["Waypoint"]:
        return [Waypoint(self.transform.location.x + distance)]


class Map:
    name = "FakeStraight"

    def get_spawn_points(self) -> list[Transform]:
        return [Transform(Vector3D(10.0 + 30.0 * i, 0.0, 0.5)) for i in range(40)]

    def get_waypoint(self, location: Vector3D, project_to_road: bool = True):
        if not project_to_road and abs(location.y) > 3.5:
            return None
        return Waypoint(location.x)


class World:
    def __init__(self) -> None:
        self.settings = Settings()
        self.applied: list[Settings] = []
        self.actors: dict[int, Actor] = {}
        self.spawned: list[Actor] = []
        self.destroyed: list[int] = []
        self.frame = 100
        self.fail_on_spawn: str | None = None
        self.pending: list[tuple[str, object]] = []

    def get_settings(self) -> Settings:
        return Settings(self.settings.synchronous_mode, self.settings.fixed_delta_seconds)

    def apply_settings(self, settings: Settings) -> int:
        self.settings = Settings(settings.synchronous_mode, settings.fixed_delta_seconds)
        self.applied.append(self.settings)
        return self.frame

    def set_weather(self, weather) -> None:
        self.weather = weather

    def get_map(self) -> Map:
        return Map()

    def get_blueprint_library(self) -> BlueprintLibrary:
        return BlueprintLibrary()

    def try_spawn_actor(self, blueprint: Blueprint, transform: Transform, attach_to=None):
        if self.fail_on_spawn == blueprint.id:
            raise RuntimeError(f"FAKE: spawn of {blueprint.id} failed")
        actor = Actor(self, 1 + len(self.spawned), blueprint.id, transform, attach_to, dict(blueprint.attributes))
        self.actors[actor.id] = actor
        self.spawned.append(actor)
        return actor

    spawn_actor = try_spawn_actor

    def tick(self, seconds: float = 10.0) -> int:
        self.frame += 1
        for actor in list(self.actors.values()):
            if actor.attributes.get("role_name") == "ego_vehicle":
                actor.speed = 8.0
                actor._tf = Transform(Vector3D(actor._tf.location.x + 0.4, actor._tf.location.y, 0.0), actor._tf.rotation)
        for actor in list(self.actors.values()):
            if actor.callback is None:
                continue
            if actor.type_id == "sensor.camera.rgb":
                w, h = int(actor.attributes["image_size_x"]), int(actor.attributes["image_size_y"])
                actor.callback(SimpleNamespace(frame=self.frame, width=w, height=h, raw_data=bytes(w * h * 4)))
            for kind, payload in self.pending:
                if kind == "collision" and actor.type_id == "sensor.other.collision":
                    actor.callback(SimpleNamespace(other_actor=payload, normal_impulse=Vector3D(300.0, 400.0, 0.0), frame=self.frame))
                if kind == "lane" and actor.type_id == "sensor.other.lane_invasion":
                    actor.callback(SimpleNamespace(crossed_lane_markings=[SimpleNamespace(type=m) for m in payload], frame=self.frame))
        self.pending.clear()
        return self.frame


class TrafficManager:
    def set_synchronous_mode(self, on: bool) -> None:
        self.synchronous = on

    def set_random_device_seed(self, seed: int) -> None:
        self.seed = seed

    def get_port(self) -> int:
        return 8000


class Client:
    world = None  # the tests read the one world the backend talks to

    def __init__(self, host: str = "127.0.0.1", port: int = 2000, worker_threads: int = 0) -> None:
        self.host, self.port = host, port
        Client.world = World()

    def set_timeout(self, seconds: float) -> None:
        self.timeout = seconds

    def get_server_version(self) -> str:
        return "0.9.16"

    def get_world(self) -> World:
        return Client.world

    def get_trafficmanager(self, port: int = 8000) -> TrafficManager:
        return TrafficManager()
