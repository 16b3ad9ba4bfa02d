"""Late commands in closed loop: ``actuation_delay_ticks`` d applies the command computed at tick t at
tick t + d (a bridge that ticks without waiting for the command), through the code evaluate and compare
drive with; d = 0 is the lockstep loop unchanged."""

from pathlib import Path

import pytest

from simulator.base import VehicleControl
from simulator.factory import WorldConfig
from training.evaluate import ActuationDelay, EvalConfig, drive_routes

MODEL = Path(__file__).resolve().parents[1] / "models" / "mse.onnx"


def test_the_delay_line_holds_each_command_for_its_ticks():
    computed = [VehicleControl(0.5, s, 0.0) for s in (0.1, 0.2, 0.3, 0.4)]
    now = ActuationDelay(0)
    assert [now(c) for c in computed] == computed
    late = ActuationDelay(2)
    assert [late(c) for c in computed] == [VehicleControl(), VehicleControl()] + computed[:2]
    with pytest.raises(ValueError, match="must be >= 0 ticks, got -1"):
        ActuationDelay(-1)


@pytest.mark.parametrize("ticks", [0, 1, 2])
def test_a_drive_applies_each_command_its_ticks_late(ticks):
    """The steering the world got is the policy's, shifted by ``ticks`` (zeros before the first)."""
    cfg = EvalConfig(episodes=1, workers=1, max_time_s=5.0, actuation_delay_ticks=ticks)
    (episode,), = drive_routes([MODEL], WorldConfig(abnormal_rate=0.0), cfg, progress=False)
    steer, applied = episode["steps"]["steer"], episode["steps"]["applied_steer"]
    assert len(steer) == len(applied) >= 50 and any(s != 0.0 for s in steer)
    assert applied == [0.0] * ticks + steer[:len(steer) - ticks]


def test_the_bridge_launch_waits_for_the_control_command():
    """With carla-ros-bridge's default (false) the world ticks on and every command lands a tick late."""
    import ast

    source = (Path(__file__).resolve().parents[1] / "launch" / "carla_bridge.launch.py").read_text()
    args = {k.value: v.value for d in ast.walk(ast.parse(source)) if isinstance(d, ast.Dict)
            for k, v in zip(d.keys, d.values) if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)}
    assert args["synchronous_mode"] == "True" and args["synchronous_mode_wait_for_vehicle_control_command"] == "True"
