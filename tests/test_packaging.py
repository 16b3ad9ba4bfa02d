"""ROS packaging: params files load and name real parameters, launch files name real executables,
the colcon workspace builds and installs them (colcon from PyPI)."""

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from metasteer.nodes import steering_node
from simulator import embedded_bridge
from tests.conftest import ROOT


@pytest.mark.parametrize("name, node, defaults, sim_time", [
    ("steering_node.yaml", "metasteer_steering", steering_node.DEFAULTS, True),
    ("carla_native_ros2.yaml", "metasteer_steering", steering_node.DEFAULTS, True),
    ("embedded_bridge.yaml", "metasteer_embedded_bridge", embedded_bridge.DEFAULTS, False)])
def test_params_files_load_and_match_the_nodes(name, node, defaults, sim_time):
    params = yaml.safe_load((ROOT / "config" / name).read_text())[node]["ros__parameters"]
    assert params.pop("use_sim_time") is sim_time  # the node reads the clock its frames are stamped in; the bridge is that clock
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


@pytest.mark.parametrize("symlink", [False, True])
def test_colcon_builds_the_workspace(tmp_path, symlink):
    """Both packages (carla_msgs from its .msg files, metasteer's executables, launch and config), also
    with --symlink-install; the built carla_msgs loads from its install folder alone."""
    colcon = shutil.which("colcon") or str(Path(sys.executable).parent / "colcon")
    if not os.path.exists(colcon):
        pytest.skip("colcon is not installed (pip install -e '.[ros]')")
    prefix_env = {"CMAKE_PREFIX_PATH": sys.prefix, "AMENT_PREFIX_PATH": sys.prefix}
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **prefix_env)
    packages = ["metasteer"] if symlink else ["metasteer", "carla_msgs"]
    subprocess.run([colcon, "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(ROOT / "ros2_ws" / "src"),
                    "--packages-select", *packages, "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install"),
                    *(["--symlink-install"] if symlink else []),
                    "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
                   env=env, check=True, capture_output=True, cwd=tmp_path)
    prefix = tmp_path / "install" / "metasteer"
    for exe in ("steering_node", "embedded_bridge"):
        script = prefix / "lib" / "metasteer" / exe
        assert os.access(script, os.X_OK) and "metasteer" in script.read_text()
    share = prefix / "share" / "metasteer"
    assert (share / "package.xml").exists()
    assert {p.name for p in (share / "launch").iterdir()} == {"carla_bridge.launch.py", "carla_native.launch.py", "embedded.launch.py"}
    assert (share / "config" / "steering_node.yaml").exists()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "metasteer").exists()
    if not symlink:
        site = tmp_path / "install" / "carla_msgs" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        probe = ("import sys; sys.path.insert(0, sys.argv[1]); import carla_msgs.msg as m; from rclpy.serialization import serialize_message; "
                 "print(m.__file__); serialize_message(m.CarlaEgoVehicleControl(steer=0.5))")
        libs = os.pathsep.join([str(tmp_path / "install" / "carla_msgs" / "lib"), os.environ.get("LD_LIBRARY_PATH", "")])
        out = subprocess.run([sys.executable, "-c", probe, str(site)], env=dict(os.environ, LD_LIBRARY_PATH=libs, _ROS_WHEELS_BOOTSTRAP_COMPLETE=""),
                             capture_output=True, text=True, check=True)
        assert str(site) in out.stdout  # this build's module, not the one set-up installed into the venv


def _imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports anywhere in it (functions included), read from its AST."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package, forbidden", [("metasteer", {"torch", "training", "simulator"}),
                                                 ("simulator", {"torch", "training"}),
                                                 ("training", {"rclpy"})])
def test_import_boundaries_hold_in_every_module(package, forbidden):
    offenders = {str(p.relative_to(ROOT)): sorted(_imported_packages(p) & forbidden) for p in (ROOT / package).rglob("*.py")}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"{package} must not import {sorted(forbidden)}: {offenders}"
    assert len(list((ROOT / package).rglob("*.py"))) > 5  # the walk found the package


def test_the_runtime_imports_without_torch_or_training():
    runtime = ("metasteer.preprocess", "metasteer.policy", "metasteer.steering", "metasteer.infraction_log",
               "metasteer.image_msg", "metasteer.control", "metasteer.nodes.steering_node", "metasteer.nodes.interfaces")
    code = ("import sys, importlib\n"
            f"for m in {runtime!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'training', 'simulator'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
