"""What a discrete action means physically on a rig: a velocity command for a duration, and the
pose change it should cause (dead reckoning, approximate: it assumes the base did exactly that).

Twist follows ROS REP 103 (base frame x forward, y left, z up; angular z > 0 turns left, angular
y > 0 pitches the camera down); poses follow ours (Habitat frame, see envs/types.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from envs import odometry
from envs.base import ActionSteps, parse_action
from envs.habitat.actions import HABITAT_ACTION_NAMES
from envs.types import Action, Pose


@dataclass(frozen=True)
class Twist:
    linear: tuple[float, float, float] = (0.0, 0.0, 0.0)  # m/s
    angular: tuple[float, float, float] = (0.0, 0.0, 0.0)  # rad/s

    @property
    def is_zero(self) -> bool:
        return not any(self.linear) and not any(self.angular)

    def as_dict(self) -> dict:
        lx, ly, lz = self.linear
        ax, ay, az = self.angular
        return {"linear": {"x": lx, "y": ly, "z": lz}, "angular": {"x": ax, "y": ay, "z": az}}


ZERO_TWIST = Twist()


@dataclass
class MotionSpec(ActionSteps):
    """The step sizes of the discrete actions, and the speeds used to execute them as velocities."""

    linear_speed: float = 0.25  # m/s, velocity-mode commands (http velocity, ros2)
    angular_speed_deg: float = 30.0  # deg/s


def action_to_twist(action: Action | int, spec: MotionSpec) -> tuple[Twist, float]:
    """(velocity, seconds) that performs the action; STOP is (ZERO_TWIST, 0)."""
    a = parse_action(action)
    w = math.radians(spec.angular_speed_deg)
    if a is Action.MOVE_FORWARD:
        return Twist(linear=(spec.linear_speed, 0.0, 0.0)), spec.forward_step / spec.linear_speed
    turn = spec.turn_angle_deg / spec.angular_speed_deg
    tilt = spec.tilt_angle_deg / spec.angular_speed_deg
    if a is Action.TURN_LEFT:
        return Twist(angular=(0.0, 0.0, w)), turn
    if a is Action.TURN_RIGHT:
        return Twist(angular=(0.0, 0.0, -w)), turn
    if a is Action.LOOK_UP:
        return Twist(angular=(0.0, -w, 0.0)), tilt
    if a is Action.LOOK_DOWN:
        return Twist(angular=(0.0, w, 0.0)), tilt
    return ZERO_TWIST, 0.0


def describe_action(action: Action | int, spec: MotionSpec) -> str:
    """Operator-facing text, e.g. 'move forward 0.25 m', 'turn left 30 deg'."""
    a = parse_action(action)
    if a is Action.STOP:
        return "stop and hold position"
    amount, unit = spec.amount(a)
    verb = {"look_up": "tilt camera up", "look_down": "tilt camera down"}.get(HABITAT_ACTION_NAMES[a],
                                                                           HABITAT_ACTION_NAMES[a].replace("_", " "))
    return f"{verb} {amount:g} {unit}"


def integrate(pose: Pose, action: Action | int, spec: MotionSpec) -> Pose:
    """Dead reckoning: the pose after the action if the base executed it exactly (no slip, no collision)."""
    return odometry.integrate(pose, parse_action(action), spec.forward_step, math.radians(spec.turn_angle_deg),
                              math.radians(spec.tilt_angle_deg))
