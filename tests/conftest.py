import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METASTEER = [sys.executable, "-m", "training.cli"]
# the files whose tests talk over DDS share one worker under `pytest -n` (never two node-starting tests at once; their
# domains are reserved per process since 2026-12-02, `launching.reserve_domain`); every other file keeps its tests together
ROS_FILES = {"test_node_faults", "test_node_soak", "test_record", "test_ros"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Whole files to a worker, the DDS files as one (xdist_group marks are ignored by xdist 3.8 under pytest 9.2)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            stem = nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
            return "ros" if stem in ROS_FILES else stem

    return ByFile(config, log)


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
