"""Build a ``World`` by name, so every command takes ``--world embedded|carla`` the same way."""

from __future__ import annotations

from dataclasses import dataclass, field

from metasteer.preprocess import INPUT_SIZE_PX
from simulator.base import World, pilotnet_camera

WORLDS = ("embedded", "carla")


@dataclass(frozen=True)
class WorldConfig:
    """Which world to drive in, and what it shows the camera."""

    world: str = field(default="embedded", metadata={"help": "world backend", "choices": WORLDS})
    host: str = field(default="127.0.0.1", metadata={"help": "CARLA server host (--world carla)"})
    port: int = field(default=2000, metadata={"range": (1, 65535), "help": "CARLA server port (--world carla)"})
    carla_timeout_s: float = field(default=10.0, metadata={"range": (0.1, None), "help": "CARLA client timeout, seconds"})
    width: int = field(default=INPUT_SIZE_PX[0], metadata={"range": (8, 4096), "help": "rendered frame width, px"})
    height: int = field(default=INPUT_SIZE_PX[1], metadata={"range": (8, 4096), "help": "rendered frame height, px"})
    abnormal_rate: float = field(default=0.03, metadata={"range": (0.0, 1.0), "help": "target share of abnormal (rare-scene) frames"})
    target_speed_mps: float = field(default=8.0, metadata={"range": (0.5, 30.0), "help": "cruise speed, m/s"})


def make_world(cfg: WorldConfig) -> World:
    camera = pilotnet_camera(cfg.width, cfg.height)
    if cfg.world == "embedded":
        from simulator.embedded import embedded_world

        return embedded_world(cfg.abnormal_rate, camera, target_speed_mps=cfg.target_speed_mps)
    if cfg.world == "carla":
        from simulator.carla_world import CarlaConfig, CarlaWorld

        return CarlaWorld(CarlaConfig(host=cfg.host, port=cfg.port, timeout_s=cfg.carla_timeout_s, camera=camera,
                                      abnormal_rate=cfg.abnormal_rate, target_speed_mps=cfg.target_speed_mps))
    raise ValueError(f"unknown world {cfg.world!r}; choose one of {WORLDS}")
