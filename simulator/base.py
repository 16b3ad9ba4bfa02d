"""The one ``World`` interface every backend (embedded, CARLA) implements, and the data it speaks.

Conventions (SI throughout): metres, seconds, radians unless a name says otherwise.
Steering follows CARLA: ``steer`` in [-1, 1], +1 = full right, as a fraction of the vehicle's
maximum front-wheel angle.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields

import numpy as np

from metasteer.infractions import EpisodeMetrics, InfractionEvent
from metasteer.preprocess import INPUT_SIZE_PX, SOURCE_SIZE_PX, PreprocessSpec

FIXED_DELTA_S = 0.05  # CARLA synchronous mode at 20 Hz


@dataclass(frozen=True)
class CameraSpec:
    """A forward RGB camera, named as CARLA's ``sensor.camera.rgb`` blueprint attributes.

    ``fov``: horizontal field of view in degrees. Mount (``x``, ``y``, ``z``) in metres in CARLA's
    vehicle frame (x forward, y right, z up, from the vehicle centre on the ground);
    ``pitch`` in degrees, positive = looking up.
    ``crop_top`` / ``crop_bottom``: the horizontal band of the full frame, as fractions of its
    height, that this camera renders directly at ``output_size``; it equals cropping the full
    frame and resizing it, which is what the runtime preprocessing does to a bridge image.
    """

    image_size_x: int = SOURCE_SIZE_PX[0]
    image_size_y: int = SOURCE_SIZE_PX[1]
    fov: float = 90.0
    x: float = 2.0
    y: float = 0.0
    z: float = 1.6
    pitch: float = 0.0
    crop_top: float = 0.0
    crop_bottom: float = 1.0
    output_size: tuple[int, int] | None = None  # (width, height) of the rendered band

    @property
    def width(self) -> int:
        return self.output_size[0] if self.output_size else self.image_size_x

    @property
    def height(self) -> int:
        return self.output_size[1] if self.output_size else self.image_size_y

    def intrinsics(self) -> tuple[float, float, float, float]:
        """Return (fx, fy, cx, cy) in pixels of the rendered image (after crop and resize)."""
        f_full = self.image_size_x / (2.0 * math.tan(math.radians(self.fov) / 2.0))
        band_px = (self.crop_bottom - self.crop_top) * self.image_size_y
        sx = self.width / self.image_size_x
        sy = self.height / band_px
        cy_full = self.image_size_y / 2.0 - self.crop_top * self.image_size_y
        return f_full * sx, f_full * sy, self.image_size_x / 2.0 * sx, cy_full * sy


def pilotnet_camera(width: int = INPUT_SIZE_PX[0], height: int = INPUT_SIZE_PX[1]) -> CameraSpec:
    """The training camera: the 800x600 fov-90 bridge camera's road band, rendered at width x height;
    the band is the runtime's ``PreprocessSpec.for_size`` (one definition of the input contract)."""
    spec = PreprocessSpec.for_size(width, height)
    return CameraSpec(crop_top=spec.crop_top, crop_bottom=spec.crop_bottom, output_size=(width, height))


@dataclass
class VehicleControl:
    """CARLA ``VehicleControl``: throttle [0, 1], steer [-1, 1] (+ right), brake [0, 1]."""

    throttle: float = 0.0
    steer: float = 0.0
    brake: float = 0.0


@dataclass
class SceneFeatures:
    """Per-frame scene description: the inputs of a learned loss weighting. Units in each comment.

    Distances are measured along the route from the ego's front bumper; absent objects read as
    ``FAR_M``. Lateral values are positive to the left.
    """

    ped_present: float = 0.0  # 1 if a pedestrian is on or beside the road within FAR_M ahead
    ped_distance_m: float = 0.0  # m along the route to the nearest such pedestrian
    ped_lateral_m: float = 0.0  # m, pedestrian offset from the ego lane centre
    obstacle_present: float = 0.0  # 1 if a parked car / static obstacle intrudes the ego lane ahead
    obstacle_distance_m: float = 0.0  # m along the route to it
    vehicle_ahead_distance_m: float = 0.0  # m to the nearest vehicle in the ego lane ahead
    curvature_ahead_1pm: float = 0.0  # 1/m, largest-magnitude road curvature 0..20 m ahead (+ left)
    lane_offset_m: float = 0.0  # m, ego centre from its lane centre (+ left)
    heading_error_rad: float = 0.0  # rad, ego heading minus road heading (+ left)
    speed_mps: float = 0.0  # m/s
    steer_noise: float = 0.0  # steer units injected on top of the expert while recording
    abnormal: float = 0.0  # 1 for a rare scene: pedestrian / obstacle in path, sharp bend

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def as_array(self) -> np.ndarray:
        return np.array([getattr(self, n) for n in self.names()], dtype=np.float32)


FAR_M = 50.0
SCENE_CATEGORIES = ("normal", "pedestrian", "obstacle", "sharp_bend")


@dataclass
class Observation:
    """What a world returns after reset / step.

    ``image``: uint8 BGRA (H, W, 4), CARLA's raw layout (``None`` when rendering was skipped).
    ``expert_control``: what the expert would command now; its steer is the label. ``events``: infractions whose onset was this step.
    """

    image: np.ndarray
    speed_mps: float
    time_s: float
    features: SceneFeatures
    category: str
    expert_control: VehicleControl
    route_completion: float
    events: list[InfractionEvent] = field(default_factory=list)
    done: bool = False


class World(ABC):
    """A driving world stepped at ``FIXED_DELTA_S``. Every layer above is backend-agnostic."""

    camera: CameraSpec
    metrics: EpisodeMetrics

    @abstractmethod
    def reset(self, seed: int) -> Observation:
        """Start a new episode on a route drawn from ``seed`` and return its first observation."""

    @abstractmethod
    def step(self, control: VehicleControl, render: bool = True) -> Observation:
        """Apply ``control`` for one fixed step and return the new observation.

        ``render=False`` lets a backend skip drawing the camera when the frame is not needed.
        """

    def close(self) -> None:
        """Release everything the world holds (actors, sockets); safe to call twice."""

    def __enter__(self) -> "World":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
