"""Packages and data files, for pip and for colcon (ament_python); metadata, dependencies and
console scripts are in pyproject.toml. Explicit here because colcon builds from a directory where
setuptools would otherwise auto-discover its own folders (see ros2_ws/README.md)."""

import tomllib
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

# colcon build --symlink-install runs a symlink of this file in a build folder that has no
# pyproject.toml; the project's name and console scripts then come from the source tree's
ALONE = {}
if not Path("pyproject.toml").exists():
    project = tomllib.loads((Path(__file__).resolve().parent / "pyproject.toml").read_text())["project"]
    ALONE = {"name": project["name"], "version": project["version"],
             "entry_points": {"console_scripts": [f"{name} = {target}" for name, target in project["scripts"].items()]}}

setup(
    **ALONE,
    packages=find_packages(include=["metasteer", "metasteer.*", "simulator", "simulator.*", "training", "training.*"]),
    package_data={"metasteer": ["config/*.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/metasteer"]),
        ("share/metasteer", ["package.xml"]),
        ("share/metasteer/launch", glob("launch/*.launch.py")),
        ("share/metasteer/config", glob("config/*.yaml") + glob("config/*.json")),
        ("share/metasteer/models", glob("models/*.onnx") + glob("models/*.md")),
    ],
)
