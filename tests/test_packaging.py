"""ROS packaging: params files load and name real parameters, launch files name real executables,
the colcon workspace builds and installs them (colcon from PyPI)."""

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from metasteer.nodes import embedded_bridge, steering_node
from tests.conftest import ROOT


@pytest.mark.parametrize("name, node, defaults", [("steering_node.yaml", "metasteer_steering", steering_node.DEFAULTS),
                                                   ("embedded_bridge.yaml", "metasteer_embedded_bridge", embedded_bridge.DEFAULTS)])
def test_params_files_load_and_match_the_nodes(name, node, defaults):
    params = yaml.safe_load((ROOT / "config" / name).read_text())[node]["ros__parameters"]
    assert set(params) == set(defaults)
    assert all(type(params[k]) is type(v) for k, v in defaults.items())  # rclpy rejects a type change


def test_launch_files_name_executables_that_exist():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for path in (ROOT / "launch").glob("*.launch.py"):
        tree = ast.parse(path.read_text())
        names = [kw.value.value for node in ast.walk(tree) if isinstance(node, ast.Call)
                 for kw in node.keywords if kw.arg == "executable"]
        assert names and all(n in scripts for n in names), (path.name, names)
        assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


def test_colcon_builds_the_workspace(tmp_path):
    colcon = shutil.which("colcon") or str(Path(sys.executable).parent / "colcon")
    if not os.path.exists(colcon):
        pytest.skip("colcon is not installed (pip install colcon-common-extensions)")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run([colcon, "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(ROOT / "ros2_ws" / "src"),
                    "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install")],
                   env=env, check=True, capture_output=True, cwd=tmp_path)
    prefix = tmp_path / "install" / "metasteer"
    for exe in ("steering_node", "embedded_bridge"):
        assert os.access(prefix / "lib" / "metasteer" / exe, os.X_OK)
    share = prefix / "share" / "metasteer"
    assert (share / "package.xml").exists()
    assert {p.name for p in (share / "launch").iterdir()} == {"carla_bridge.launch.py", "embedded.launch.py"}
    assert (share / "config" / "steering_node.yaml").exists()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "metasteer").exists()


def test_runtime_never_imports_torch_or_training_and_training_never_imports_rclpy():
    runtime = ("metasteer.preprocess", "metasteer.policy", "metasteer.steering", "metasteer.infraction_log",
               "metasteer.image_msg", "metasteer.control", "metasteer.nodes.steering_node", "metasteer.nodes.interfaces")
    code = ("import sys, importlib\n"
            f"for m in {runtime!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'training'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    pattern = re.compile(r"^\s*(import rclpy|from rclpy)", re.MULTILINE)
    offenders = [p for p in (ROOT / "training").rglob("*.py") if pattern.search(p.read_text())]
    assert not offenders, f"training must not import rclpy: {offenders}"
