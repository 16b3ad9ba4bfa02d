"""The embedded world: procedural roads, rare scenes on demand, a forward camera, an expert driver
and CARLA-style infractions, headless and deterministic per seed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from metasteer.control import SpeedController
from metasteer.infractions import BROKEN, SOLID, EpisodeMetrics, EventType, InfractionEvent
from simulator.actors import PEDESTRIAN, STATIC, VEHICLE, Actor, ScenarioConfig, box_corners, boxes_overlap, spawn_scenarios
from simulator.base import FIXED_DELTA_S, CameraSpec, Observation, VehicleControl, World, pilotnet_camera
from simulator.camera import EDGE_LINE_D, Camera, Look
from simulator.expert import Expert, ExpertParams
from simulator.features import EgoPose, describe, heading_error
from simulator.road import EGO_LANE_D, HALF_WIDTH_M, Road, RoadConfig
from simulator.vehicle import VehicleParams, VehicleState

ROUTE_END_MARGIN_M = 40.0
LOST_OFFSET_M = 9.0  # this far from the centreline the episode ends
_MARKINGS = ((0.0, BROKEN), (EDGE_LINE_D, SOLID), (-EDGE_LINE_D, SOLID))


@dataclass(frozen=True)
class EmbeddedConfig:
    """Everything that shapes an embedded episode; the seed passed to ``reset`` draws the rest."""

    camera: CameraSpec = field(default_factory=pilotnet_camera)
    road: RoadConfig = RoadConfig()
    scenarios: ScenarioConfig = ScenarioConfig()
    vehicle: VehicleParams = VehicleParams()
    expert: ExpertParams = ExpertParams()
    target_speed_mps: float = 8.0
    end_on_collision: bool = True
    randomise_look: bool = True
    max_time_s: float = 600.0


class EmbeddedWorld(World):
    """A ``World`` simulated in-process at ``FIXED_DELTA_S``; see the module docstring."""

    def __init__(self, config: EmbeddedConfig = EmbeddedConfig()) -> None:
        self.config = config
        self.camera = config.camera
        self.metrics = EpisodeMetrics()

    # ---- episode ---------------------------------------------------------------------------------

    def reset(self, seed: int) -> Observation:
        cfg = self.config
        rng = np.random.default_rng(seed)
        self.road = Road.generate(rng, cfg.road, cfg.scenarios.sharp_bends_per_km)
        self.actors: list[Actor] = spawn_scenarios(self.road, cfg.scenarios, rng, cfg.target_speed_mps)
        self.look = Look.random(rng) if cfg.randomise_look else Look()
        self.cam = Camera(cfg.camera, self.look)
        self.expert = Expert(self.road, cfg.vehicle, cfg.expert)
        self.expert_speed = SpeedController(cfg.target_speed_mps, dt_s=FIXED_DELTA_S)
        x, y, yaw = self.road.pose_at(5.0, EGO_LANE_D)
        self.ego = VehicleState(x, y, yaw, cfg.target_speed_mps)
        self.ego_s, self.ego_d = 5.0, EGO_LANE_D
        self.time_s = 0.0
        self.metrics = EpisodeMetrics()
        self._contacts: set[int] = set()
        self._markings_touched: set[float] = set()
        self._off_road = False
        self._done = False
        return self._observe([], True, self._ego_pose)

    def step(self, control: VehicleControl, render: bool = True) -> Observation:
        """Advance one step. ``render=False`` skips the camera (the image is then ``None``)."""
        if self._done:
            raise RuntimeError("episode is over: call reset(seed) first")
        cfg = self.config
        dist = self.ego.step(cfg.vehicle, control.steer, control.throttle, control.brake, FIXED_DELTA_S)
        self.time_s += FIXED_DELTA_S
        for a in self.actors:
            a.update(FIXED_DELTA_S, self.ego_s)
        self.ego_s, self.ego_d = self.road.track(self.ego.x, self.ego.y, self.ego_s)
        pose = self._ego_pose
        events = self._infractions(pose)
        completion = self.route_completion
        self.metrics.add_step(FIXED_DELTA_S, dist, completion, self._off_road)
        for e in events:
            self.metrics.add_event(e)
        collided = any(e.type.is_collision for e in events)
        self._done = (
            completion >= 1.0
            or (collided and cfg.end_on_collision)
            or abs(self.ego_d) > LOST_OFFSET_M
            or self.time_s >= cfg.max_time_s
        )
        return self._observe(events, render, pose)

    @property
    def route_completion(self) -> float:
        return min(1.0, max(0.0, self.ego_s / (self.road.length_m - ROUTE_END_MARGIN_M)))

    # ---- perception of the state ------------------------------------------------------------------

    def _observe(self, events: list[InfractionEvent], render: bool, pose: EgoPose) -> Observation:
        plans, must_stop = self.expert.plan(pose.front_s, self.ego.speed_mps, self.actors)
        steer = self.expert.steer(self.ego, self.ego_s, plans)
        self.expert_speed.target_speed_mps = 0.0 if must_stop else self.config.target_speed_mps
        throttle, brake = self.expert_speed.run_step(self.ego.speed_mps)
        features, category = describe(self.road, self.actors, pose, self.config.expert.pass_window_s)
        self._evading = category in ("pedestrian", "obstacle")
        image = None
        if render:
            self.cam.set_vehicle_pose(self.ego.x, self.ego.y, self.ego.yaw)
            image = self.cam.render(self.road, self.ego_s, self.actors)
        return Observation(image, self.ego.speed_mps, self.time_s, features, category,
                           VehicleControl(throttle, steer, brake), self.route_completion, events, self._done)

    @property
    def _ego_pose(self) -> EgoPose:
        vp = self.config.vehicle
        return EgoPose(self.ego_s, self.ego_d, self.ego.yaw, self.ego.speed_mps, vp.length, vp.width)

    # ---- infractions --------------------------------------------------------------------------------

    def _infractions(self, pose: EgoPose) -> list[InfractionEvent]:
        vp, events, contacts = self.config.vehicle, [], set()
        ego_reach = math.hypot(vp.length, vp.width) / 2.0 + 0.1  # + slack for the sampled centreline
        ego_box = None
        for a in self.actors:
            # cheap culls first: boxes further apart along or across the road than their half-diagonals
            # cannot touch (across: offset curves stay |d1 - d2| apart inside the bends' radius)
            reach = ego_reach + math.hypot(a.length, a.width) / 2.0
            if abs(a.s - self.ego_s) > 8.0 or abs(a.d - self.ego_d) > reach:
                continue
            if ego_box is None:
                ego_box = box_corners(self.ego.x, self.ego.y, self.ego.yaw, vp.length, vp.width)
            if not boxes_overlap(ego_box, a.footprint(self.road)):
                continue
            contacts.add(a.actor_id)
            if a.actor_id not in self._contacts:
                kind = {PEDESTRIAN: EventType.COLLISION_PEDESTRIAN, VEHICLE: EventType.COLLISION_VEHICLE,
                        STATIC: EventType.COLLISION_STATIC}[a.kind]
                closing = abs(self.ego.speed_mps - a.speed_mps)
                events.append(InfractionEvent(kind, self.time_s, other_actor_id=a.actor_id, impulse_n_s=vp.mass_kg * closing))
        self._contacts = contacts

        he = heading_error(self.road, pose)
        # the footprint's corners span this far across the road either side of its centre
        half_span = abs(vp.length / 2.0 * math.sin(he)) + abs(vp.width / 2.0 * math.cos(he))
        lo, hi = self.ego_d - half_span, self.ego_d + half_span
        touched = {d for d, _ in _MARKINGS if lo < d < hi}
        crossed = [m for d, m in _MARKINGS if d in touched - self._markings_touched]
        self._markings_touched = touched
        if crossed:
            justified = self._evading and all(m == BROKEN for m in crossed)
            events.append(InfractionEvent(EventType.LANE_INVASION, self.time_s, markings=tuple(crossed), justified=justified))

        off_road = abs(self.ego_d) > HALF_WIDTH_M
        if off_road and not self._off_road:
            events.append(InfractionEvent(EventType.OFF_ROAD, self.time_s))
        self._off_road = off_road
        return events


def embedded_world(abnormal_rate: float, camera: CameraSpec | None = None, **options) -> EmbeddedWorld:
    """The embedded world with rare scenes at ``abnormal_rate`` (share of frames), seen by ``camera``
    (default: the training camera); ``options``: other ``EmbeddedConfig`` fields by name."""
    from simulator.actors import ScenarioConfig

    return EmbeddedWorld(EmbeddedConfig(camera=camera or pilotnet_camera(), scenarios=ScenarioConfig.from_abnormal_rate(abnormal_rate), **options))
