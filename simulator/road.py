"""Procedural two-lane roads: a centreline of straights and arcs, and route (Frenet) coordinates.

World frame: right-handed, x/y on the ground, yaw counter-clockwise from +x, metres and radians.
Lateral offsets ``d`` are positive to the left of the centreline. Right-hand traffic: the ego lane
is centred at ``d = -LANE_WIDTH_M / 2``, the oncoming lane at ``+LANE_WIDTH_M / 2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LANE_WIDTH_M = 3.5
HALF_WIDTH_M = LANE_WIDTH_M  # centreline to road edge (two lanes)
EGO_LANE_D = -LANE_WIDTH_M / 2.0
SIDEWALK_WIDTH_M = 3.0
STEP_M = 0.5  # centreline sampling
MAX_HEADING_RAD = math.radians(80.0)  # |yaw| bound keeps x increasing, so a road never crosses itself


@dataclass(frozen=True)
class RoadConfig:
    """Road shape distribution; radii and lengths in metres. How often the rare sharp bends come is
    a scenario rate (``ScenarioConfig.sharp_bends_per_km``), passed to ``Road.generate``."""

    length_m: float = 1000.0
    straight_m: tuple[float, float] = (30.0, 150.0)
    gentle_radius_m: tuple[float, float] = (60.0, 300.0)
    gentle_angle_deg: tuple[float, float] = (10.0, 60.0)
    sharp_radius_m: tuple[float, float] = (15.0, 25.0)
    sharp_angle_deg: tuple[float, float] = (45.0, 100.0)


class Road:
    """A sampled centreline with arc length ``s`` (m), heading (rad) and curvature (1/m, + left)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, heading: np.ndarray, curvature: np.ndarray) -> None:
        self.x, self.y, self.heading, self.curvature = x, y, heading, curvature
        self.s = np.arange(len(x)) * STEP_M
        self.length_m = float(self.s[-1])
        # plain lists: per-point math in Python floats is several times cheaper than a numpy call
        self._xs, self._ys, self._hs = x.tolist(), y.tolist(), heading.tolist()

    @classmethod
    def generate(cls, rng: np.random.Generator, cfg: RoadConfig, sharp_bends_per_km: float) -> "Road":
        curvatures: list[np.ndarray] = [np.zeros(int(40.0 / STEP_M))]  # a calm start
        heading, total = 0.0, 40.0
        p_sharp_given_arc = min(1.0, sharp_bends_per_km / 6.0)  # ~10 segments per km, 60 % arcs
        while total < cfg.length_m + 60.0:
            if rng.random() < 0.4:
                seg_len, kappa = rng.uniform(*cfg.straight_m), 0.0
            else:
                sharp = rng.random() < p_sharp_given_arc
                radius = rng.uniform(*(cfg.sharp_radius_m if sharp else cfg.gentle_radius_m))
                angle = math.radians(rng.uniform(*(cfg.sharp_angle_deg if sharp else cfg.gentle_angle_deg)))
                sign = float(rng.choice([-1.0, 1.0]))
                if MAX_HEADING_RAD - sign * heading < angle:
                    sign = -sign
                angle = min(angle, MAX_HEADING_RAD - sign * heading)
                seg_len, kappa = radius * angle, sign / radius
                heading += kappa * seg_len
            n = max(1, int(round(seg_len / STEP_M)))
            curvatures.append(np.full(n, kappa))
            total += n * STEP_M
        kappa = np.concatenate(curvatures)
        kappa = _ease_transitions(kappa)
        yaw = np.concatenate([[0.0], np.cumsum(kappa[:-1] * STEP_M)])
        x = np.concatenate([[0.0], np.cumsum(np.cos(yaw[:-1] + 0.5 * kappa[:-1] * STEP_M) * STEP_M)])
        y = np.concatenate([[0.0], np.cumsum(np.sin(yaw[:-1] + 0.5 * kappa[:-1] * STEP_M) * STEP_M)])
        return cls(x, y, yaw, kappa)

    def _interp(self, arr: np.ndarray, s: float | np.ndarray) -> np.ndarray:
        return np.interp(s, self.s, arr)

    def pose(self, s: float | np.ndarray, d: float | np.ndarray = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World (x, y, yaw) of route coordinates (s, d)."""
        yaw = self._interp(self.heading, s)
        x = self._interp(self.x, s) - np.sin(yaw) * d
        y = self._interp(self.y, s) + np.cos(yaw) * d
        return x, y, yaw

    def pose_at(self, s: float, d: float = 0.0) -> tuple[float, float, float]:
        """``pose`` of one point, as Python floats (the hot path of actors and the expert)."""
        u = min(max(s / STEP_M, 0.0), len(self._xs) - 1.0)
        i = min(int(u), len(self._xs) - 2)
        t = u - i
        yaw = self._hs[i] + t * (self._hs[i + 1] - self._hs[i])
        x = self._xs[i] + t * (self._xs[i + 1] - self._xs[i]) - math.sin(yaw) * d
        y = self._ys[i] + t * (self._ys[i + 1] - self._ys[i]) + math.cos(yaw) * d
        return x, y, yaw

    def curvature_at(self, s: float | np.ndarray) -> np.ndarray:
        return self._interp(self.curvature, s)

    def project(self, x: float, y: float, s_hint: float | None = None, window_m: float = 30.0) -> tuple[float, float]:
        """Route coordinates (s, d) of a world point: nearest centreline sample, refined on its tangent."""
        if s_hint is None:
            lo, hi = 0, len(self.s)
        else:
            lo = max(0, int((s_hint - window_m) / STEP_M))
            hi = min(len(self.s), int((s_hint + window_m) / STEP_M) + 1)
        dx, dy = self.x[lo:hi] - x, self.y[lo:hi] - y
        i = lo + int(np.argmin(dx * dx + dy * dy))
        c, sn = math.cos(self.heading[i]), math.sin(self.heading[i])
        ex, ey = x - self.x[i], y - self.y[i]
        return float(self.s[i] + ex * c + ey * sn), float(-ex * sn + ey * c)

    def track(self, x: float, y: float, s_prev: float) -> tuple[float, float]:
        """``project`` for a point that moved a little since ``s_prev`` (the ego from one step to the next):
        walks from there to the nearest centreline sample instead of searching a window (the same sample
        while the point stays closer to the centreline than the tightest bend's radius)."""
        xs, ys, last = self._xs, self._ys, len(self._xs) - 1
        i = min(max(round(s_prev / STEP_M), 0), last)
        best = (xs[i] - x) ** 2 + (ys[i] - y) ** 2
        for step in (1, -1):
            while 0 <= i + step <= last and (d2 := (xs[i + step] - x) ** 2 + (ys[i + step] - y) ** 2) < best:
                i, best = i + step, d2
        c, sn = math.cos(self._hs[i]), math.sin(self._hs[i])
        ex, ey = x - xs[i], y - ys[i]
        return i * STEP_M + ex * c + ey * sn, -ex * sn + ey * c


def _ease_transitions(kappa: np.ndarray, ramp_m: float = 6.0) -> np.ndarray:
    """Blend curvature steps over ``ramp_m`` (a clothoid-like transition) so steering stays smooth."""
    n = max(1, int(ramp_m / STEP_M))
    kernel = np.ones(n) / n
    return np.convolve(np.pad(kappa, (n // 2, n - 1 - n // 2), mode="edge"), kernel, mode="valid")
