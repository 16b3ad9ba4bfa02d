"""Start ROS 2 processes from plain Python (no `ros2 launch` wheel exists on PyPI): a private DDS
domain on loopback, the shared-memory Fast DDS profile, a clean SIGINT-then-SIGTERM stop, and processes
that die with their starter (a SIGKILLed `drive` or bench left its nodes running on their domain), and domains
reserved per process, so concurrent runs on one machine never share one."""

from __future__ import annotations

import ctypes
import fcntl
import os
import random
import signal
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

FASTDDS_PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_shm.xml"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None  # looked up here, never in a forked child
DOMAINS = range(1, 231)  # valid ROS_DOMAIN_IDs under the default port mapping, less 0 (everyone's default)
LOCK_DIR = Path(tempfile.gettempdir()) / "metasteer-ros-domains"
_held: list[int] = []  # lock descriptors, open for the process's life: the kernel frees them when it exits
_own: dict[int, int] = {}  # pid -> its domain (a forked worker reserves its own, not its parent's)


def die_with_parent(parent: int) -> None:
    """Run in a child process: SIGKILL it when ``parent`` dies (Linux; elsewhere nothing), or now if it already has."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def reserve_domain() -> int:
    """A domain no other live process on this machine holds (an flock on a file per domain, kept until exit):
    random picks can collide between concurrent runs, and a node would then answer another run's frames."""
    LOCK_DIR.mkdir(exist_ok=True)
    for domain in random.sample(DOMAINS, len(DOMAINS)):
        fd = os.open(LOCK_DIR / f"{domain}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _held.append(fd)
        return domain
    raise RuntimeError(f"every ROS domain {DOMAINS.start}-{DOMAINS.stop - 1} is held by a live process (locks in {LOCK_DIR})")


def process_domain() -> int:
    """This process's own domain, reserved on first use."""
    if os.getpid() not in _own:
        _own[os.getpid()] = reserve_domain()
    return _own[os.getpid()]


def ros_env(domain_id: int | None = None, base: dict | None = None) -> dict:
    """The caller's environment (passed through whole: the ROS wheels need it) plus a private domain
    (``domain_id``, else this process's reserved one)."""
    env = dict(os.environ if base is None else base)
    env["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else process_domain())
    env["ROS_LOCALHOST_ONLY"] = "1"  # measured: the only setting that kept every DDS packet on loopback
    env.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(FASTDDS_PROFILE))
    env.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "1")
    return env


def start(module: str, params: dict, env: dict, **popen) -> subprocess.Popen:
    """``python -m module --ros-args -p k:=v ...``"""
    args = [sys.executable, "-m", module, "--ros-args"]
    for key, value in params.items():
        args += ["-p", f"{key}:={value}"]
    if _PRCTL is not None:  # after fork, before exec: one foreign call, looked up in the parent
        popen["preexec_fn"] = partial(die_with_parent, os.getpid())
    return subprocess.Popen(args, env=env, **popen)


def stop(proc: subprocess.Popen, timeout_s: float = 5.0) -> int:
    """SIGINT, then SIGTERM after ``timeout_s`` (SIGINT alone hung in 2 of ~35 runs here), then kill."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()
