"""Forward pinhole camera for the embedded world: flat-shaded ground strips and upright boxes.

The ground is flat, so the projective map from the ground in front of the camera to the image is
one-to-one: a road strip that does not cross itself projects to a simple polygon and is filled in
one call. Actors are drawn far to near (painter's algorithm), which is exact for boxes standing on a
flat road. Output is uint8 BGRA like CARLA's raw image data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from simulator.actors import PEDESTRIAN, Actor
from simulator.base import CameraSpec
from simulator.road import HALF_WIDTH_M, SIDEWALK_WIDTH_M, Road

NEAR_M = 0.3
SHIFT = 4  # sub-pixel bits for OpenCV polygon coordinates
_SCALE = float(1 << SHIFT)
# Route offsets (m, relative to the ego's s) where the ground strips are sampled: dense near, sparse far.
_SAMPLE_OFFSETS = np.concatenate([np.arange(-6.0, 12.0, 1.0), np.arange(12.0, 32.0, 2.0), np.arange(32.0, 96.0, 4.0)])
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
    ((0, 1), "sidewalk", cv2.LINE_8),
    ((2, 3), "kerb", cv2.LINE_8),
    ((4, 5), "road", cv2.LINE_8),
    ((6, 7), "line", cv2.LINE_AA),
    ((8, 9), "line", cv2.LINE_AA),
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
        self._fog_alpha, self._fog_beta = self._make_fog()
        self.pose = (0.0, 0.0, 0.0)

    def set_vehicle_pose(self, x: float, y: float, yaw: float) -> None:
        """Vehicle centre on the ground (m) and yaw (rad, CCW); the mount is applied here."""
        c, s = math.cos(yaw), math.sin(yaw)
        self._c, self._s = c, s
        self.pose = (x + self.spec.x * c + self.spec.y * s, y + self.spec.x * s - self.spec.y * c, yaw)

    def to_camera(self, wx: np.ndarray, wy: np.ndarray, wz: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points -> OpenCV camera frame (x right, y down, z forward), metres."""
        px, py, _ = self.pose
        rx, ry = wx - px, wy - py
        fwd = rx * self._c + ry * self._s
        left = -rx * self._s + ry * self._c
        up = wz - self.spec.z
        zc = fwd * self._cp + up * self._sp
        yc = fwd * self._sp - up * self._cp
        return -left, yc, zc

    def project(self, xc: np.ndarray, yc: np.ndarray, zc: np.ndarray) -> np.ndarray:
        """Camera-frame points (zc > 0) -> pixel coordinates (..., 2), float."""
        out = np.empty(np.shape(zc) + (2,))
        inv = 1.0 / zc
        out[..., 0] = self.fx * xc * inv + self.cx
        out[..., 1] = self.fy * yc * inv + self.cy
        return out

    def project_world(self, wx, wy, wz=0.0) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (N, 2) and a mask of the points in front of the near plane."""
        xc, yc, zc = self.to_camera(np.asarray(wx, float), np.asarray(wy, float), wz)
        front = zc > NEAR_M
        return self.project(xc, yc, np.maximum(zc, NEAR_M)), front

    # ---- rendering -------------------------------------------------------------------------------

    def _shade(self, colour: tuple[int, int, int], factor: float = 1.0) -> tuple[float, float, float]:
        k = self.look.light * factor
        return tuple(min(255.0, c * k) for c in colour)  # type: ignore[return-value]

    def _make_background(self) -> np.ndarray:
        h, w = self.spec.height, self.spec.width
        rows = np.arange(h, dtype=np.float32)[:, None]
        t = np.clip((rows - (self.horizon_v - 2.5 * self.fy)) / max(1.0, 2.5 * self.fy), 0, 1)
        sky = (1 - t) * np.array(self._shade(self.look.sky_top), np.float32) + t * np.array(self._shade(self.look.sky_horizon), np.float32)
        rng = np.random.default_rng(self.look.texture_seed)
        grass = np.array(self._shade(self.look.grass), np.float32) * rng.uniform(0.85, 1.15, size=(h, w, 1)).astype(np.float32)
        below = (rows >= self.horizon_v)[:, :, None]
        bg = np.where(below, grass, sky[:, None, :])
        return np.clip(bg, 0, 255).astype(np.uint8)

    def _make_fog(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Per-row blend toward the horizon colour by the ground distance each row sees."""
        if self.look.fog_density_1pm <= 0.0:
            return None, None
        rows = np.arange(self.spec.height, dtype=np.float64)
        below = (rows - self.horizon_v) / self.fy  # tan of the angle below the horizon
        dist = np.where(below > 1e-3, self.spec.z / np.maximum(below, 1e-3), 1e4)
        keep = np.exp(-self.look.fog_density_1pm * dist).astype(np.float32)
        fog = np.array(self._shade(self.look.sky_horizon), np.float32)
        return keep[:, None, None], ((1.0 - keep)[:, None, None] * fog[None, None, :])

    def render(self, road: Road, ego_s: float, actors: list[Actor]) -> np.ndarray:
        """Image (H, W, 4) uint8 BGRA of the scene seen from the current vehicle pose."""
        img = self._background.copy()
        s = ego_s + _SAMPLE_OFFSETS
        s = s[(s >= 0) & (s <= road.length_m)]
        rows = self._ground_rows(road, s, _STRIP_OFFSETS)
        if rows is not None:
            for (i_left, i_right), colour, line_type in _STRIPS:
                poly = np.concatenate([rows[i_left], rows[i_right][::-1]])
                cv2.fillPoly(img, [poly], self._colours[colour], line_type, SHIFT)
        dashes = self._dashes(road, ego_s)
        if len(dashes):
            cv2.fillPoly(img, list(dashes), self._colours["centre_line"], cv2.LINE_AA, SHIFT)
        self._draw_actors(img, road, ego_s, actors)
        if self._fog_alpha is not None:
            img = (img * self._fog_alpha + self._fog_beta).astype(np.uint8)
        return cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)

    def _ground_rows(self, road: Road, s: np.ndarray, offsets: np.ndarray) -> np.ndarray | None:
        """Pixel polylines (fixed point) of the ground at lateral ``offsets`` over route samples ``s``.

        All rows keep the same run of samples: from the first sample where every row is in front of
        the near plane (entered by interpolation) to the first after it where one is not.
        """
        x, y, yaw = road.pose(s)
        xc, yc, zc = self.to_camera(x[None, :] - np.sin(yaw)[None, :] * offsets[:, None],
                                    y[None, :] + np.cos(yaw)[None, :] * offsets[:, None])
        front = (zc > NEAR_M).all(axis=0)
        if not front.any():
            return None
        i0 = int(np.argmax(front))
        after = ~front[i0:]
        i1 = i0 + (int(np.argmax(after)) if after.any() else len(after))
        lo = max(i0 - 1, 0)
        xc, yc, zc = xc[:, lo:i1].copy(), yc[:, lo:i1].copy(), zc[:, lo:i1].copy()
        if i0 > 0:  # enter at the near plane, row by row
            t = np.clip((NEAR_M - zc[:, 0]) / (zc[:, 1] - zc[:, 0]), 0.0, 1.0)
            for arr in (xc, yc, zc):
                arr[:, 0] += t * (arr[:, 1] - arr[:, 0])
            zc[:, 0] = np.maximum(zc[:, 0], NEAR_M)
        if zc.shape[1] < 2:
            return None
        return (self.project(xc, yc, zc) * _SCALE).astype(np.int32)

    def _dashes(self, road: Road, ego_s: float) -> np.ndarray:
        """(K, 4, 2) fixed-point quads of the broken centre line's dashes in view."""
        first = max(0, math.floor((ego_s - 6.0) / DASH_PERIOD_M))
        last = math.floor(min(ego_s + 70.0, road.length_m - DASH_M) / DASH_PERIOD_M)
        starts = np.arange(first, last + 1) * DASH_PERIOD_M
        if not len(starts):
            return starts
        s = np.stack([starts, starts + DASH_M, starts + DASH_M, starts], axis=1).ravel()
        d = np.tile([LINE_W_M / 2, LINE_W_M / 2, -LINE_W_M / 2, -LINE_W_M / 2], len(starts))
        x, y, _ = road.pose(s, d)
        xc, yc, zc = self.to_camera(x, y)
        keep = (zc.reshape(-1, 4) > NEAR_M).all(axis=1)
        px = self.project(xc, yc, np.maximum(zc, NEAR_M)).reshape(-1, 4, 2)[keep]
        return (px * _SCALE).astype(np.int32)

    def _draw_actors(self, img: np.ndarray, road: Road, ego_s: float, actors: list[Actor]) -> None:
        visible = [a for a in actors if -8.0 < a.s - ego_s < 90.0]
        if not visible:
            return
        cam_x, cam_y, _ = self.pose
        drawn = []
        for a in visible:
            foot = a.footprint(road)
            centre = foot.mean(axis=0)
            drawn.append((float(np.hypot(centre[0] - cam_x, centre[1] - cam_y)), a, foot))
        for _, a, foot in sorted(drawn, key=lambda t: -t[0]):
            xs = np.concatenate([foot[:, 0], foot[:, 0]])
            ys = np.concatenate([foot[:, 1], foot[:, 1]])
            zs = np.concatenate([np.zeros(4), np.full(4, a.height)])
            xc, yc, zc = self.to_camera(xs, ys, zs)
            if np.all(zc <= NEAR_M):
                continue
            px = self.project(xc, yc, np.maximum(zc, NEAR_M))
            hull = cv2.convexHull((px * _SCALE).astype(np.int32))
            cv2.fillConvexPoly(img, hull, self._shade(a.colour, 0.65), cv2.LINE_8, SHIFT)
            # the box face turned most toward the camera, in full light
            mids = (foot + np.roll(foot, -1, axis=0)) / 2.0
            k = int(np.argmin(np.hypot(mids[:, 0] - cam_x, mids[:, 1] - cam_y)))
            j = (k + 1) % 4
            face = px[[k, j, j + 4, k + 4]]
            if zc[k] > NEAR_M and zc[j] > NEAR_M:
                cv2.fillConvexPoly(img, (face * _SCALE).astype(np.int32), self._shade(a.colour), cv2.LINE_8, SHIFT)
            if a.kind == PEDESTRIAN:
                top = px[4:].mean(axis=0)
                radius = max(1, int(0.13 * self.fx / max(float(zc[4:].mean()), NEAR_M)))
                cv2.circle(img, (int(top[0]), int(top[1]) - radius), radius, self._shade((90, 140, 200)), -1)

