"""Pose conversion between our `Pose` and habitat_sim's agent/sensor states (pure, no habitat_sim).

Both frames are Habitat's (Y-up, camera looks along -Z), so positions carry over unchanged; what
differs is the representation:
- habitat_sim places the agent *body* on the navmesh floor and the camera `sensor_height` above it;
  our `Pose.position` is the camera itself.
- rotations are quaternions: numpy-quaternion / magnum order (w, x, y, z), while
  `habitat_sim.utils.common.quat_from_coeffs` takes coefficients in (x, y, z, w) order, and scipy uses
  (x, y, z, w) too. Every reordering happens here, through scipy `Rotation`, nowhere else.
- the body carries yaw only; pitch (look_up/look_down) lives on the sensor relative to the body.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from envs.types import Pose


def wxyz_to_xyzw(q) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64).reshape(4)
    return np.array([q[1], q[2], q[3], q[0]])


def xyzw_to_wxyz(q) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64).reshape(4)
    return np.array([q[3], q[0], q[1], q[2]])


def _rotation_wxyz(q) -> Rotation:
    q = np.asarray(q, dtype=np.float64).reshape(4)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-9:
        raise ValueError(f"quaternion (w, x, y, z) must be finite and non-zero, got {q.tolist()}")
    return Rotation.from_quat(wxyz_to_xyzw(q / n))


def yaw_pitch_to_quat_wxyz(yaw: float, pitch: float = 0.0) -> np.ndarray:
    """(w, x, y, z) of the rotation yaw about +Y then pitch about the camera's +X (envs.geometry)."""
    return xyzw_to_wxyz(Rotation.from_euler("YX", [yaw, pitch]).as_quat())


def quat_wxyz_to_yaw_pitch(q) -> tuple[float, float]:
    """Inverse of `yaw_pitch_to_quat_wxyz`; any roll is dropped (Habitat agents never roll)."""
    yaw, pitch, _ = _rotation_wxyz(q).as_euler("YXZ")
    return float(yaw), float(pitch)


def quat_wxyz_to_yaw(q) -> float:
    """Heading of a body rotation: angle of its -Z axis in the floor plane (robust to tiny tilts)."""
    fwd = _rotation_wxyz(q).apply([0.0, 0.0, -1.0])
    return float(np.arctan2(-fwd[0], -fwd[2]))


@dataclass(frozen=True)
class HabitatState:
    """What habitat_sim needs to place the agent: body on the floor (yaw only) + camera pose in world."""

    agent_position: np.ndarray  # (3,) floor point under the camera
    agent_rotation_wxyz: np.ndarray  # (4,) yaw only
    sensor_position: np.ndarray  # (3,) camera, world frame
    sensor_rotation_wxyz: np.ndarray  # (4,) yaw + pitch, world frame

    @property
    def agent_rotation_coeffs(self) -> list[float]:
        """(x, y, z, w): the order habitat_sim.utils.common.quat_from_coeffs expects."""
        return wxyz_to_xyzw(self.agent_rotation_wxyz).tolist()

    @property
    def sensor_rotation_coeffs(self) -> list[float]:
        return wxyz_to_xyzw(self.sensor_rotation_wxyz).tolist()


def pose_to_habitat(pose: Pose, sensor_height: float) -> HabitatState:
    cam = pose.xyz
    return HabitatState(
        agent_position=cam - np.array([0.0, sensor_height, 0.0]),
        agent_rotation_wxyz=yaw_pitch_to_quat_wxyz(pose.yaw, 0.0),
        sensor_position=cam.copy(),
        sensor_rotation_wxyz=yaw_pitch_to_quat_wxyz(pose.yaw, pose.pitch),
    )


def sensor_state_to_pose(position, rotation_wxyz) -> Pose:
    """Our pose from a habitat sensor state (AgentState.sensor_states[uuid]: world position + rotation)."""
    p = np.asarray(position, dtype=np.float64).reshape(3)
    yaw, pitch = quat_wxyz_to_yaw_pitch(rotation_wxyz)
    return Pose((float(p[0]), float(p[1]), float(p[2])), yaw, pitch)


def agent_state_to_pose(agent_position, agent_rotation_wxyz, sensor_height: float, pitch: float = 0.0) -> Pose:
    """Our pose from the body state when the sensor state is not at hand (sensor straight above body)."""
    p = np.asarray(agent_position, dtype=np.float64).reshape(3)
    return Pose((float(p[0]), float(p[1] + sensor_height), float(p[2])), quat_wxyz_to_yaw(agent_rotation_wxyz), pitch)
