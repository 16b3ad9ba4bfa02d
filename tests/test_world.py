"""The embedded world: determinism, camera geometry, the expert, rare scenes, infractions."""

import math

import numpy as np
import pytest

from metasteer.infractions import BROKEN, EventType
from metasteer.preprocess import PreprocessSpec
from simulator.actors import PEDESTRIAN, Actor, ScenarioConfig
from simulator.base import CameraSpec, VehicleControl
from simulator.camera import Camera
from simulator.embedded import EmbeddedConfig, EmbeddedWorld
from simulator.road import EGO_LANE_D

QUIET = ScenarioConfig(pedestrians_per_km=0, obstacles_per_km=0, parked_cars_per_km=0, sharp_bends_per_km=0,
                       lead_vehicles_per_km=0, oncoming_vehicles_per_km=0)


def drive(world: EmbeddedWorld, seed: int, steps: int, policy=None, render: bool = False):
    obs = world.reset(seed)
    out = [obs]
    for _ in range(steps):
        if obs.done:
            break
        obs = world.step(policy(obs) if policy else obs.expert_control, render=render)
        out.append(obs)
    return out


def test_same_seed_same_episode_and_other_seed_differs():
    cfg = EmbeddedConfig(scenarios=ScenarioConfig.from_abnormal_rate(0.2))
    a = drive(EmbeddedWorld(cfg), 7, 300, render=True)
    b = drive(EmbeddedWorld(cfg), 7, 300, render=True)
    c = drive(EmbeddedWorld(cfg), 8, 300, render=True)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert [x.expert_control.steer for x in a] == [y.expert_control.steer for y in b]
    assert [x.features for x in a] == [y.features for y in b]
    assert not np.array_equal(a[-1].image, c[-1].image)


def test_frames_are_bgra_uint8_at_the_camera_size():
    obs = EmbeddedWorld().reset(0)
    assert obs.image.shape == (66, 200, 4) and obs.image.dtype == np.uint8
    assert (obs.image[:, :, 3] == 255).all()


@pytest.mark.parametrize("seed", [0, 5])
def test_training_camera_renders_what_the_runtime_cuts_from_a_bridge_frame(seed):
    """One world state through both paths: the 200x66 training camera, and the 800x600 bridge camera
    cut by ``metasteer.preprocess`` (bgra8, bgr8 and rgb8 alike): the pixels agree closely."""
    from metasteer.preprocess import camera_band, crop_band, to_bgr, to_tensor

    world = EmbeddedWorld(EmbeddedConfig(scenarios=ScenarioConfig.from_abnormal_rate(0.3)))
    obs = world.reset(seed)
    for _ in range(120):
        obs = world.step(obs.expert_control, render=False)
    band = world.step(obs.expert_control).image[:, :, :3]
    bridge = Camera(CameraSpec(), world.look)
    bridge.set_vehicle_pose(world.ego.x, world.ego.y, world.ego.yaw)
    full = bridge.render(world.road, world.ego_s, world.actors)  # (600, 800, 4) BGRA
    spec = PreprocessSpec()
    cut = crop_band(to_bgr(full, "bgra8"), spec)
    diff = np.abs(cut.astype(float) - band.astype(float))
    assert diff.mean() < 8.0 and np.percentile(diff, 50) < 6.0  # measured 2.7 and 3.3 mean: thin lines alias differently
    x = to_tensor(band)
    for encoding, frame in (("bgra8", full), ("bgr8", full[:, :, :3].copy()), ("rgb8", full[:, :, 2::-1].copy())):
        band_runtime = camera_band(frame, encoding, spec)  # what the node does: crop and resize first, colours last
        assert np.array_equal(band_runtime, crop_band(np.ascontiguousarray(to_bgr(frame, encoding)), spec))
        assert np.abs(to_tensor(band_runtime) - x).mean() < 10.0 / 127.5


def test_band_cut_by_halving_stays_within_one_level_of_one_area_resize():
    """The 800x600 band is 4x the input: cut in two exact 2x2 halvings (fast path), it stays within one
    level of OpenCV's single area resize; a 6x band is halved once, then area-resized 3x; a band that is
    no even multiple takes the single resize exactly."""
    import cv2

    from metasteer.preprocess import crop_band

    rng = np.random.default_rng(0)
    spec = PreprocessSpec()
    for height, width, halvings in ((600, 800, 2), (900, 1200, 1), (450, 600, 0)):
        frame = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        top, bottom = round(spec.crop_top * height), round(spec.crop_bottom * height)
        direct = cv2.resize(frame[top:bottom], (spec.width, spec.height), interpolation=cv2.INTER_AREA).astype(int)
        cut = crop_band(frame, spec).astype(int)
        assert cut.shape == (spec.height, spec.width, 4)
        assert np.abs(cut - direct).max() <= (1 if halvings else 0)
        assert (cut != direct).any() == bool(halvings)  # random pixels: rounding between halvings shows


