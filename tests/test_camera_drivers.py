"""`manual` driver (injected streams), ROS 2 Twist driver (when rclpy exists), base factory."""
from __future__ import annotations

import importlib.util
import io

import pytest

from envs.camera.config import CameraConfig
from envs.camera.drivers import Base, NoBase, make_base
from envs.camera.drivers.manual import ManualBase
from envs.camera.errors import BaseCommandError
from envs.camera.motion import MotionSpec
from envs.errors import BackendUnavailableError
from envs.types import Action

HAS_RCLPY = importlib.util.find_spec("rclpy") is not None


def test_manual_shows_command_and_waits_for_enter():
    out = io.StringIO()
    base = ManualBase(MotionSpec(turn_angle_deg=45), io.StringIO("\n\n"), out)
    base.execute(Action.TURN_LEFT)
    base.execute(Action.MOVE_FORWARD)
    lines = out.getvalue().splitlines()
    assert "command 1: turn left 45 deg" in lines[0] and "press Enter" in lines[0]
    assert "command 2: move forward 0.25 m" in lines[1]
    assert isinstance(base, Base) and base.odometry() is None


def test_manual_eof_is_an_error_not_a_hang():
    base = ManualBase(MotionSpec(), io.StringIO(""), io.StringIO())
    with pytest.raises(BaseCommandError, match="operator input closed"):
        base.execute(Action.MOVE_FORWARD)


def test_manual_abort_stops():
    out = io.StringIO()
    base = ManualBase(MotionSpec(), io.StringIO("q\n"), out)
    with pytest.raises(BaseCommandError, match="operator aborted at command 1"):
        base.execute(Action.TURN_RIGHT)
    assert "STOP" in out.getvalue()


def test_factory_picks_driver():
    assert isinstance(make_base(CameraConfig(base="none")), NoBase)
    assert isinstance(make_base(CameraConfig(base="manual")), ManualBase)
    http = make_base(CameraConfig(base="http", http_url="http://127.0.0.1:9/cmd", http_timeout_s=0.3))
    assert http.url == "http://127.0.0.1:9/cmd" and http.timeout_s == 0.3


@pytest.mark.skipif(HAS_RCLPY, reason="rclpy is installed: the missing-ROS path cannot happen")
def test_ros2_without_rclpy_is_a_clear_error():
    with pytest.raises(BackendUnavailableError, match=r"needs rclpy.*source /opt/ros/<distro>/setup.bash"):
        make_base(CameraConfig(base="ros2"))


@pytest.mark.skipif(not HAS_RCLPY, reason="rclpy not importable (source a ROS 2 setup.bash to run this test)")
def test_ros2_publishes_twist_then_zero():
    import rclpy
    from geometry_msgs.msg import Twist

    from envs.camera.drivers.ros2 import Ros2TwistBase

    got: list = []
    base = Ros2TwistBase(MotionSpec(linear_speed=2.5), topic="/v4s_test_cmd_vel", rate_hz=50)
    node = rclpy.create_node("v4s_test_listener")
    node.create_subscription(Twist, "/v4s_test_cmd_vel", got.append, 50)
    try:
        for _ in range(25):  # DDS discovery before the first message
            rclpy.spin_once(node, timeout_sec=0.02)
        base.execute(Action.MOVE_FORWARD)  # 0.1 s at 2.5 m/s, then zeros
        for _ in range(50):
            rclpy.spin_once(node, timeout_sec=0.02)
        assert base.published >= 4
        assert any(m.linear.x == 2.5 for m in got) and got[-1].linear.x == 0.0
    finally:
        node.destroy_node()
        base.close()
