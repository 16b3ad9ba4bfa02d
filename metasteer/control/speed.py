"""Longitudinal PI speed controller: speed error (m/s) -> throttle / brake, CARLA's ranges."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SpeedController:
    """Holds a target speed from the measured speed only (no knowledge of the scene).

    Units: speeds in m/s, ``dt_s`` in seconds. Outputs follow CARLA's VehicleControl:
    throttle in [0, 1], brake in [0, 1], never both non-zero.
    The same controller drives the car in closed-loop evaluation and in the ROS node, so a
    steering-only policy never gets privileged braking.
    """

    target_speed_mps: float = 8.0
    kp: float = 0.5
    ki: float = 0.1
    dt_s: float = 0.05
    integral_limit: float = 2.0
    _integral: float = 0.0

    def reset(self) -> None:
        self._integral = 0.0

    def run_step(self, speed_mps: float) -> tuple[float, float]:
        """Return ``(throttle, brake)`` for the measured forward speed (m/s, signed along heading)."""
        error = self.target_speed_mps - speed_mps
        self._integral = min(max(self._integral + error * self.dt_s, -self.integral_limit), self.integral_limit)
        u = self.kp * error + self.ki * self._integral
        if u >= 0.0:
            return min(u, 1.0), 0.0
        return 0.0, min(-u, 1.0)
