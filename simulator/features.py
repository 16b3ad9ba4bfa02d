"""Scene features and the rare-scene category of a frame, from route geometry and actors.

Backend-agnostic: the embedded world and the CARLA backend both describe their state as a
``Road`` (the ego route) plus ``Actor`` boxes in route coordinates, and call ``describe``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulator.actors import PEDESTRIAN, VEHICLE, Actor
from simulator.base import FAR_M, SceneFeatures
from simulator.road import EGO_LANE_D, HALF_WIDTH_M, Road

SHARP_CURVATURE_1PM = 1.0 / 30.0  # bends tighter than 30 m radius count as rare scenes
IN_PATH_RANGE_M = (-8.0, 35.0)  # an obstacle makes the scene abnormal from 35 m before to 8 m after it
_CURVATURE_AHEAD_M = np.arange(0.0, 20.5, 2.0)  # where the road ahead is read for its sharpest bend
_RELEVANT_M = (min(-2.0, IN_PATH_RANGE_M[0]), max(FAR_M, IN_PATH_RANGE_M[1]))  # no test below looks further


@dataclass(frozen=True)
class EgoPose:
    """Ego in route coordinates: ``s`` (m, centre), ``d`` (m, + left), yaw (rad), speed (m/s)."""

    s: float
    d: float
    yaw: float
    speed_mps: float
    length: float
    width: float

    @property
    def front_s(self) -> float:
        return self.s + self.length / 2.0


def heading_error(road: Road, ego: EgoPose) -> float:
    """Ego yaw minus road yaw at the ego, wrapped to [-pi, pi) (rad, + = pointing left of the road)."""
    _, _, road_yaw = road.pose_at(ego.s)
    return (ego.yaw - road_yaw + math.pi) % (2 * math.pi) - math.pi


def in_path(a: Actor, ego: EgoPose, pass_window_s: float) -> bool:
    """Whether a still / crossing actor blocks (or, walking, will block) the ego lane in range."""
    ahead = a.s - ego.front_s
    if not (IN_PATH_RANGE_M[0] < ahead < IN_PATH_RANGE_M[1]) or (a.kind == VEHICLE and a.speed_mps != 0):
        return False
    t_pass = max(ahead, 0.0) / max(ego.speed_mps, 2.0)
    lo, hi = a.lateral_extent(t_pass - pass_window_s, t_pass + pass_window_s)
    half = ego.width / 2.0 + 0.3
    return hi > EGO_LANE_D - half and lo < EGO_LANE_D + half


def describe(road: Road, actors: list[Actor], ego: EgoPose, pass_window_s: float) -> tuple[SceneFeatures, str]:
    """Features (units in ``SceneFeatures``) and category: pedestrian > obstacle > sharp_bend > normal."""
    f = SceneFeatures(ped_distance_m=FAR_M, obstacle_distance_m=FAR_M, vehicle_ahead_distance_m=FAR_M)
    ped_in_path = obstacle_in_path = False
    front_s = ego.front_s
    for a in actors:
        ahead = a.s - front_s
        if not _RELEVANT_M[0] < ahead < _RELEVANT_M[1]:
            continue
        if a.kind == PEDESTRIAN and -2.0 < ahead < f.ped_distance_m and abs(a.d) < HALF_WIDTH_M + 3.0:
            f.ped_present, f.ped_distance_m, f.ped_lateral_m = 1.0, max(ahead, 0.0), a.d - EGO_LANE_D
        if a.kind == VEHICLE and a.speed_mps > 0 and 0.0 < ahead < f.vehicle_ahead_distance_m and abs(a.d - EGO_LANE_D) < 1.5:
            f.vehicle_ahead_distance_m = ahead
        if in_path(a, ego, pass_window_s):
            if a.kind == PEDESTRIAN:
                ped_in_path = True
            else:
                obstacle_in_path = True
                if ahead < f.obstacle_distance_m:
                    f.obstacle_present, f.obstacle_distance_m = 1.0, max(ahead, 0.0)
    kappa = road.curvature_at(ego.s + _CURVATURE_AHEAD_M)
    f.curvature_ahead_1pm = float(kappa[np.argmax(np.abs(kappa))])
    f.lane_offset_m = ego.d - EGO_LANE_D
    f.heading_error_rad = heading_error(road, ego)
    f.speed_mps = ego.speed_mps
    category = ("pedestrian" if ped_in_path else "obstacle" if obstacle_in_path
                else "sharp_bend" if abs(f.curvature_ahead_1pm) >= SHARP_CURVATURE_1PM else "normal")
    f.abnormal = float(category != "normal")
    return f, category
