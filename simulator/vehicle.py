"""Ego vehicle: kinematic bicycle referenced at the centre of its footprint."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class VehicleParams:
    """Geometry (m), actuator limits and longitudinal response.

    ``max_steer_deg``: front-wheel angle at ``steer = +-1`` (CARLA normalises steering by the
    vehicle's own maximum; +1 turns right). Accelerations in m/s^2 at full throttle / brake.
    """

    length: float = 4.7
    width: float = 1.9
    height: float = 1.5
    wheelbase: float = 2.9
    max_steer_deg: float = 35.0
    max_accel_mps2: float = 3.0
    max_decel_mps2: float = 8.0
    drag_1pm: float = 0.002  # quadratic drag, deceleration = drag * v^2
    mass_kg: float = 1500.0


@dataclass
class VehicleState:
    """Centre position (m), yaw (rad, CCW from +x), forward speed (m/s)."""

    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    speed_mps: float = 0.0

    def step(self, p: VehicleParams, steer: float, throttle: float, brake: float, dt_s: float) -> float:
        """Advance by ``dt_s``; returns the distance travelled (m). ``steer`` +1 = full right."""
        steer = min(max(steer, -1.0), 1.0)
        delta = -steer * math.radians(p.max_steer_deg)  # right turn = clockwise = negative yaw rate
        beta = math.atan(0.5 * math.tan(delta))
        v = self.speed_mps
        self.x += v * math.cos(self.yaw + beta) * dt_s
        self.y += v * math.sin(self.yaw + beta) * dt_s
        self.yaw += v / (0.5 * p.wheelbase) * math.sin(beta) * dt_s
        accel = throttle * p.max_accel_mps2 - brake * p.max_decel_mps2 - p.drag_1pm * v * v
        self.speed_mps = max(0.0, v + accel * dt_s)
        return v * dt_s

    def front_axle(self, p: VehicleParams) -> tuple[float, float]:
        return self.x + 0.5 * p.wheelbase * math.cos(self.yaw), self.y + 0.5 * p.wheelbase * math.sin(self.yaw)