def test_point_straight_ahead_lands_on_the_principal_point_and_centre_column():
    spec = CameraSpec(image_size_x=800, image_size_y=600, fov=90.0, x=2.0, z=1.6)
    cam = Camera(spec)
    cam.set_vehicle_pose(10.0, 5.0, math.radians(30))
    ahead = 25.0 + spec.x
    px, front = cam.project_world(10.0 + ahead * math.cos(math.radians(30)), 5.0 + ahead * math.sin(math.radians(30)), spec.z)
    assert front.all()
    assert px[0] == pytest.approx(400.0, abs=1e-6) and px[1] == pytest.approx(300.0, abs=1e-6)


def test_actor_straight_ahead_is_drawn_around_the_image_centre():
    world = EmbeddedWorld(EmbeddedConfig(camera=CameraSpec(), scenarios=QUIET, randomise_look=False))
    world.reset(1)
    empty = world.cam.render(world.road, world.ego_s, [])
    world.actors = [Actor(1, "static", world.ego_s + 15.0, world.ego_d, 1.0, 1.0, 1.0, (255, 0, 255))]
    world.road.curvature[:] = 0  # straight for the check below
    image = world.cam.render(world.road, world.ego_s, world.actors)
    changed = np.argwhere(np.any(image != empty, axis=2))
    assert len(changed) > 100
    assert changed[:, 1].mean() == pytest.approx(400, abs=25)


def test_lane_lines_converge_toward_the_horizon():
    world = EmbeddedWorld(EmbeddedConfig(camera=CameraSpec(), scenarios=QUIET, randomise_look=False))
    obs = world.reset(2)
    line = np.array(world.look.line, dtype=int)
    bgr = obs.image[:, :, :3].astype(int)
    is_line = np.abs(bgr - line).sum(axis=2) < 30
    widths = {}
    for row in (415, 385, 355, 325):  # rows where both edge lines are inside the frame
        cols = np.flatnonzero(is_line[row])
        assert len(cols) >= 2, row
        widths[row] = cols.max() - cols.min()
    rows = sorted(widths, reverse=True)
    assert all(widths[a] > widths[b] for a, b in zip(rows, rows[1:]))
    assert world.cam.horizon_v == pytest.approx(300, abs=15)


def test_expert_drives_long_normal_routes_without_infractions():
    world = EmbeddedWorld(EmbeddedConfig(scenarios=ScenarioConfig(pedestrians_per_km=0, obstacles_per_km=0, parked_cars_per_km=0)))
    for seed in range(3):
        drive(world, seed, 10_000)
        m = world.metrics.summary()
        assert m["route_completion"] == 1.0 and m["distance_m"] > 900
        assert m["infractions"] == 0 and m["collisions"] == 0, world.metrics.events


def test_rare_scenes_produce_large_evasive_labels_and_are_avoided():
    world = EmbeddedWorld(EmbeddedConfig(scenarios=ScenarioConfig.from_abnormal_rate(0.25)))
    steer = {"normal": [], "abnormal": []}
    for seed in range(4):
        for obs in drive(world, seed, 10_000):
            steer["abnormal" if obs.features.abnormal else "normal"].append(abs(obs.expert_control.steer))
        assert world.metrics.collisions == 0
    normal, abnormal = np.array(steer["normal"]), np.array(steer["abnormal"])
    assert len(abnormal) > 0.1 * (len(normal) + len(abnormal))
    assert np.percentile(abnormal, 95) > 3 * np.percentile(normal, 95)
    assert abnormal.max() > 0.3


def test_driving_into_a_pedestrian_raises_a_pedestrian_collision():
    world = EmbeddedWorld(EmbeddedConfig(scenarios=QUIET))
    world.reset(4)
    ped = Actor(77, PEDESTRIAN, world.ego_s + 25.0, EGO_LANE_D, 0.5, 0.6, 1.8, (0, 0, 255), target_d=EGO_LANE_D)
    world.actors = [ped]
    blind = world.expert.steer  # lane keeping that never plans around anything
    events = []
    for _ in range(200):
        obs = world.step(VehicleControl(0.4, blind(world.ego, world.ego_s, []), 0.0), render=False)
        events += obs.events
        if obs.done:
            break
    hits = [e for e in events if e.type == EventType.COLLISION_PEDESTRIAN]
    assert len(hits) == 1 and hits[0].other_actor_id == 77 and hits[0].impulse_n_s > 0
    assert obs.done and world.metrics.summary()["collisions_pedestrian"] == 1


def test_crossing_the_centre_line_raises_a_broken_lane_invasion():
    world = EmbeddedWorld(EmbeddedConfig(scenarios=QUIET))
    world.reset(5)
    events = []
    for _ in range(100):
        obs = world.step(VehicleControl(0.4, -0.04, 0.0), render=False)  # a slow drift to the left
        events += obs.events
        if obs.done:
            break
    lane = [e for e in events if e.type == EventType.LANE_INVASION]
    assert lane and lane[0].markings == (BROKEN,) and not lane[0].justified
    assert world.metrics.summary()["lane_invasions"] >= 1


