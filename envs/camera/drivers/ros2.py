"""ROS 2 base: publishes geometry_msgs/Twist on a topic (rclpy; only when it is importable).

Each action is its velocity held for its duration at `rate_hz`, then zero velocity (several
messages, since Twist is fire-and-forget). Odometry is not read (subscribe to /odom upstream).
"""
from __future__ import annotations

import time
from typing import Any

from envs.base import parse_action
from envs.camera.motion import ZERO_TWIST, MotionSpec, Twist, action_to_twist
from envs.types import Action, Pose


def require_rclpy() -> Any:
    try:
        import rclpy
        from geometry_msgs.msg import Twist as _Twist  # noqa: F401
    except ImportError as e:
        from envs.errors import BackendUnavailableError

        raise BackendUnavailableError("env.config.base=ros2 needs rclpy and geometry_msgs: `source /opt/ros/<distro>/"
                                      "setup.bash` (ROS 2 Humble or newer) in the shell that runs the agent, or use "
                                      "env.config.base=manual (or env.config.base=http env.config.http_url=http://ROBOT:8080/cmd)") from e
    return rclpy


class Ros2TwistBase:
    def __init__(self, spec: MotionSpec | None = None, topic: str = "/cmd_vel", rate_hz: float = 10.0,
                 node_name: str = "v4s_agent_base"):
        rclpy = require_rclpy()
        from geometry_msgs.msg import Twist as RosTwist

        self.spec, self.topic, self.rate_hz = spec or MotionSpec(), topic, rate_hz
        self._rclpy, self._Msg = rclpy, RosTwist
        self._owns_context = not rclpy.ok()
        if self._owns_context:
            rclpy.init()
        self._node = rclpy.create_node(node_name)
        self._pub = self._node.create_publisher(RosTwist, topic, 10)
        self.published = 0

    def _msg(self, t: Twist) -> Any:
        m = self._Msg()
        m.linear.x, m.linear.y, m.linear.z = (float(v) for v in t.linear)
        m.angular.x, m.angular.y, m.angular.z = (float(v) for v in t.angular)
        return m

    def _publish(self, t: Twist) -> None:
        self._pub.publish(self._msg(t))
        self.published += 1

    def execute(self, action: Action) -> None:
        a = parse_action(action)
        twist, duration = action_to_twist(a, self.spec)
        try:
            end = time.monotonic() + duration
            while time.monotonic() < end:
                self._publish(twist)
                time.sleep(min(1.0 / self.rate_hz, max(0.0, end - time.monotonic())))
        finally:
            self.stop()

    def stop(self) -> bool:
        try:
            for _ in range(3):
                self._publish(ZERO_TWIST)
        except Exception:  # noqa: BLE001 - stop must never raise; report instead
            return False
        return True

    def odometry(self) -> Pose | None:
        return None

    def close(self) -> None:
        self.stop()
        self._node.destroy_node()
        if self._owns_context:
            self._rclpy.shutdown()
