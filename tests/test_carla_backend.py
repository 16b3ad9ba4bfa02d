"""CARLA backend: the real client's no-server error, and the backend's protocol against a
labelled FAKE server (tests/fakes/fake_carla.py) — no CARLA server can run here."""

import socket

import numpy as np
import pytest

from metasteer.infractions import EventType
from simulator.base import VehicleControl
from simulator.carla_world import CarlaConfig, CarlaWorld
from simulator.factory import WorldConfig, make_world
from tests.fakes import fake_carla


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_server_fails_with_host_port_and_how_to_start():
    pytest.importorskip("carla")
    port = _free_port()
    with pytest.raises(ConnectionError) as err:
        make_world(WorldConfig(world="carla", host="127.0.0.1", port=port, carla_timeout_s=1.0))
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message
    assert "CarlaUE4.sh" in message


def _fake_world(**overrides) -> CarlaWorld:
    return CarlaWorld(CarlaConfig(abnormal_rate=0.3, npc_vehicles=2, **overrides), carla_module=fake_carla)


def test_episode_protocol_against_fake_server():
    world = _fake_world()
    server = fake_carla.Client.world
    obs = world.reset(seed=3)
    assert server.settings.synchronous_mode and server.settings.fixed_delta_seconds == 0.05
    cams = [a for a in server.spawned if a.type_id == "sensor.camera.rgb"]
    assert len(cams) == 1 and cams[0].attributes == {"image_size_x": "800", "image_size_y": "600", "fov": "90.0"}
    assert {a.type_id for a in server.spawned} >= {"sensor.other.collision", "sensor.other.lane_invasion", "vehicle.tesla.model3"}
    assert obs.image.shape == (66, 200, 4) and obs.image.dtype == np.uint8

    walker = next(a for a in server.spawned if a.type_id.startswith("walker.") or a.type_id.startswith("vehicle.audi"))
    server.pending += [("collision", walker), ("lane", [1, 8])]
    obs = world.step(VehicleControl(throttle=0.5, steer=2.0))
    ego = server.spawned[0]
    assert ego.control.steer == 1.0  # clamped: CARLA forwards commands unclamped
    kinds = [e.type for e in obs.events]
    assert EventType.LANE_INVASION in kinds and any(k.is_collision for k in kinds)
    lane = next(e for e in obs.events if e.type == EventType.LANE_INVASION)
    assert lane.to_dict()["markings"] == ["Broken", "Grass"]
    assert obs.done  # a collision ends the episode, as on the Leaderboard

    spawned = {a.id for a in server.spawned}
    world.close()
    assert set(server.destroyed) == spawned
    assert server.settings.synchronous_mode is False  # the server's own settings are back


def test_failure_half_way_through_reset_destroys_what_was_spawned():
    world = _fake_world()
    server = fake_carla.Client.world
    server.fail_on_spawn = "sensor.camera.rgb"
    with pytest.raises(RuntimeError, match="FAKE: spawn of sensor.camera.rgb failed"):
        world.reset(seed=1)
    assert server.spawned and set(server.destroyed) == {a.id for a in server.spawned}
    assert server.settings.synchronous_mode is False
