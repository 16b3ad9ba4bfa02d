"""Forward pinhole camera for the embedded world: flat-shaded ground strips and upright boxes.

The ground is flat, so the projective map from the ground in front of the camera to the image is
one-to-one: a road strip that does not cross itself projects to a simple polygon and is filled in
one call. Actors are drawn far to near (painter's algorithm), which is exact for boxes standing on a
flat road. Output is uint8 BGRA like CARLA's raw image data.

Cost: a road's strip edges and dashes are placed once (``_RoadGeometry``); a frame projects the few it
needs with one 3x4 matrix and fills each strip in one OpenCV call, so Python runs per strip, not per point.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from simulator.actors import PEDESTRIAN, Actor, box_corners
from simulator.base import CameraSpec
from simulator.road import HALF_WIDTH_M, SIDEWALK_WIDTH_M, STEP_M, Road

NEAR_M = 0.3
SHIFT = 4  # sub-pixel bits for OpenCV polygon coordinates
_SCALE = float(1 << SHIFT)
# Where the ground strips are sampled, relative to the ego's s: (from m, to m, every m), dense near, sparse far.
_SAMPLE_SECTIONS_M = ((-6.0, 12.0, 1.0), (12.0, 32.0, 2.0), (32.0, 96.0, 4.0))
LINE_W_M = 0.15
EDGE_LINE_D = HALF_WIDTH_M - 0.15
KERB_W_M = 0.25
DASH_M, DASH_PERIOD_M = 3.0, 9.0
_OUTER_M = HALF_WIDTH_M + SIDEWALK_WIDTH_M
# Lateral offsets (m, + left) of every strip edge; _STRIPS pairs them and is drawn in order.
_STRIP_OFFSETS = np.array([
    _OUTER_M, -_OUTER_M,
    HALF_WIDTH_M + KERB_W_M, -HALF_WIDTH_M - KERB_W_M,
    HALF_WIDTH_M, -HALF_WIDTH_M,
    EDGE_LINE_D + LINE_W_M / 2, EDGE_LINE_D - LINE_W_M / 2,
    -EDGE_LINE_D + LINE_W_M / 2, -EDGE_LINE_D - LINE_W_M / 2,
])
_STRIPS = [
    (((0, 1),), "sidewalk", cv2.LINE_8),
    (((2, 3),), "kerb", cv2.LINE_8),
    (((4, 5),), "road", cv2.LINE_8),
    (((6, 7), (8, 9)), "line", cv2.LINE_AA),  # both edge lines: one colour, one call
]


@dataclass(frozen=True)
class Look:
    """One episode's appearance (domain randomisation): BGR colours, light, fog, camera pitch jitter."""

    sky_top: tuple[int, int, int] = (200, 150, 90)
    sky_horizon: tuple[int, int, int] = (235, 215, 190)
    grass: tuple[int, int, int] = (60, 130, 70)
    road: tuple[int, int, int] = (95, 95, 95)
    sidewalk: tuple[int, int, int] = (150, 155, 160)
    kerb: tuple[int, int, int] = (200, 200, 200)
    line: tuple[int, int, int] = (235, 235, 235)
    centre_line: tuple[int, int, int] = (235, 235, 235)
    light: float = 1.0
    fog_density_1pm: float = 0.0
    pitch_jitter_deg: float = 0.0
    texture_seed: int = 0

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Look":
        def jitter(c: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
            return tuple(int(np.clip(v + rng.uniform(-amount, amount), 0, 255)) for v in c)  # type: ignore[return-value]

        grey = rng.uniform(60, 130)
        wet = rng.random() < 0.2
        yellow_centre = rng.random() < 0.3
        return cls(
            sky_top=jitter((200, 150, 90), 40),
            sky_horizon=jitter((235, 215, 190), 30),
            grass=jitter((60, 130, 70), 35),
            road=jitter((grey, grey, grey), 8) if not wet else jitter((grey * 0.6,) * 3, 5),
            sidewalk=jitter((150, 155, 160), 30),
            kerb=jitter((200, 200, 200), 25),
            line=jitter((235, 235, 235), 20),
            centre_line=(40, 200, 230) if yellow_centre else jitter((235, 235, 235), 20),
            light=float(rng.uniform(0.55, 1.25)),
            fog_density_1pm=float(rng.choice([0.0, 0.0, rng.uniform(0.005, 0.04)])),
            pitch_jitter_deg=float(rng.uniform(-1.5, 1.5)),
            texture_seed=int(rng.integers(2**31)),
        )




def _sample_table() -> tuple[int, list[list[int]]]:
    """Ground sample indices relative to the ego's road sample, per phase of that sample in the period.

    Each section samples the road at multiples of its spacing, fixed to the road rather than to the ego,
    so the polygons' corners stay put on the ground while the ego moves (no crawling of curved edges).
    """
    every = [round(e / STEP_M) for _, _, e in _SAMPLE_SECTIONS_M]
    period = math.lcm(*every)
    table = [[m - p for (lo, hi, _), k in zip(_SAMPLE_SECTIONS_M, every)
              for m in range(p + round(lo / STEP_M), p + round(hi / STEP_M)) if m % k == 0]
             for p in range(period)]
    return period, table


_SAMPLE_PERIOD, _SAMPLE_TABLE = _sample_table()
_SAMPLE_ARRAYS = [np.array(t) for t in _SAMPLE_TABLE]
_POLY_ROWS = [pair for pairs, _, _ in _STRIPS for pair in pairs]  # every strip polygon's edge rows, in order


@lru_cache(maxsize=None)
def _poly_index(samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Fancy index turning (samples, edges, 2) edge polylines into (polygons, 2 * samples, 2) outlines:
    the left edge out, the right edge back."""
    there, back = list(range(samples)), list(range(samples - 1, -1, -1))
    return (np.array([there + back for _ in _POLY_ROWS]),
            np.array([[left] * samples + [right] * samples for left, right in _POLY_ROWS]))


class _RoadGeometry:
    """What the camera draws of one road, in homogeneous ground coordinates (x, y, 1), computed once:
    the strip edges at every centreline sample (rows of ``_STRIP_OFFSETS``) and the dashes' corners."""

    def __init__(self, road: Road) -> None:
        self.road = road
        x, y, yaw = road.x[:, None], road.y[:, None], road.heading[:, None]
        ex, ey = x - np.sin(yaw) * _STRIP_OFFSETS, y + np.cos(yaw) * _STRIP_OFFSETS
        self.edges = np.stack([ex, ey, np.ones_like(ex)], axis=-1)  # (samples, edges, 3): a sample's in one place
        starts = np.arange(0.0, road.length_m - DASH_M + 1e-9, DASH_PERIOD_M)
        s = np.stack([starts, starts + DASH_M, starts + DASH_M, starts], axis=1)
        d = np.array([LINE_W_M / 2, LINE_W_M / 2, -LINE_W_M / 2, -LINE_W_M / 2])
        dx, dy, _ = road.pose(s, d)
        self.dashes = np.stack([dx, dy, np.ones_like(dx)], axis=-1)  # (dashes, 4, 3)


class Camera:
    """Projects world points into the image of a ``CameraSpec`` mounted on a vehicle."""

    def __init__(self, spec: CameraSpec, look: Look = Look()) -> None:
        self.spec, self.look = spec, look
        self.fx, self.fy, self.cx, self.cy = spec.intrinsics()
        self.pitch = math.radians(spec.pitch + look.pitch_jitter_deg)
        self._cp, self._sp = math.cos(self.pitch), math.sin(self.pitch)
        self.horizon_v = self.cy + self.fy * math.tan(self.pitch)
        self._colours = {name: self._shade(getattr(look, name)) for name in ("sidewalk", "kerb", "road", "line", "centre_line")}
        self._background = self._make_background()
        self._fog = self._make_fog()
        self._geometry: _RoadGeometry | None = None
        self.set_vehicle_pose(0.0, 0.0, 0.0)

    def set_vehicle_pose(self, x: float, y: float, yaw: float) -> None:
        """Vehicle centre on the ground (m) and yaw (rad, CCW); the mount is applied here.

        Keeps the 3x4 matrix from homogeneous world points (x, y, z, 1) to (u*zc, v*zc, zc), u and v in
        OpenCV's fixed point (pixels * 2**SHIFT), zc the depth along the optical axis: the map is linear,
        so one product projects a batch and lines clip at the near plane by plain interpolation.
        """
        c, s = math.cos(yaw), math.sin(yaw)
        self.pose = (x + self.spec.x * c + self.spec.y * s, y + self.spec.x * s - self.spec.y * c, yaw)
        # rows: camera x (right), y (down), z (forward) of a world offset from the camera (dx, dy, dz)
        rot = ((s, -c, 0.0), (c * self._sp, s * self._sp, -self._cp), (c * self._cp, s * self._cp, self._sp))
        centre = (self.pose[0], self.pose[1], self.spec.z)
        right, down, forward = ((*r, -sum(a * b for a, b in zip(r, centre))) for r in rot)
        rows = ([_SCALE * (self.fx * a + self.cx * b) for a, b in zip(right, forward)],
                [_SCALE * (self.fy * a + self.cy * b) for a, b in zip(down, forward)], forward)
        self._to_fixed = np.array(rows)
        self._ground_to_fixed = np.array([[r[k] for r in rows] for k in (0, 1, 3)])  # (x, y, 1) rows times it

    def project_world(self, wx, wy, wz=0.0) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (..., 2) and a mask of the points in front of the near plane."""
        wx, wy, wz = np.broadcast_arrays(np.asarray(wx, float), np.asarray(wy, float), np.asarray(wz, float))
        h = np.stack([wx, wy, wz, np.ones_like(wx)], axis=-1) @ self._to_fixed.T
        return h[..., :2] / np.maximum(h[..., 2:], NEAR_M) / _SCALE, h[..., 2] > NEAR_M

    # ---- rendering -------------------------------------------------------------------------------

    def _shade(self, colour: tuple[int, int, int], factor: float = 1.0) -> tuple[float, float, float, float]:
        """BGRA drawing colour of ``colour`` in this look's light (opaque)."""
        k = self.look.light * factor
        return tuple(min(255.0, c * k) for c in colour) + (255.0,)  # type: ignore[return-value]

    def _make_background(self) -> np.ndarray:
        h, w = self.spec.height, self.spec.width
        rows = np.arange(h, dtype=np.float32)[:, None]
        t = np.clip((rows - (self.horizon_v - 2.5 * self.fy)) / max(1.0, 2.5 * self.fy), 0, 1)
        sky = (1 - t) * np.array(self._shade(self.look.sky_top), np.float32) + t * np.array(self._shade(self.look.sky_horizon), np.float32)
        rng = np.random.default_rng(self.look.texture_seed)
        grass = np.array(self._shade(self.look.grass), np.float32) * rng.uniform(0.85, 1.15, size=(h, w, 1)).astype(np.float32)
        grass[:, :, 3] = 255.0
        below = (rows >= self.horizon_v)[:, :, None]
        bg = np.where(below, grass, sky[:, None, :])
        return np.clip(bg, 0, 255).astype(np.uint8)

    def _make_fog(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-row blend toward the horizon colour by the ground distance each row sees, as a uint8 scale
        (x / 255) and offset image pair for two saturating OpenCV calls; alpha stays opaque."""
        if self.look.fog_density_1pm <= 0.0:
            return None
        rows = np.arange(self.spec.height, dtype=np.float64)
        below = (rows - self.horizon_v) / self.fy  # tan of the angle below the horizon
        dist = np.where(below > 1e-3, self.spec.z / np.maximum(below, 1e-3), 1e4)
        keep = np.exp(-self.look.fog_density_1pm * dist)[:, None, None]
        fog = np.array(self._shade(self.look.sky_horizon))
        channel_is_colour = np.array([1.0, 1.0, 1.0, 0.0])
        scale = np.where(channel_is_colour > 0, keep * 255.0, 255.0)
        shape = (self.spec.height, self.spec.width, 4)
        return (np.ascontiguousarray(np.broadcast_to(np.round(scale).astype(np.uint8), shape)),
                np.ascontiguousarray(np.broadcast_to(np.round((1.0 - keep) * fog * channel_is_colour).astype(np.uint8), shape)))

    def render(self, road: Road, ego_s: float, actors: list[Actor]) -> np.ndarray:
        """Image (H, W, 4) uint8 BGRA of the scene seen from the current vehicle pose."""
        if self._geometry is None or self._geometry.road is not road:
            self._geometry = _RoadGeometry(road)
        img = self._background.copy()
        polys = self._ground_polygons(self._geometry, ego_s)
        if polys is not None:
            k = 0
            for pairs, colour, line_type in _STRIPS:
                cv2.fillPoly(img, list(polys[k:k + len(pairs)]), self._colours[colour], line_type, SHIFT)
                k += len(pairs)
        dashes = self._dashes(self._geometry, ego_s)
        if len(dashes):
            cv2.fillPoly(img, list(dashes), self._colours["centre_line"], cv2.LINE_AA, SHIFT)
        self._draw_actors(img, road, ego_s, actors)
        if self._fog is not None:
            cv2.multiply(img, self._fog[0], dst=img, scale=1.0 / 255.0)
            cv2.add(img, self._fog[1], dst=img)
        return img

    def _ground_polygons(self, geometry: _RoadGeometry, ego_s: float) -> np.ndarray | None:
        """(polygons, points, 2) fixed-point outlines of the strips (``_POLY_ROWS``) around ``ego_s``.

        All edges keep the same run of samples: from the first sample where every edge is in front of
        the near plane (entered by interpolation) to the first after it where one is not.
        """
        period, phase = divmod(int(ego_s / STEP_M), _SAMPLE_PERIOD)
        base = period * _SAMPLE_PERIOD
        lo = bisect_left(_SAMPLE_TABLE[phase], -base)  # the table is sorted: cut it to the road's samples
        hi = bisect_left(_SAMPLE_TABLE[phase], len(geometry.edges) - base)
        h = geometry.edges[_SAMPLE_ARRAYS[phase][lo:hi] + base] @ self._ground_to_fixed  # (samples, edges, 3)
        front = (h[:, :, 2] > NEAR_M).all(axis=1).tolist()
        if True not in front:
            return None
        i0 = front.index(True)
        i1 = front.index(False, i0) if False in front[i0:] else len(front)
        h = h[max(i0 - 1, 0):i1]
        if i0 > 0:  # enter at the near plane, edge by edge
            t = np.maximum((NEAR_M - h[0, :, 2]) / (h[1, :, 2] - h[0, :, 2]), 0.0)  # < 1: the next is in front
            h[0] += t[:, None] * (h[1] - h[0])
        if len(h) < 2:
            return None
        edges = (h[:, :, :2] / h[:, :, 2:]).astype(np.int32)
        return edges[_poly_index(len(h))]

    def _dashes(self, geometry: _RoadGeometry, ego_s: float) -> np.ndarray:
        """(K, 4, 2) fixed-point quads of the broken centre line's dashes in view."""
        first = max(0, math.floor((ego_s - 6.0) / DASH_PERIOD_M))
        last = math.floor((ego_s + 70.0) / DASH_PERIOD_M)
        h = geometry.dashes[first:max(first, last + 1)] @ self._ground_to_fixed
        h = h[(h[:, :, 2] > NEAR_M).all(axis=1)]
        return (h[:, :, :2] / h[:, :, 2:]).astype(np.int32)

    def _draw_actors(self, img: np.ndarray, road: Road, ego_s: float, actors: list[Actor]) -> None:
        """Boxes far to near: the hull in shade, the face turned to the camera lit, a pedestrian's head."""
        cam_x, cam_y, _ = self.pose
        boxes = []
        for a in actors:
            if -8.0 < a.s - ego_s < 90.0:  # early cull: nothing beyond is in view
                x, y, yaw = road.pose_at(a.s, a.d)
                foot = box_corners(x, y, yaw + a.heading_offset, a.length, a.width)
                boxes.append((math.hypot(x - cam_x, y - cam_y), a, foot))
        for _, a, foot in sorted(boxes, key=lambda t: -t[0]):
            bottom = foot @ self._ground_to_fixed[:2] + self._ground_to_fixed[2]
            h = np.concatenate([bottom, bottom + a.height * self._to_fixed[:, 2]])  # the map is linear in z
            zc = h[:, 2]
            if np.all(zc <= NEAR_M):
                continue
            fixed = (h[:, :2] / np.maximum(zc, NEAR_M)[:, None]).astype(np.int32)
            cv2.fillConvexPoly(img, cv2.convexHull(fixed), self._shade(a.colour, 0.65), cv2.LINE_8, SHIFT)
            corners = foot.tolist()  # the face whose edge midpoint is nearest the camera, in full light
            k = min(range(4), key=lambda i: math.hypot(corners[i][0] + corners[i - 3][0] - 2 * cam_x,
                                                       corners[i][1] + corners[i - 3][1] - 2 * cam_y))
            j = (k + 1) % 4
            if zc[k] > NEAR_M and zc[j] > NEAR_M:
                cv2.fillConvexPoly(img, fixed[[k, j, j + 4, k + 4]], self._shade(a.colour), cv2.LINE_8, SHIFT)
            if a.kind == PEDESTRIAN:
                top = fixed[4:].mean(axis=0) / _SCALE
                radius = max(1, int(0.13 * self.fx / max(float(zc[4:].mean()), NEAR_M)))
                cv2.circle(img, (int(top[0]), int(top[1]) - radius), radius, self._shade((90, 140, 200)), -1)

