"""The steering node's fault paths for real (its own process, rclpy, onnxruntime, the harness of
test_ros): no model, a model that fails in onnxruntime, no frame yet, a negative out-of-range steer."""

import pytest

pytest.importorskip("rclpy")

from tests.test_ros import DOMAIN, frame, harness, models, spin, steering_node, wait_for_node  # noqa: E402,F401 - fixtures

ERROR = b"\x02"


@pytest.fixture(scope="module")
def fault_models(tmp_path_factory):
    from tests.onnx_models import constant_steer_model, error_on_camera_model

    out = tmp_path_factory.mktemp("fault_models")
    return {"error": str(error_on_camera_model(out / "error.onnx")), "left3": str(constant_steer_model(out / "left3.onnx", -3.0))}


def _stream(h, n: int = 5) -> set:
    """``n`` fresh frames, 10 Hz; their stamps (a command answering a frame carries its stamp)."""
    stamps = set()
    for _ in range(n):
        msg = frame(h)
        stamps.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
        h.image_pub.publish(msg)
        spin(h, 0.1)
    spin(h, 0.5)
    return stamps


def test_a_node_started_without_a_model_brakes_every_frame_and_reports_error(harness, steering_node):
    h = harness
    proc = steering_node(model_path="''", diagnostics_period_s=0.2)
    wait_for_node(h, proc)
    h.commands.clear()
    sent = _stream(h)
    answers = [c for c in h.commands if c.stamp in sent]
    assert proc.poll() is None and len(answers) >= 4
    assert all(c.brake == 1.0 and c.throttle == 0.0 and c.model_id == "none" for c in h.commands)
    status = h.diagnostics[-1].status[0]
    assert status.level == ERROR and status.message == "no model"


def test_an_inference_error_brakes_the_frame_and_is_logged(harness, steering_node, fault_models, tmp_path):
    h = harness
    proc = steering_node(model_path=fault_models["error"])
    wait_for_node(h, proc)
    h.commands.clear()
    sent = _stream(h)
    answers = [c for c in h.commands if c.stamp in sent]
    assert proc.poll() is None and len(answers) >= 4  # every frame answered, the node alive
    assert all(c.brake == 1.0 and c.throttle == 0.0 and c.steer == 0.0 for c in answers)
    assert "inference failed" in (tmp_path / "node.log").read_text()


def test_the_watchdog_brakes_before_the_first_frame(harness, steering_node):
    h = harness
    proc = steering_node(camera_timeout_s=0.3)
    wait_for_node(h, proc)
    h.commands.clear()
    spin(h, 1.0)  # no frame yet: a car must not roll on the last command of whatever drove before
    assert len(h.commands) >= 5 and all(c.brake == 1.0 and c.throttle == 0.0 for c in h.commands)


def test_a_negative_out_of_range_steer_is_clamped_to_full_left(harness, steering_node, fault_models):
    h = harness
    proc = steering_node(model_path=fault_models["left3"])
    wait_for_node(h, proc)
    h.commands.clear()
    sent = _stream(h)
    answers = [c for c in h.commands if c.stamp in sent]
    assert len(answers) >= 4 and all(c.steer == -1.0 and c.brake < 1.0 for c in answers)  # the model says -3.0
