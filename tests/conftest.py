import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METASTEER = [sys.executable, "-m", "training.cli"]


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """600 frames, 3 shards, a high abnormal rate so every category appears."""
    from simulator.factory import WorldConfig
    from training.data.collect import CollectConfig, collect

    out = tmp_path_factory.mktemp("data") / "small"
    collect(out, WorldConfig(abnormal_rate=0.3), CollectConfig(frames=600, seed=11, frames_per_shard=200, workers=1), progress=False)
    return out


@pytest.fixture
def cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def file_stamps(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (but ``skip``): (mtime_ns, inode). Equal before and after: nothing rewritten,
    not even atomically (an atomic rewrite is a new inode)."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_ino) for p in sorted(root.rglob("*"))
            if p.is_file() and str(p.relative_to(root)) not in skip}
