"""Build the workspace's interface package ``carla_msgs`` with colcon into this Python environment.

ROS 2 from PyPI wheels has no ``carla_msgs``; carla-ros-bridge listens for
``carla_msgs/CarlaEgoVehicleControl``. This script builds ``src/carla_msgs`` (carla-ros-bridge's
fields and types) with colcon + rosidl from the wheels and installs it into the environment's own
prefix (``sys.prefix``: ``lib/`` for the C libraries, which the wheels' start-up hook already puts on
``LD_LIBRARY_PATH``; ``lib/python3.X/site-packages`` for the Python module), so ``import
carla_msgs.msg`` works with no sourcing. Run with the environment's Python:

    .venv/bin/python ros2_ws/build_interfaces.py

The wheels' CMake export files name the wheel builder's Python include directory
(``/opt/python/cp311-cp311/...``); they are pointed at this machine's before the build (idempotent).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

WORKSPACE = Path(__file__).resolve().parent
PACKAGES = ("carla_msgs",)
BUILDER_PATHS = (  # (pattern in the wheels' *Export.cmake files, this machine's path)
    (re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+"), lambda: sysconfig.get_paths()["include"]),
    (re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include"), lambda: __import__("numpy").get_include()),
)


def fix_cmake_exports(prefix: Path) -> list[Path]:
    """Rewrite the wheel builder's paths in ``prefix/share/*/cmake/*Export.cmake``; returns the files changed."""
    changed = []
    for path in sorted(prefix.glob("share/*/cmake/*Export*.cmake")):
        text = new = path.read_text()
        for pattern, local in BUILDER_PATHS:
            new = pattern.sub(local(), new)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def build(prefix: Path = Path(sys.prefix), symlink_install: bool = False) -> Path:
    """colcon-build ``PACKAGES`` into ``prefix``; returns the colcon log directory."""
    if not (prefix / "share" / "rosidl_default_generators").is_dir():
        raise SystemExit("rosidl_default_generators is missing: pip install -e '.[ros]' (the ros extra holds the interface build tools)")
    fix_cmake_exports(prefix)
    env = dict(os.environ, CMAKE_PREFIX_PATH=str(prefix), AMENT_PREFIX_PATH=str(prefix))
    colcon = [str(Path(sys.executable).with_name("colcon")), "--log-base", str(WORKSPACE / "log"), "build",
              "--base-paths", str(WORKSPACE / "src"), "--packages-select", *PACKAGES, "--build-base", str(WORKSPACE / "build"),
              "--install-base", str(prefix), "--merge-install", *(["--symlink-install"] if symlink_install else []),
              "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"]
    subprocess.run(colcon, env=env, check=True, cwd=WORKSPACE)
    return WORKSPACE / "log"


if __name__ == "__main__":
    build(symlink_install="--symlink-install" in sys.argv[1:])
    print("carla_msgs built into", sys.prefix)
