"""Infraction events with CARLA's semantics, and the per-episode metrics computed from them.

Plain Python: used by the offline evaluator (any world backend) and by the ROS node's infraction log.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum

# carla.LaneMarkingType as the ros-bridge forwards it in CarlaLaneInvasionEvent.crossed_lane_markings;
# carla_msgs names only OTHER=0, BROKEN=1, SOLID=2, but the rest arrive too and are logged by name.
LANE_MARKING_NAMES = {
    0: "Other",
    1: "Broken",
    2: "Solid",
    3: "SolidSolid",
    4: "SolidBroken",
    5: "BrokenSolid",
    6: "BrokenBroken",
    7: "BottsDots",
    8: "Grass",
    9: "Curb",
    10: "NONE",
}
BROKEN, SOLID = 1, 2


def lane_marking_name(value: int) -> str:
    """Name of a CARLA lane-marking type; unknown values are named, never rejected."""
    return LANE_MARKING_NAMES.get(int(value), f"Unknown({int(value)})")


class EventType(str, Enum):
    COLLISION_PEDESTRIAN = "collision_pedestrian"
    COLLISION_VEHICLE = "collision_vehicle"
    COLLISION_STATIC = "collision_static"
    LANE_INVASION = "lane_invasion"
    OFF_ROAD = "off_road"

    @property
    def is_collision(self) -> bool:
        return self.value.startswith("collision")


@dataclass(frozen=True)
class InfractionEvent:
    """One event at its onset (one per contact / crossing, never one per step).

    ``time_s``: simulation time; ``other_actor_id``: CARLA actor id for collisions (0 otherwise);
    ``impulse_n_s``: |normal impulse| in N*s for collisions; ``markings``: crossed CARLA lane-marking
    types for lane invasions; ``justified``: a deliberate evasive crossing of a broken line with an
    obstacle in the ego lane ahead (reported, not counted as an infraction).
    """

    type: EventType
    time_s: float
    other_actor_id: int = 0
    impulse_n_s: float = 0.0
    markings: tuple[int, ...] = ()
    justified: bool = False

    @property
    def counts_as_infraction(self) -> bool:
        return not self.justified

    def to_dict(self) -> dict:
        d = asdict(self)
        d["type"] = self.type.value
        d["markings"] = [lane_marking_name(m) for m in self.markings]
        return d


# CARLA Leaderboard infraction penalty coefficients (multiplicative per event).
LEADERBOARD_PENALTY = {
    EventType.COLLISION_PEDESTRIAN: 0.50,
    EventType.COLLISION_VEHICLE: 0.60,
    EventType.COLLISION_STATIC: 0.65,
}


@dataclass
class EpisodeMetrics:
    """Accumulates one episode's events and odometry into the closed-loop metrics.

    ``time_without_infractions_s``: simulated time until the first counted infraction (the whole
    episode if none); ``distance_between_infractions_m``: distance driven / max(1, infractions).
    """

    time_s: float = 0.0
    distance_m: float = 0.0
    route_completion: float = 0.0
    off_road_time_s: float = 0.0
    first_infraction_time_s: float | None = None
    events: list[InfractionEvent] = field(default_factory=list)

    def add_step(self, dt_s: float, distance_m: float, route_completion: float, off_road: bool) -> None:
        self.time_s += dt_s
        self.distance_m += distance_m
        self.route_completion = max(self.route_completion, route_completion)
        if off_road:
            self.off_road_time_s += dt_s

    def add_event(self, event: InfractionEvent) -> None:
        self.events.append(event)
        if event.counts_as_infraction and self.first_infraction_time_s is None:
            self.first_infraction_time_s = event.time_s

    def count(self, *types: EventType, counted_only: bool = True) -> int:
        return sum(1 for e in self.events if e.type in types and (e.counts_as_infraction or not counted_only))

    @property
    def infractions(self) -> int:
        return sum(1 for e in self.events if e.counts_as_infraction)

    @property
    def collisions(self) -> int:
        return sum(1 for e in self.events if e.type.is_collision)

    @property
    def time_without_infractions_s(self) -> float:
        return self.time_s if self.first_infraction_time_s is None else self.first_infraction_time_s

    @property
    def driving_score(self) -> float:
        """Leaderboard style: route completion x product of collision penalties x off-route share."""
        penalty = 1.0
        for e in self.events:
            penalty *= LEADERBOARD_PENALTY.get(e.type, 1.0)
        off_route_share = self.off_road_time_s / self.time_s if self.time_s > 0 else 0.0
        return self.route_completion * penalty * (1.0 - off_route_share)

    def summary(self) -> dict:
        km = self.distance_m / 1000.0
        return {
            "time_s": self.time_s,
            "distance_m": self.distance_m,
            "route_completion": self.route_completion,
            "time_without_infractions_s": self.time_without_infractions_s,
            "distance_between_infractions_m": self.distance_m / max(1, self.infractions),
            "infractions": self.infractions,
            "infractions_per_km": self.infractions / km if km > 0 else 0.0,
            "collisions": self.collisions,
            "collisions_pedestrian": self.count(EventType.COLLISION_PEDESTRIAN),
            "collisions_vehicle": self.count(EventType.COLLISION_VEHICLE),
            "collisions_static": self.count(EventType.COLLISION_STATIC),
            "lane_invasions": self.count(EventType.LANE_INVASION),
            "lane_invasions_justified": self.count(EventType.LANE_INVASION, counted_only=False)
            - self.count(EventType.LANE_INVASION),
            "off_road_events": self.count(EventType.OFF_ROAD),
            "off_road_time_s": self.off_road_time_s,
            "driving_score": self.driving_score,
        }