def test_tracking_the_ego_finds_the_same_route_coordinates_as_the_window_search():
    """``Road.track`` walks from the last s instead of searching a window: for points up to the episode's
    lateral limit, moved up to a few metres, it lands on the same (s, d) as ``Road.project``."""
    from simulator.embedded import LOST_OFFSET_M

    world = EmbeddedWorld(EmbeddedConfig(scenarios=ScenarioConfig(sharp_bends_per_km=3.0)))
    world.reset(3)
    road, rng = world.road, np.random.default_rng(0)
    for s in rng.uniform(0.0, road.length_m, 400):
        d = rng.uniform(-LOST_OFFSET_M, LOST_OFFSET_M)
        x, y, _ = road.pose_at(s, d)
        s_prev = s + rng.uniform(-3.0, 3.0)
        assert road.track(x, y, s_prev) == pytest.approx(road.project(x, y, s_hint=s_prev), abs=1e-9)
    assert road.pose_at(12.3, 1.5) == pytest.approx(tuple(float(v) for v in road.pose(12.3, 1.5)))


def test_collisions_are_found_wherever_the_boxes_overlap():
    """The world culls its contact tests by route distance: on straights and sharp bends, for any heading,
    it reports a collision exactly when the two boxes overlap."""
    from simulator.actors import box_corners, boxes_overlap
    from simulator.vehicle import VehicleState

    world = EmbeddedWorld(EmbeddedConfig(scenarios=ScenarioConfig(sharp_bends_per_km=3.0)))
    world.reset(3)
    road, vp, rng = world.road, world.config.vehicle, np.random.default_rng(1)
    overlaps = 0
    for _ in range(2000):
        s, d = rng.uniform(10.0, road.length_m - 10.0), rng.uniform(-5.0, 5.0)
        x, y, yaw = road.pose_at(s, d)
        world.ego = VehicleState(x, y, yaw + rng.uniform(-0.6, 0.6), 5.0)
        world.ego_s, world.ego_d = road.track(x, y, s)
        a = Actor(1, "vehicle", s + rng.uniform(-6.0, 6.0), d + rng.uniform(-5.0, 5.0), 4.6, 1.9, 1.5, (0, 0, 0),
                  heading_offset=rng.uniform(-math.pi, math.pi))
        world.actors, world._contacts = [a], set()
        hit = any(e.type.is_collision for e in world._infractions(world._ego_pose))
        ego_box = box_corners(world.ego.x, world.ego.y, world.ego.yaw, vp.length, vp.width)
        touching = boxes_overlap(ego_box, a.footprint(road))
        assert hit == touching
        overlaps += touching
    assert overlaps > 100


def test_one_camera_follows_a_new_road():
    """The camera keeps a road's ground geometry between frames: given another road, it draws that one,
    exactly as a fresh camera would."""
    world = EmbeddedWorld(EmbeddedConfig(scenarios=QUIET, randomise_look=False))
    world.reset(1)
    first = world.road
    world.reset(2)
    second = world.road
    x, y, yaw = second.pose_at(200.0, EGO_LANE_D)
    cam, fresh = Camera(world.config.camera, world.look), Camera(world.config.camera, world.look)
    for c in (cam, fresh):
        c.set_vehicle_pose(x, y, yaw)
    on_first = cam.render(first, 200.0, [])
    on_second = cam.render(second, 200.0, [])
    assert np.array_equal(on_second, fresh.render(second, 200.0, []))
    assert not np.array_equal(on_first, on_second)


def test_fog_fades_the_far_ground_toward_the_horizon_colour_and_keeps_the_frame_opaque():
    from dataclasses import replace

    world = EmbeddedWorld(EmbeddedConfig(camera=CameraSpec(), scenarios=QUIET, randomise_look=False))
    world.reset(2)
    clear_look = replace(world.look, light=1.0)
    images = {}
    for name, look in (("clear", clear_look), ("fog", replace(clear_look, fog_density_1pm=0.04))):
        cam = Camera(CameraSpec(), look)
        cam.set_vehicle_pose(world.ego.x, world.ego.y, world.ego.yaw)
        images[name] = cam.render(world.road, world.ego_s, []).astype(float)
    assert (images["fog"][:, :, 3] == 255).all()
    fog = np.array(clear_look.sky_horizon, float)
    far, near = slice(305, 320), slice(560, 600)  # rows just below the horizon (row 300) and at the bottom
    to_fog = {k: np.abs(v[:, :, :3] - fog).mean(axis=2) for k, v in images.items()}
    assert to_fog["fog"][far].mean() < 0.5 * to_fog["clear"][far].mean()
    change = np.abs(images["fog"] - images["clear"]).mean(axis=2)
    assert change[far].mean() > 3 * change[near].mean()
