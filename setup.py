"""Packages and data files, for pip and for colcon (ament_python); metadata, dependencies and
console scripts are in pyproject.toml. Explicit here because colcon builds from a directory where
setuptools would otherwise auto-discover its own folders (see ros2_ws/README.md)."""

from glob import glob

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["metasteer", "metasteer.*", "simulator", "simulator.*", "training", "training.*"]),
    package_data={"metasteer": ["config/*.xml", "msg/*.msg"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/metasteer"]),
        ("share/metasteer", ["package.xml"]),
        ("share/metasteer/launch", glob("launch/*.launch.py")),
        ("share/metasteer/config", glob("config/*.yaml") + glob("config/*.json")),
        ("share/metasteer/models", glob("models/*.onnx") + glob("models/*.md")),
    ],
)
