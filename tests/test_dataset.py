"""Dataset recording: round trip, kill-and-resume, corruption errors, the contact sheet."""

import gc
import json
import shutil
import subprocess
import time

import numpy as np
import pytest

from simulator.base import SCENE_CATEGORIES, SceneFeatures
from simulator.factory import WorldConfig
from tests.conftest import METASTEER
from training.data import dataset as dataset_module
from training.data.collect import CollectConfig, collect
from training.data.dataset import DrivingDataset
from training.data.format import DatasetError, shard_paths


def test_round_trip(small_dataset):
    ds = DrivingDataset(small_dataset)
    m = ds.manifest
    assert len(ds) == m["frames"] == 600 and len(m["shards"]) == 3
    assert sum(m["counts"].values()) == 600 and set(m["counts"]) == set(SCENE_CATEGORIES)
    assert m["counts"]["normal"] < 600 and ds.abnormal.sum() == 600 - m["counts"]["normal"]
    frames = ds.images([0, 199, 200, 599])
    assert frames.shape == (4, 66, 200, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames[2], np.load(shard_paths(small_dataset, 1)["images"])[0])
    assert ds.features().shape == (600, len(SceneFeatures.names()))
    assert np.abs(ds.steer).max() <= 1.0
    assert set(np.unique(ds.columns["category"])) <= set(SCENE_CATEGORIES)
    # labels are the expert's; the executed steering differs where noise was injected
    noisy = ds.columns["steer_noise"] != 0
    assert noisy.any() and np.allclose(ds.columns["steer_executed"][noisy], np.clip(ds.steer[noisy] + ds.columns["steer_noise"][noisy], -1, 1), atol=1e-6)


def test_same_request_same_bytes(small_dataset, tmp_path):
    again = tmp_path / "again"
    collect(again, WorldConfig(abnormal_rate=0.3), CollectConfig(frames=600, seed=11, frames_per_shard=200, workers=2), progress=False)
    a, b = (json.loads((d / "manifest.json").read_text())["shards"] for d in (small_dataset, again))
    assert a == b


def test_killed_collection_resumes_without_losing_or_duplicating_frames(tmp_path, cli_env):
    args = ["collect", "--world", "embedded", "--frames", "1200", "--frames-per-shard", "200", "--abnormal-rate", "0.1",
            "--seed", "5", "--workers", "1", "--no-progress"]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen(METASTEER + args + ["--out", str(killed)], env=cli_env)
    deadline = time.time() + 120
    while not shard_paths(killed, 1)["marker"].exists():
        assert proc.poll() is None and time.time() < deadline, "collection ended before it could be killed"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert not (killed / "manifest.json").exists()
    with pytest.raises(DatasetError, match="unfinished"):
        DrivingDataset(killed)
    finished = [k for k in range(6) if shard_paths(killed, k)["marker"].exists()]
    stamps = {k: [(p.stat().st_mtime_ns, p.stat().st_ino) for p in shard_paths(killed, k).values()] for k in finished}
    for out in (killed, whole):
        subprocess.run(METASTEER + args + ["--out", str(out)], env=cli_env, check=True)
    assert {k: [(p.stat().st_mtime_ns, p.stat().st_ino) for p in shard_paths(killed, k).values()] for k in finished} == stamps
    resumed, reference = DrivingDataset(killed), DrivingDataset(whole)
    assert len(resumed) == len(reference) == 1200
    assert resumed.manifest["shards"] == reference.manifest["shards"]
    assert np.array_equal(resumed.columns["step"], reference.columns["step"])


def test_resume_with_another_request_is_refused(small_dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_dataset, copy)
    with pytest.raises(DatasetError, match="different request"):
        collect(copy, WorldConfig(abnormal_rate=0.3), CollectConfig(frames=600, seed=12, frames_per_shard=200, workers=1), progress=False)


@pytest.fixture
def copy_of(small_dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_dataset, copy)
    return copy


