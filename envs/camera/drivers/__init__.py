"""Motion `Base` protocol and its drivers: manual (operator), http (robot endpoint), ros2 (Twist).

A driver executes one discrete action and returns when it is done (or raises BaseCommandError after
trying to send a zero velocity). `stop()` is the safe stop; it must not raise.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from envs.camera.motion import MotionSpec
from envs.types import Action, Pose


@runtime_checkable
class Base(Protocol):
    def execute(self, action: Action) -> None: ...

    def stop(self) -> bool:
        """Send zero velocity / tell the operator to halt; True when it was delivered."""
        ...

    def odometry(self) -> Pose | None:
        """Latest pose reported by the robot, or None when it reports none."""
        ...

    def close(self) -> None: ...


class NoBase:
    """No robot: actions are only counted (video replay, handheld camera)."""

    def execute(self, action: Action) -> None:
        return None

    def stop(self) -> bool:
        return True

    def odometry(self) -> Pose | None:
        return None

    def close(self) -> None:
        return None


def motion_spec(cfg: Any) -> MotionSpec:
    return MotionSpec(cfg.forward_step, cfg.turn_angle_deg, cfg.tilt_angle_deg, cfg.linear_speed,
                      cfg.angular_speed_deg)


def make_base(cfg: Any) -> Base:
    """Driver named by `cfg.base` (a CameraConfig)."""
    spec = motion_spec(cfg)
    if cfg.base == "manual":
        from envs.camera.drivers.manual import ManualBase

        return ManualBase(spec)
    if cfg.base == "http":
        from envs.camera.drivers.http_json import HttpBase

        return HttpBase(cfg.http_url, spec, mode=cfg.http_mode, timeout_s=cfg.http_timeout_s,
                        retries=cfg.http_retries, backoff_s=cfg.http_backoff_s)
    if cfg.base == "ros2":
        from envs.camera.drivers.ros2 import Ros2TwistBase

        return Ros2TwistBase(spec, topic=cfg.ros2_topic, rate_hz=cfg.ros2_rate_hz)
    return NoBase()
