"""A run killed with SIGKILL takes its child processes with it: no pool worker lives on to train or drive into
the files its resumed run rewrites (``training.workers``), no ROS node started by ``drive`` or a bench stays up
on its domain (``metasteer.nodes.launching.start``)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

STARTER = """
import os, sys, time
from pathlib import Path
from metasteer.nodes.launching import start
from training import workers

def task(path):
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    kind, path = sys.argv[1:]
    if kind == "pool":
        workers.pool(1).apply(task, (path,))
    elif kind == "executor":
        workers.executor(1).submit(task, path).result()
    else:  # a node as drive starts one: python -m MODULE --ros-args ...
        start("sleeper", {"unused": 1}, dict(os.environ, PID_FILE=path)).wait()
"""
SLEEPER = "import os, time\nopen(os.environ['PID_FILE'], 'w').write(str(os.getpid()))\ntime.sleep(120)\n"


def _alive(pid: int) -> bool:
    """Running or sleeping; a zombie (dead, not yet reaped by whoever adopted it) counts as dead."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("kind", ["pool", "executor", "node"])
def test_a_child_process_dies_with_the_run_that_started_it(tmp_path, kind):
    (tmp_path / "run.py").write_text(STARTER)
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    pid_file = tmp_path / "child.pid"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    run = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), kind, str(pid_file)], env=env)
    try:
        deadline = time.time() + 120
        while not pid_file.exists() or not pid_file.read_text():
            assert run.poll() is None and time.time() < deadline, "the child never started"
            time.sleep(0.05)
        assert _alive(int(pid_file.read_text()))  # still at its task when the run dies
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    child = int(pid_file.read_text())
    deadline = time.time() + 30
    while _alive(child) and time.time() < deadline:
        time.sleep(0.05)
    try:
        assert not _alive(child), "the child outlived the killed run"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
