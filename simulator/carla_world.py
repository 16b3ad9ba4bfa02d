"""CARLA backend of the ``World`` interface (client API 0.9.16, needs a running server).

Synchronous mode at ``FIXED_DELTA_S``; an ego with ``sensor.camera.rgb``, ``sensor.other.collision``
and ``sensor.other.lane_invasion``; rare scenes from walkers stepping out, props and parked cars in
the lane; the expert is the project's own Stanley driver on the route's waypoints (the pip wheel
has no ``agents`` package). The route is turned into a ``Road`` and the actors into ``Actor`` boxes,
so features, categories and the expert are the same code as the embedded world's.

Every actor this class spawns is destroyed on ``close`` and when ``reset`` fails half-way, and the
server's settings are restored. CARLA's frame is left-handed (y right, yaw clockwise, degrees); it
is mirrored (y -> -y, yaw -> -yaw, radians) into the right-handed route frame used here.
"""

from __future__ import annotations

import math
import queue
from dataclasses import dataclass, field
from types import ModuleType

import cv2
import numpy as np

from metasteer.control import SpeedController
from metasteer.infractions import EpisodeMetrics, EventType, InfractionEvent
from metasteer.preprocess import PreprocessSpec, crop_band
from simulator.actors import PEDESTRIAN, STATIC, VEHICLE, Actor, ScenarioConfig
from simulator.base import FIXED_DELTA_S, CameraSpec, Observation, VehicleControl, World, pilotnet_camera
from simulator.expert import Expert, ExpertParams
from simulator.features import EgoPose, describe
from simulator.road import EGO_LANE_D, LANE_WIDTH_M, STEP_M, Road
from simulator.vehicle import VehicleParams, VehicleState

START_HINT = "start the CARLA 0.9.16 server first, e.g. `./CarlaUE4.sh -RenderOffScreen -carla-rpc-port={port}`"


@dataclass(frozen=True)
class CarlaConfig:
    host: str = "127.0.0.1"
    port: int = 2000
    timeout_s: float = 10.0
    camera: CameraSpec = field(default_factory=pilotnet_camera)
    abnormal_rate: float = 0.03
    target_speed_mps: float = 8.0
    town: str | None = None  # None keeps the loaded map
    ego_blueprint: str = "vehicle.tesla.model3"
    route_length_m: float = 600.0
    npc_vehicles: int = 10
    traffic_manager_port: int = 8000
    end_on_collision: bool = True


def connect(carla: ModuleType, host: str, port: int, timeout_s: float):
    """A connected ``carla.Client``; ``ConnectionError`` naming host:port when no server answers."""
    client = carla.Client(host, port)
    client.set_timeout(timeout_s)
    try:
        client.get_server_version()
    except RuntimeError as exc:
        raise ConnectionError(f"no CARLA server answered at {host}:{port} within {timeout_s:g} s ({exc}); "
                              + START_HINT.format(port=port)) from None
    return client


def _event_type(type_id: str) -> EventType:
    if type_id.startswith("walker."):
        return EventType.COLLISION_PEDESTRIAN
    if type_id.startswith("vehicle."):
        return EventType.COLLISION_VEHICLE
    return EventType.COLLISION_STATIC


class CarlaWorld(World):
    """``World`` on a CARLA server. ``carla_module`` is for tests only (a labelled fake client)."""

    def __init__(self, config: CarlaConfig = CarlaConfig(), carla_module: ModuleType | None = None) -> None:
        if carla_module is None:
            import carla as carla_module  # noqa: PLC0415 - only this backend needs the client wheel
        self.carla, self.config, self.camera = carla_module, config, config.camera
        c = config.camera  # the server renders the full frame; the band is cut here, as the node does
        self._band = PreprocessSpec(c.crop_top, c.crop_bottom, c.width, c.height)
        self.client = connect(self.carla, config.host, config.port, config.timeout_s)
        self.world = self.client.load_world(config.town) if config.town else self.client.get_world()
        self.metrics = EpisodeMetrics()
        self._spawned: list = []
        self._original_settings = None
        self._done = True

    # ---- lifecycle -------------------------------------------------------------------------------

    def reset(self, seed: int) -> Observation:
        self._destroy_actors()
        try:
            return self._start_episode(seed)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Destroy every actor spawned here and give the server its original settings back."""
        self._destroy_actors()
        if self._original_settings is not None:
            self.world.apply_settings(self._original_settings)
            self._original_settings = None

    def _destroy_actors(self) -> None:
        for actor in reversed(self._spawned):  # sensors were spawned last: stopped and removed first
            try:
                if hasattr(actor, "stop") and actor.type_id.startswith("sensor."):
                    actor.stop()
                actor.destroy()
            except RuntimeError:
                pass  # already gone on the server
        self._spawned.clear()

    def _spawn(self, blueprint, transform, attach_to=None):
        actor = self.world.spawn_actor(blueprint, transform, attach_to=attach_to) if attach_to else self.world.try_spawn_actor(blueprint, transform)
        if actor is not None:
            self._spawned.append(actor)
        return actor

    def _start_episode(self, seed: int) -> Observation:
        carla, cfg = self.carla, self.config
        rng = np.random.default_rng(seed)
        if self._original_settings is None:
            self._original_settings = self.world.get_settings()
        settings = self.world.get_settings()
        settings.synchronous_mode = True
        settings.fixed_delta_seconds = FIXED_DELTA_S
        self.world.apply_settings(settings)
        tm = self.client.get_trafficmanager(cfg.traffic_manager_port)
        tm.set_synchronous_mode(True)
        tm.set_random_device_seed(int(seed) % (2**31))
        self.world.set_weather(carla.WeatherParameters(
            cloudiness=float(rng.uniform(0, 80)), precipitation=float(rng.choice([0.0, rng.uniform(0, 60)])),
            sun_altitude_angle=float(rng.uniform(10, 80)), fog_density=float(rng.choice([0.0, rng.uniform(0, 30)]))))

        cmap = self.world.get_map()
        library = self.world.get_blueprint_library()
        spawn_points = cmap.get_spawn_points()
        ego_bp = library.find(cfg.ego_blueprint)
        ego_bp.set_attribute("role_name", "ego_vehicle")
        order = rng.permutation(len(spawn_points))
        self.ego = None
        for i in order[:20]:
            self.ego = self._spawn(ego_bp, spawn_points[i])
            if self.ego is not None:
                break
        if self.ego is None:
            raise RuntimeError("could not spawn the ego vehicle at any of 20 spawn points (all occupied?)")

        self.road = self._route_road(cmap.get_waypoint(self.ego.get_transform().location), rng)
        self.vehicle = self._vehicle_params()
        self.expert = Expert(self.road, self.vehicle, ExpertParams())
        self.expert_speed = SpeedController(cfg.target_speed_mps, dt_s=FIXED_DELTA_S)
        self._scene_actors: dict[int, Actor] = {}
        self._walker_targets: dict[int, tuple[float, float, float]] = {}
        self._spawn_scenes(library, rng)
        self._spawn_traffic(library, spawn_points, order, tm)

        self._images: queue.Queue = queue.Queue()
        self._events: list[InfractionEvent] = []
        cam_bp = library.find("sensor.camera.rgb")
        c = cfg.camera
        for name, value in (("image_size_x", c.image_size_x), ("image_size_y", c.image_size_y), ("fov", c.fov)):
            cam_bp.set_attribute(name, str(value))
        cam_tf = carla.Transform(carla.Location(x=c.x, y=c.y, z=c.z), carla.Rotation(pitch=c.pitch))
        self.cam_sensor = self._spawn(cam_bp, cam_tf, attach_to=self.ego)
        self.cam_sensor.listen(self._images.put)
        collision = self._spawn(library.find("sensor.other.collision"), carla.Transform(), attach_to=self.ego)
        collision.listen(self._on_collision)
        lane = self._spawn(library.find("sensor.other.lane_invasion"), carla.Transform(), attach_to=self.ego)
        lane.listen(self._on_lane_invasion)

        self.metrics = EpisodeMetrics()
        self.time_s, self.ego_s = 0.0, 0.0
        self._done = False
        return self._tick(VehicleControl(brake=1.0))

    # ---- route and actors in route coordinates ----------------------------------------------------

    def _route_road(self, start_wp, rng: np.random.Generator) -> Road:
        """The route ahead as a ``Road`` whose ego lane is the waypoints' lane (centreline shifted left)."""
        wps, wp = [start_wp], start_wp
        for _ in range(int(self.config.route_length_m / STEP_M)):
            nxt = wp.next(STEP_M)
            if not nxt:
                break
            wp = nxt[int(rng.integers(len(nxt)))] if len(nxt) > 1 else nxt[0]
            wps.append(wp)
        x = np.array([w.transform.location.x for w in wps])
        y = -np.array([w.transform.location.y for w in wps])
        heading = np.unwrap(-np.radians([w.transform.rotation.yaw for w in wps]))
        x, y = x - np.sin(heading) * -EGO_LANE_D, y + np.cos(heading) * -EGO_LANE_D
        curvature = np.gradient(heading, STEP_M)
        return Road(x, y, heading, curvature)

    def _vehicle_params(self) -> VehicleParams:
        extent = self.ego.bounding_box.extent
        physics = self.ego.get_physics_control()
        wheels = physics.wheels
        wheelbase = abs(wheels[0].position.x - wheels[2].position.x) / 100.0 if len(wheels) >= 4 else 2.9  # cm -> m
        return VehicleParams(length=2 * extent.x, width=2 * extent.y, height=2 * extent.z, wheelbase=wheelbase,
                             max_steer_deg=float(wheels[0].max_steer_angle))

    def _location(self, s: float, d: float, z: float = 0.3):
        x, y, yaw = self.road.pose(s, d)
        return self.carla.Transform(self.carla.Location(x=float(x), y=-float(y), z=z),
                                    self.carla.Rotation(yaw=-math.degrees(float(yaw))))

    def _spawn_scenes(self, library, rng: np.random.Generator) -> None:
        """Walkers stepping out, props and parked cars along the route, at the configured rate."""
        rates = ScenarioConfig.from_abnormal_rate(self.config.abnormal_rate)
        length = self.road.length_m
        plan = []
        for kind, per_km in (("pedestrian", rates.pedestrians_per_km), ("obstacle", rates.obstacles_per_km),
                             ("parked_car", rates.parked_cars_per_km)):
            plan += [(float(s), kind) for s in rng.uniform(40.0, length - 40.0, size=rng.poisson(per_km * length / 1000.0))]
        for s, kind in sorted(plan):
            if kind == "pedestrian":
                bp = library.filter("walker.pedestrian.*")[int(rng.integers(len(library.filter("walker.pedestrian.*"))))]
                start_d = -LANE_WIDTH_M - rng.uniform(0.5, 1.5)
                actor = self._spawn(bp, self._location(s, start_d, 1.0))
                if actor is not None:
                    stop_d = EGO_LANE_D + rng.uniform(-0.9, 0.9)
                    walk = rng.uniform(1.2, 2.0)
                    trigger = (abs(start_d - stop_d) / walk + rng.uniform(1.0, 2.5)) * self.config.target_speed_mps
                    self._walker_targets[actor.id] = (stop_d, walk, trigger)
            elif kind == "obstacle":
                bp = library.find(str(rng.choice(["static.prop.constructioncone", "static.prop.streetbarrier", "static.prop.trafficcone01"])))
                self._spawn(bp, self._location(s, EGO_LANE_D + rng.uniform(-0.8, 0.8), 0.1))
            else:
                bp = library.filter("vehicle.*")[int(rng.integers(len(library.filter("vehicle.*"))))]
                car = self._spawn(bp, self._location(s, -LANE_WIDTH_M - 0.95 + rng.uniform(0.4, 1.4), 0.3))
                if car is not None:
                    car.apply_control(self.carla.VehicleControl(hand_brake=True))

    def _spawn_traffic(self, library, spawn_points, order, tm) -> None:
        cars = library.filter("vehicle.*")
        for i in order[20:20 + self.config.npc_vehicles]:
            car = self._spawn(cars[int(i) % len(cars)], spawn_points[i])
            if car is not None:
                car.set_autopilot(True, tm.get_port())

    def _route_actors(self) -> list[Actor]:
        """Nearby walkers, props and vehicles (other than the ego) as boxes in route coordinates."""
        out = []
        for actor in self._spawned[1:]:
            if actor.type_id.startswith("sensor."):
                continue
            loc = actor.get_transform().location
            s, d = self.road.project(loc.x, -loc.y, s_hint=self.ego_s, window_m=80.0)
            if not -10.0 < s - self.ego_s < 60.0:
                continue
            kind = PEDESTRIAN if actor.type_id.startswith("walker.") else VEHICLE if actor.type_id.startswith("vehicle.") else STATIC
            v = actor.get_velocity()
            _, _, yaw = self.road.pose(s)
            along = v.x * math.cos(yaw) - v.y * math.sin(yaw)
            across = -v.x * math.sin(yaw) - v.y * math.cos(yaw)
            e = actor.bounding_box.extent
            target = self._walker_targets.get(actor.id)
            out.append(Actor(actor.id, kind, s, d, 2 * e.x, 2 * e.y, 2 * e.z, (0, 0, 0),
                             speed_mps=along if kind == VEHICLE else 0.0, lateral_speed_mps=across,
                             target_d=target[0] if target else None, triggered=True))
        return out

    # ---- stepping ----------------------------------------------------------------------------------

    def _on_collision(self, event) -> None:
        imp = event.normal_impulse
        self._events.append(InfractionEvent(_event_type(event.other_actor.type_id), self.time_s,
                                            other_actor_id=int(event.other_actor.id),
                                            impulse_n_s=math.sqrt(imp.x ** 2 + imp.y ** 2 + imp.z ** 2)))

    def _on_lane_invasion(self, event) -> None:
        markings = tuple(int(m.type) for m in event.crossed_lane_markings)
        self._events.append(InfractionEvent(EventType.LANE_INVASION, self.time_s, markings=markings,
                                            justified=self._evading and all(m == 1 for m in markings)))

    def _drive_walkers(self) -> None:
        for actor in self._spawned:
            target = self._walker_targets.get(actor.id)
            if target is None:
                continue
            stop_d, walk, trigger = target
            loc = actor.get_transform().location
            s, d = self.road.project(loc.x, -loc.y, s_hint=self.ego_s, window_m=80.0)
            if s - self.ego_s > trigger or abs(d - stop_d) < 0.2:
                actor.apply_control(self.carla.WalkerControl(speed=0.0))
                continue
            _, _, yaw = self.road.pose(s)
            left = self.carla.Vector3D(x=-math.sin(yaw), y=-math.cos(yaw), z=0.0)  # route left, in CARLA axes
            sign = 1.0 if stop_d > d else -1.0
            actor.apply_control(self.carla.WalkerControl(direction=self.carla.Vector3D(x=sign * left.x, y=sign * left.y, z=0.0), speed=walk))

    def step(self, control: VehicleControl, render: bool = True) -> Observation:
        if self._done:
            raise RuntimeError("episode is over: call reset(seed) first")
        return self._tick(control)

    def _tick(self, control: VehicleControl) -> Observation:
        carla, cfg = self.carla, self.config
        self.ego.apply_control(carla.VehicleControl(throttle=float(control.throttle), steer=float(np.clip(control.steer, -1, 1)),
                                                    brake=float(control.brake)))
        self._drive_walkers()
        frame = self.world.tick(cfg.timeout_s)
        image = self._image_for(frame)
        self.time_s += FIXED_DELTA_S
        tf = self.ego.get_transform()
        v = self.ego.get_velocity()
        fwd = tf.get_forward_vector()
        speed = v.x * fwd.x + v.y * fwd.y + v.z * fwd.z
        x, y, yaw = tf.location.x, -tf.location.y, -math.radians(tf.rotation.yaw)
        previous_s = self.ego_s
        self.ego_s, ego_d = self.road.project(x, y, s_hint=self.ego_s)
        actors = self._route_actors()
        pose = EgoPose(self.ego_s, ego_d, yaw, speed, self.vehicle.length, self.vehicle.width)
        features, category = describe(self.road, actors, pose, self.expert.params.pass_window_s)
        self._evading = category in ("pedestrian", "obstacle")
        plans, must_stop = self.expert.plan(pose.front_s, speed, actors)
        steer = self.expert.steer(VehicleState(x, y, yaw, speed), self.ego_s, plans)
        self.expert_speed.target_speed_mps = 0.0 if must_stop else cfg.target_speed_mps
        throttle, brake = self.expert_speed.run_step(speed)

        events, self._events = self._events, []
        completion = min(1.0, max(0.0, self.ego_s / max(self.road.length_m - 20.0, 1.0)))
        off_road = self.world.get_map().get_waypoint(tf.location, project_to_road=False) is None
        self.metrics.add_step(FIXED_DELTA_S, max(0.0, self.ego_s - previous_s), completion, off_road)
        for e in events:
            self.metrics.add_event(e)
        collided = any(e.type.is_collision for e in events)
        self._done = completion >= 1.0 or (collided and cfg.end_on_collision)
        return Observation(image, speed, self.time_s, features, category, VehicleControl(throttle, steer, brake),
                           completion, events, self._done)

    def _image_for(self, frame: int) -> np.ndarray:
        """The camera image of ``frame`` as uint8 BGRA (H, W, 4), skipping older ones."""
        while True:
            try:
                img = self._images.get(timeout=self.config.timeout_s)
            except queue.Empty:
                raise TimeoutError(f"no camera image for frame {frame} within {self.config.timeout_s:g} s") from None
            if img.frame >= frame:
                bgra = np.frombuffer(img.raw_data, dtype=np.uint8).reshape(img.height, img.width, 4)
                return cv2.cvtColor(crop_band(bgra[:, :, :3], self._band), cv2.COLOR_BGR2BGRA)
