"""A run killed with SIGKILL takes its worker processes with it: none lives on to train or drive into the
files its resumed run rewrites (``training.workers``, every pool of the package)."""

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
from training import workers

def task(path):
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    if sys.argv[1] == "pool":
        workers.pool(1).apply(task, (sys.argv[2],))
    else:
        workers.executor(1).submit(task, sys.argv[2]).result()
"""


def _alive(pid: int) -> bool:
    """Running or sleeping; a zombie (dead, not yet reaped by whoever adopted it) counts as dead."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("kind", ["pool", "executor"])
def test_a_worker_dies_with_the_run_that_started_it(tmp_path, kind):
    script, pid_file = tmp_path / "run.py", tmp_path / "worker.pid"
    script.write_text(STARTER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.Popen([sys.executable, str(script), kind, str(pid_file)], env=env)
    deadline = time.time() + 120
    while not pid_file.exists() or not pid_file.read_text():
        assert run.poll() is None and time.time() < deadline, "the worker never started its task"
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    assert _alive(worker)
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.time() + 30
    while _alive(worker) and time.time() < deadline:
        time.sleep(0.05)
    try:
        assert not _alive(worker), "the worker outlived the killed run"
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)