def test_a_dataset_opened_again_shares_its_mapping_until_a_file_changes(copy_of):
    before = set(dataset_module._MAPPED.keys())
    first, again = DrivingDataset(copy_of), DrivingDataset(copy_of)
    assert all(np.shares_memory(a.images, b.images) for a, b in zip(first.shards, again.shards))  # pages count once in RSS
    path = shard_paths(copy_of, 0)["images"]
    images = np.array(first.shards[0].images)
    np.save(path, images[::-1])  # rewritten in place: same path, new content
    rewritten = DrivingDataset(copy_of, verify=False)
    assert not np.shares_memory(rewritten.shards[0].images, first.shards[0].images)
    np.testing.assert_array_equal(rewritten.shards[0].images, images[::-1])
    mine = set(dataset_module._MAPPED.keys()) - before
    del first, again, rewritten
    gc.collect()
    assert mine and not mine & set(dataset_module._MAPPED.keys())  # last user gone: unmapped, no cache holds them


def test_truncated_image_shard_is_named(copy_of):
    path = shard_paths(copy_of, 1)["images"]
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DatasetError, match="shard-00001.npy.*checksum"):
        DrivingDataset(copy_of)
    with pytest.raises(DatasetError, match="shard-00001.npy.*truncated or corrupt"):
        DrivingDataset(copy_of, verify=False)


def test_flipped_byte_is_caught_by_the_checksum(copy_of):
    path = shard_paths(copy_of, 2)["images"]
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="shard-00002.npy: checksum mismatch"):
        DrivingDataset(copy_of)


def test_corrupt_label_table_is_named(copy_of):
    path = shard_paths(copy_of, 0)["labels"]
    path.write_bytes(b"not a parquet file" * 10)
    with pytest.raises(DatasetError, match="shard-00000.parquet: truncated or corrupt label shard"):
        DrivingDataset(copy_of, verify=False)


def test_missing_shard_is_named(copy_of):
    shard_paths(copy_of, 2)["labels"].unlink()
    with pytest.raises(DatasetError, match="shard-00002.parquet: missing"):
        DrivingDataset(copy_of)


@pytest.mark.parametrize("edit, named", [
    (lambda m: [m], "wrong format or version"),
    (lambda m: {**m, "shards": []}, "no shards listed"),
    (lambda m: {**m, "shards": [{k: v for k, v in m["shards"][0].items() if k != "images_sha256"}] + m["shards"][1:]}, r"shard 0 lacks \['images_sha256'\]"),
    (lambda m: {**m, "image_shape": [33, 100, 3]}, "shard-00000.npy: holds .* frames of \\[33, 100, 3\\]"),
    (lambda m: {**m, "image_shape": "66x200"}, "image_shape '66x200' is not"),
    (lambda m: {**m, "features": m["features"] + ["no_such_feature"]}, r"lists features \['no_such_feature'\] that no shard holds"),
    (lambda m: {**m, "frames": m["frames"] + 1}, r"its frames \d+ are not its shards' total \d+"),
    (lambda m: {**m, "counts": {**m["counts"], "pedestrian": m["counts"]["pedestrian"] + 5}}, "its counts .* are not its shards' total"),
])
def test_a_manifest_of_the_wrong_shape_is_named(copy_of, edit, named):
    """Valid JSON, wrong structure (hand-edited, another tool's): named with what is wrong, not a KeyError later."""
    path = copy_of / "manifest.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    with pytest.raises(DatasetError, match=named):
        DrivingDataset(copy_of)


def test_a_shard_without_a_required_label_column_is_named(copy_of):
    import pyarrow.parquet as pq

    path = shard_paths(copy_of, 1)["labels"]
    pq.write_table(pq.read_table(path).drop_columns(["category"]), path)
    with pytest.raises(DatasetError, match=r"label columns \['category'\] missing"):
        DrivingDataset(copy_of, verify=False)


def test_show_writes_a_contact_sheet_and_reports_corruption(copy_of, tmp_path, cli_env):
    sheet = tmp_path / "sheet.png"
    out = subprocess.run(METASTEER + ["show", str(copy_of), "--out", str(sheet), "--json"], env=cli_env,
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["frames"] == 600 and sheet.stat().st_size > 10_000
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path = shard_paths(copy_of, 0)["images"]
    path.write_bytes(path.read_bytes()[:100])
    bad = subprocess.run(METASTEER + ["show", str(copy_of), "--out", str(sheet)], env=cli_env, capture_output=True, text=True)
    assert bad.returncode == 2 and "shard-00000.npy" in bad.stderr
