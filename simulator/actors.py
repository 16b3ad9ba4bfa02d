"""Actors of the embedded world and the rare scenarios that place them along a route.

Every actor lives in route coordinates (``s`` along the centreline, ``d`` lateral, + left) and is
an upright box: length along its heading, width across, height; metres, seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulator.road import EGO_LANE_D, HALF_WIDTH_M, LANE_WIDTH_M, Road

PEDESTRIAN, VEHICLE, STATIC = "pedestrian", "vehicle", "static"


@dataclass
class Actor:
    """A box on the road. ``speed_mps`` is along the route (+ with the ego's direction of travel);
    ``lateral_speed_mps`` across it (+ left). Pedestrians wait until the ego is ``trigger_m`` away,
    then walk toward ``target_d`` and stop there."""

    actor_id: int
    kind: str
    s: float
    d: float
    length: float
    width: float
    height: float
    colour: tuple[int, int, int]  # BGR
    speed_mps: float = 0.0
    lateral_speed_mps: float = 0.0
    trigger_m: float = 0.0
    target_d: float | None = None
    scenario: str = "traffic"
    heading_offset: float = 0.0  # rad relative to the road (pi for oncoming traffic)
    triggered: bool = False

    def update(self, dt_s: float, ego_s: float) -> None:
        if self.kind == PEDESTRIAN:
            if not self.triggered and self.s - ego_s <= self.trigger_m:
                self.triggered = True
            if self.triggered and self.target_d is not None:
                step = self.lateral_speed_mps * dt_s
                if abs(self.target_d - self.d) <= abs(step):
                    self.d, self.lateral_speed_mps = self.target_d, 0.0
                else:
                    self.d += step
            return
        self.s += self.speed_mps * dt_s

    @property
    def current_lateral_speed(self) -> float:
        return self.lateral_speed_mps if (self.kind != PEDESTRIAN or self.triggered) else 0.0

    def lateral_extent(self, t0_s: float = 0.0, t1_s: float = 0.0) -> tuple[float, float]:
        """(min d, max d) the actor covers between ``t0_s`` and ``t1_s`` from now, moving as it does."""
        half = self.width / 2.0
        positions = [self.d + self.current_lateral_speed * max(t, 0.0) for t in (t0_s, t1_s)]
        if self.target_d is not None:
            lo_t, hi_t = sorted((self.d, self.target_d))
            positions = [min(max(p, lo_t), hi_t) for p in positions]
        return min(positions) - half, max(positions) + half

    def footprint(self, road: Road) -> np.ndarray:
        """(4, 2) world corners of the box's ground footprint."""
        x, y, yaw = road.pose_at(self.s, self.d)
        return box_corners(x, y, yaw + self.heading_offset, self.length, self.width)


_CORNER_SIGNS = ((1.0, 1.0), (1.0, -1.0), (-1.0, -1.0), (-1.0, 1.0))  # (along, across), clockwise from front-left


def box_corners(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    """(4, 2) corners of a box centred at (x, y) (scalar math: one box costs less than numpy calls)."""
    c, s = math.cos(yaw), math.sin(yaw)
    hl, hw = length / 2.0, width / 2.0
    return np.array([(x + a * hl * c - b * hw * s, y + a * hl * s + b * hw * c) for a, b in _CORNER_SIGNS])


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test for two convex quadrilaterals given as (4, 2) corner arrays."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        normals = np.stack([-edges[:, 1], edges[:, 0]], axis=1)
        pa, pb = a @ normals.T, b @ normals.T
        if np.any((pa.max(0) < pb.min(0)) | (pb.max(0) < pa.min(0))):
            return False
    return True


@dataclass(frozen=True)
class ScenarioConfig:
    """Rates of each scenario in events per km of route.

    ``from_abnormal_rate`` turns a target share of abnormal frames into rates; the footprint
    constants are the route length a scene keeps the ``abnormal`` flag set (measured by
    ``metasteer collect``, which reports the realised share).
    """

    pedestrians_per_km: float = 0.25
    obstacles_per_km: float = 0.2
    parked_cars_per_km: float = 0.15
    sharp_bends_per_km: float = 0.3
    lead_vehicles_per_km: float = 1.0
    oncoming_vehicles_per_km: float = 3.0

    # route metres of abnormal frames per event, measured over 20 routes at rate 0.2 (2026-11-24)
    PEDESTRIAN_FOOTPRINT_M = 31.0
    OBSTACLE_FOOTPRINT_M = 24.0
    BEND_FOOTPRINT_M = 35.0

    @classmethod
    def from_abnormal_rate(cls, rate: float) -> "ScenarioConfig":
        """Split ``rate`` (share of abnormal frames) as 35 % pedestrians, 15 % obstacles,
        15 % parked cars and 35 % sharp bends."""
        per_km = 1000.0 * rate
        return cls(
            pedestrians_per_km=0.35 * per_km / cls.PEDESTRIAN_FOOTPRINT_M,
            obstacles_per_km=0.15 * per_km / cls.OBSTACLE_FOOTPRINT_M,
            parked_cars_per_km=0.15 * per_km / cls.OBSTACLE_FOOTPRINT_M,
            sharp_bends_per_km=0.35 * per_km / cls.BEND_FOOTPRINT_M,
        )


_CAR_COLOURS = [(40, 40, 200), (200, 60, 40), (30, 30, 30), (220, 220, 220), (40, 160, 220), (60, 120, 40)]
_PED_COLOURS = [(60, 60, 160), (150, 80, 30), (40, 140, 200), (120, 40, 120), (30, 30, 30)]


def spawn_scenarios(road: Road, cfg: ScenarioConfig, rng: np.random.Generator, ego_speed_mps: float) -> list[Actor]:
    """Place the rare scenes and the ordinary traffic along ``road`` (a Poisson process per km).

    Rare events keep at least 80 m apart so the expert always has a way around each one.
    """
    actors: list[Actor] = []
    usable = (60.0, road.length_m - 60.0)

    def event_positions(per_km: float) -> list[float]:
        n = rng.poisson(per_km * (usable[1] - usable[0]) / 1000.0)
        return np.sort(rng.uniform(*usable, size=n)).tolist()  # Python floats: cheaper in per-step math

    events = [(s, "pedestrian") for s in event_positions(cfg.pedestrians_per_km)]
    events += [(s, "obstacle") for s in event_positions(cfg.obstacles_per_km)]
    events += [(s, "parked_car") for s in event_positions(cfg.parked_cars_per_km)]
    kept: list[tuple[float, str]] = []
    for s, kind in sorted(events):
        if not kept or s - kept[-1][0] >= 80.0:
            kept.append((s, kind))

    def new_id() -> int:
        return 1000 + len(actors)

    for s, kind in kept:
        if kind == "pedestrian":
            side = float(rng.choice([-1.0, 1.0]))
            start_d = side * (HALF_WIDTH_M + rng.uniform(0.5, 1.5))
            stop_d = EGO_LANE_D + rng.uniform(-0.9, 0.9)
            walk = rng.uniform(1.2, 2.0)
            # steps out late: reaches the lane roughly when the ego is 2-3.5 s away
            ttc = abs(start_d - stop_d) / walk + rng.uniform(1.0, 2.5)
            actors.append(Actor(new_id(), PEDESTRIAN, s, start_d, 0.5, 0.6, rng.uniform(1.6, 1.9),
                                _PED_COLOURS[rng.integers(len(_PED_COLOURS))],
                                lateral_speed_mps=math.copysign(walk, stop_d - start_d),
                                trigger_m=ttc * ego_speed_mps, target_d=stop_d, scenario="pedestrian"))
        elif kind == "obstacle":
            for k in range(int(rng.integers(1, 4))):  # a few boxes / barrels in the lane
                size = rng.uniform(0.6, 1.2)
                actors.append(Actor(new_id(), STATIC, s + k * rng.uniform(0.8, 2.0),
                                    EGO_LANE_D + rng.uniform(-0.8, 0.8), size, size, rng.uniform(0.6, 1.2),
                                    (0, int(rng.integers(90, 160)), int(rng.integers(200, 255))), scenario="obstacle"))
        else:
            intrusion = rng.uniform(0.4, 1.4)  # how far the parked car reaches into the ego lane
            width = 1.9
            actors.append(Actor(new_id(), VEHICLE, s, -HALF_WIDTH_M - width / 2.0 + intrusion, 4.6, width, 1.5,
                                _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))], scenario="parked_car"))

    blocked = np.array([s for s, _ in kept])

    def clear_of_events(s: float, margin: float) -> bool:
        return blocked.size == 0 or float(np.min(np.abs(blocked - s))) > margin

    for s in event_positions(cfg.lead_vehicles_per_km):
        if clear_of_events(s, 120.0):
            # never slower than the ego's target: a steering-only policy has no privileged braking
            actors.append(Actor(new_id(), VEHICLE, s, EGO_LANE_D, 4.6, 1.9, 1.5,
                                _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))],
                                speed_mps=ego_speed_mps * rng.uniform(1.05, 1.3)))
    for s in event_positions(cfg.oncoming_vehicles_per_km):
        speed = rng.uniform(6.0, 10.0)
        # placed so they never meet the ego at a rare event, where the expert may use their lane
        meet_s = s * ego_speed_mps / (ego_speed_mps + speed)
        if clear_of_events(meet_s, 60.0):
            actors.append(Actor(new_id(), VEHICLE, s, LANE_WIDTH_M / 2.0, 4.6, 1.9, 1.5,
                                _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))],
                                speed_mps=-speed, heading_offset=math.pi))
    return actors
