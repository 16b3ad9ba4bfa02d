"""Expert driver of the embedded world: plans a lateral offset around what blocks the ego lane and
tracks it with a Stanley controller plus curvature feed-forward. Its steering is the label.

It may use privileged state (actor positions, where a pedestrian will stop); the learned policy
never does. When no side is free it stops before the obstacle (the only time it brakes itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.actors import VEHICLE, Actor
from simulator.road import EGO_LANE_D, HALF_WIDTH_M, Road
from simulator.vehicle import VehicleParams, VehicleState


@dataclass(frozen=True)
class ExpertParams:
    """Clearance and timing of the manoeuvres, metres and seconds."""

    margin_m: float = 0.6  # lateral clearance kept from an obstacle
    look_ahead_m: float = 45.0  # obstacles beyond this are ignored
    ramp_in_s: float = 1.6  # time over which the expert moves across
    ramp_out_m: float = 12.0
    stanley_gain: float = 1.5
    pass_window_s: float = 0.8  # a moving actor is avoided where it will be this long around passing
    edge_clearance_m: float = 0.3


@dataclass
class Avoidance:
    """Hold offset ``d`` (m) over [s_start, s_end] of the route, ramping in over ``ramp_in_m``."""

    d: float
    s_start: float
    s_end: float
    ramp_in_m: float
    ramp_out_m: float

    def weight(self, s: float) -> float:
        up = (s - (self.s_start - self.ramp_in_m)) / self.ramp_in_m
        down = 1.0 - (s - self.s_end) / self.ramp_out_m
        w = min(max(min(up, down), 0.0), 1.0)
        return 0.5 - 0.5 * math.cos(math.pi * w)  # smooth (zero slope) at both ends


class Expert:
    def __init__(self, road: Road, vehicle: VehicleParams, params: ExpertParams = ExpertParams()) -> None:
        self.road, self.vp, self.params = road, vehicle, params

    def plan(self, ego_s: float, speed_mps: float, actors: list[Actor]) -> tuple[list[Avoidance], bool]:
        """Avoidances for the obstacles ahead, and whether the expert must stop (no side free)."""
        half = self.vp.width / 2.0 + self.params.margin_m
        lo_bound = -HALF_WIDTH_M + self.vp.width / 2.0 + self.params.edge_clearance_m
        hi_bound = HALF_WIDTH_M - self.vp.width / 2.0 - self.params.edge_clearance_m
        oncoming = [a for a in actors if a.kind == VEHICLE and a.speed_mps < 0]
        plans, must_stop = [], False
        v = max(speed_mps, 2.0)
        for a in actors:
            ahead = a.s - ego_s
            behind_limit = -(a.length / 2 + 3.0 + self.params.ramp_out_m + self.vp.length)  # until back in lane
            if not (behind_limit < ahead < self.params.look_ahead_m) or (a.kind == VEHICLE and a.speed_mps != 0):
                continue
            t_pass = max(ahead, 0.0) / v
            a_lo, a_hi = a.lateral_extent(t_pass - self.params.pass_window_s, t_pass + self.params.pass_window_s)
            if a_hi < EGO_LANE_D - half or a_lo > EGO_LANE_D + half:
                continue
            options = [d for d in (a_hi + half, a_lo - half) if lo_bound <= d <= hi_bound]
            if any(d > 0 for d in options) and any(abs(o.s - a.s) < 70.0 and o.s > ego_s for o in oncoming):
                options = [d for d in options if d <= 0]  # the oncoming lane is not free
            if not options:
                must_stop = must_stop or 0 < ahead < v * v / 8.0 + 10.0  # stop when it is time to
                continue
            d = min(options, key=lambda o: abs(o - EGO_LANE_D))
            plans.append(Avoidance(d, a.s - a.length / 2 - 2.0, a.s + a.length / 2 + 3.0,
                                   max(8.0, self.params.ramp_in_s * v), self.params.ramp_out_m))
        return plans, must_stop

    def target_offset(self, s: float, plans: list[Avoidance]) -> float:
        """Desired lateral offset d*(s): the ego lane centre, shifted by the strongest avoidance."""
        d = EGO_LANE_D
        for plan in plans:
            shifted = EGO_LANE_D + plan.weight(s) * (plan.d - EGO_LANE_D)
            if abs(shifted - EGO_LANE_D) > abs(d - EGO_LANE_D):
                d = shifted
        return d

    def steer(self, state: VehicleState, ego_s: float, plans: list[Avoidance]) -> float:
        """Stanley steering toward d*(s), CARLA convention (+1 right), clipped to [-1, 1]."""
        fx, fy = state.front_axle(self.vp)
        s_f, d_f = self.road.track(fx, fy, ego_s)
        # Stanley on the front axle: at steady state on an arc the heading term alone equals the
        # needed wheel angle, so no curvature feed-forward is added (it would bias the offset).
        x0, y0, _ = self.road.pose_at(s_f - 1.0, self.target_offset(s_f - 1.0, plans))
        x1, y1, _ = self.road.pose_at(s_f + 1.0, self.target_offset(s_f + 1.0, plans))
        heading_err = _wrap(math.atan2(y1 - y0, x1 - x0) - state.yaw)
        cross = d_f - self.target_offset(s_f, plans)  # + when the front axle is left of the path
        delta = heading_err - math.atan2(self.params.stanley_gain * cross, state.speed_mps + 1.0)
        return min(max(-delta / math.radians(self.vp.max_steer_deg), -1.0), 1.0)


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi
