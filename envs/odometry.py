"""Actuation noise and dead reckoning: how a commanded discrete action moves a real base, and the
pose a robot believes it has when it integrates its commands.

Noise follows the spirit of habitat-sim's noisy PyRobot actuation: every executed MOVE_FORWARD
travels `forward_step + N(0, forward_std)` along the heading, slips `N(0, lateral_std)` sideways and
ends with its heading off by `N(0, turn_std_deg)`; every TURN turns `turn_angle + N(0, turn_std_deg)`.
Dead reckoning (`integrate`) adds the commanded motion only, so its drift from the truth is exactly the
integrated noise. Worlds and the camera rig share these functions.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.geometry import wrap_angle
from envs.types import Action, Pose

POSE_SOURCES = ("gt", "odometry")  # what Observation.pose reports: the true pose, or dead reckoning


@dataclass(frozen=True)
class ActuationNoise:
    """1-sigma Gaussian actuation noise per action; all zero (the default) is exact motion."""

    forward_std: float = 0.0  # metres, along the heading, per MOVE_FORWARD
    lateral_std: float = 0.0  # metres, sideways slip, per MOVE_FORWARD
    turn_std_deg: float = 0.0  # degrees of heading error, per MOVE_FORWARD and per TURN
    seed: int = 0  # noise stream: one per (seed, episode id), so methods compare on the same draws

    def __post_init__(self) -> None:
        limits = {"forward_std": (1.0, "metres"), "lateral_std": (1.0, "metres"), "turn_std_deg": (45.0, "degrees")}
        for name, (hi, unit) in limits.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= hi:
                raise ValueError(f"actuation_noise.{name}={v!r} is invalid: must be in [0, {hi:g}] {unit}")

    @property
    def enabled(self) -> bool:
        return bool(self.forward_std or self.lateral_std or self.turn_std_deg)

    @classmethod
    def from_any(cls, value: Any) -> ActuationNoise:
        """ActuationNoise | dict | DictConfig | None -> ActuationNoise; an unknown key is one error line."""
        from envs.config import coerce_config

        return coerce_config(cls, value, "actuation_noise")

    def rng(self, episode_id: str) -> np.random.Generator:
        """The episode's noise stream (stable across runs and processes)."""
        return np.random.default_rng([int(self.seed), zlib.crc32(str(episode_id).encode())])


def check_pose_source(value: str) -> None:
    if value not in POSE_SOURCES:
        raise ValueError(f"pose_source={value!r} is invalid: choose one of {list(POSE_SOURCES)} "
                         "(gt: the true pose; odometry: dead reckoning of the commanded actions)")


def commanded_motion(action: Action, forward_step: float, turn_rad: float) -> tuple[float, float, float]:
    """(forward m, lateral m (right positive), dyaw rad (left positive)) the action asks for."""
    if action == Action.MOVE_FORWARD:
        return forward_step, 0.0, 0.0
    if action == Action.TURN_LEFT:
        return 0.0, 0.0, turn_rad
    if action == Action.TURN_RIGHT:
        return 0.0, 0.0, -turn_rad
    return 0.0, 0.0, 0.0


def noisy_motion(action: Action, forward_step: float, turn_rad: float, noise: ActuationNoise,
                 rng: np.random.Generator) -> tuple[float, float, float]:
    """The motion the base actually executes for `action`: the command plus one draw of the noise.
    Three draws per action, always, so the stream stays aligned whatever the action."""
    f, lat, dyaw = commanded_motion(action, forward_step, turn_rad)
    e_f, e_l, e_y = rng.normal(0.0, 1.0, 3) * np.array([noise.forward_std, noise.lateral_std, math.radians(noise.turn_std_deg)])
    if action == Action.MOVE_FORWARD:
        return f + float(e_f), float(e_l), float(e_y)
    if action in (Action.TURN_LEFT, Action.TURN_RIGHT):
        return 0.0, 0.0, dyaw + float(e_y)
    return f, lat, dyaw


def moved(pose: Pose, forward: float, lateral: float, dyaw: float) -> Pose:
    """`pose` after moving `forward` along its heading and `lateral` to its right, then turning `dyaw`."""
    s, c = math.sin(pose.yaw), math.cos(pose.yaw)
    x, y, z = pose.position
    return Pose((x - forward * s + lateral * c, y, z - forward * c - lateral * s), float(wrap_angle(pose.yaw + dyaw)), pose.pitch)


def integrate(pose: Pose, action: Action, forward_step: float, turn_rad: float, tilt_rad: float = 0.0,
              max_pitch: float = math.pi / 2) -> Pose:
    """Dead reckoning: the pose after `action` if the base executed it exactly (no slip)."""
    if action in (Action.LOOK_UP, Action.LOOK_DOWN):
        d = tilt_rad if action == Action.LOOK_UP else -tilt_rad
        return Pose(pose.position, pose.yaw, float(np.clip(pose.pitch + d, -max_pitch, max_pitch)))
    f, lat, dyaw = commanded_motion(action, forward_step, turn_rad)
    return moved(pose, f, lat, dyaw) if (f or dyaw) else pose
