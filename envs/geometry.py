"""Camera geometry shared by every backend, model and planner (one helper, used everywhere).

Conventions (Habitat): world Y-up, camera looks along -Z, x right, y up in camera space.
Image pixels: u right, v down. Egocentric waypoints follow Video4Spatial: (dt in R^3 metres,
dr = (yaw, pitch, roll) radians) expressed in the current camera frame.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

from envs.types import Box2D, Pose


def intrinsics_from_hfov(hfov_deg: float, width: int, height: int) -> np.ndarray:
    """3x3 pinhole K for square pixels, principal point at the image centre (Habitat's model)."""
    if not (1.0 < hfov_deg < 179.0):
        raise ValueError(f"hfov must be in (1, 179) degrees, got {hfov_deg}; Habitat ObjectNav uses 79")
    if width <= 0 or height <= 0:
        raise ValueError(f"resolution must be positive, got {width}x{height}")
    fx = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return np.array([[fx, 0.0, width / 2.0], [0.0, fx, height / 2.0], [0.0, 0.0, 1.0]], dtype=np.float64)


def vfov_deg(hfov_deg: float, width: int, height: int) -> float:
    return math.degrees(2.0 * math.atan(math.tan(math.radians(hfov_deg) / 2.0) * height / width))


def pose_rotation(pose: Pose) -> Rotation:
    """Camera-to-world rotation: yaw about +Y, then pitch about the camera's +X."""
    return Rotation.from_euler("YX", [pose.yaw, pose.pitch])


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """4x4 camera-to-world transform (camera frame: x right, y up, looks along -Z)."""
    T = np.eye(4)
    T[:3, :3] = pose_rotation(pose).as_matrix()
    T[:3, 3] = pose.xyz
    return T


def matrix_to_pose(T: np.ndarray) -> Pose:
    yaw, pitch, _ = Rotation.from_matrix(T[:3, :3]).as_euler("YXZ")
    return Pose(tuple(float(v) for v in T[:3, 3]), float(yaw), float(pitch))


def waypoints_to_matrices(waypoints: np.ndarray) -> np.ndarray:
    """Egocentric waypoints (F, 6) = (dt xyz metres, dr yaw/pitch/roll radians) -> (F, 4, 4) transforms
    relative to the current camera. The convention of `apply_relative` (Euler "YXZ"), built directly so
    that roll survives (Pose has none)."""
    w = np.asarray(waypoints, dtype=np.float64)
    out = np.tile(np.eye(4), (len(w), 1, 1))
    out[:, :3, :3] = Rotation.from_euler("YXZ", w[:, 3:]).as_matrix()
    out[:, :3, 3] = w[:, :3]
    return out


def matrices_to_waypoints(poses_rel: np.ndarray) -> np.ndarray:
    """(F, 4, 4) transforms relative to the current camera -> (F, 6) egocentric waypoints (the inverse
    of `waypoints_to_matrices`)."""
    out = np.zeros((len(poses_rel), 6))
    for i, T in enumerate(poses_rel):
        out[i, :3] = T[:3, 3]
        out[i, 3:] = Rotation.from_matrix(T[:3, :3]).as_euler("YXZ")
    return out


def world_poses(start: Pose, poses_rel: np.ndarray) -> list[Pose]:
    """A path given relative to the camera at `start`, (F, 4, 4), as world poses."""
    T0 = pose_to_matrix(start)
    return [matrix_to_pose(T0 @ T) for T in poses_rel]


def wrap_angle(a):
    """Wrap radians to [-pi, pi)."""
    return (a + np.pi) % (2 * np.pi) - np.pi


def yaw_towards(dx: float, dz: float) -> float:
    """Habitat yaw that looks along the floor direction (dx, dz): forward is (-sin yaw, -cos yaw)."""
    return math.atan2(-dx, -dz)


def relative_pose(ref: Pose, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Egocentric waypoint of `pose` seen from `ref`: (dt (3,) metres in ref's camera frame,
    dr = (dyaw, dpitch, droll) radians). Inverse of `apply_relative`."""
    Tr, Tp = pose_to_matrix(ref), pose_to_matrix(pose)
    rel = np.linalg.inv(Tr) @ Tp
    yaw, pitch, roll = Rotation.from_matrix(rel[:3, :3]).as_euler("YXZ")
    return rel[:3, 3].copy(), np.array([yaw, pitch, roll])


def apply_relative(ref: Pose, dt: np.ndarray, dr: np.ndarray) -> Pose:
    """Pose reached by moving dt (ref camera frame) and rotating dr = (yaw, pitch, roll) from `ref`."""
    rel = np.eye(4)
    rel[:3, :3] = Rotation.from_euler("YXZ", np.asarray(dr, dtype=np.float64)).as_matrix()
    rel[:3, 3] = np.asarray(dt, dtype=np.float64)
    return matrix_to_pose(pose_to_matrix(ref) @ rel)


def project_points(points_world: np.ndarray, pose: Pose, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, 3) world points into the image. Returns (uv (N, 2), depth (N,)) where depth is
    the distance along the viewing axis (positive in front of the camera)."""
    T = np.linalg.inv(pose_to_matrix(pose))
    pc = (T[:3, :3] @ np.asarray(points_world, dtype=np.float64).T).T + T[:3, 3]
    z = -pc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * pc[:, 0] / z + K[0, 2]
        v = -K[1, 1] * pc[:, 1] / z + K[1, 2]
    return np.stack([u, v], axis=1), z


def backproject_depth(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W) depth (metres along the viewing axis) -> (H, W, 3) points in the camera frame
    (x right, y up, -Z forward). Pixel centres are at +0.5."""
    H, W = depth.shape
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    x = (u - K[0, 2]) / K[0, 0] * depth
    y = -(v - K[1, 2]) / K[1, 1] * depth
    return np.stack([x, y, -depth], axis=-1).astype(np.float32)


def plucker_rays(poses_c2w: np.ndarray, K: np.ndarray, height: int, width: int) -> np.ndarray:
    """Plücker ray maps (F, 6, H, W) = (direction, origin x direction) for camera-to-world 4x4
    matrices (F, 4, 4), in whatever world frame the matrices are in (callers pass poses relative to
    the first target frame, as in camera-controlled video models)."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], -(v - K[1, 2]) / K[1, 1], -np.ones_like(u)], axis=-1)
    d_cam /= np.linalg.norm(d_cam, axis=-1, keepdims=True)
    out = np.empty((len(poses_c2w), 6, height, width), dtype=np.float32)
    for i, T in enumerate(np.asarray(poses_c2w, dtype=np.float64)):
        d = d_cam @ T[:3, :3].T
        o = np.broadcast_to(T[:3, 3], d.shape)
        out[i, :3] = d.transpose(2, 0, 1)
        out[i, 3:] = np.cross(o, d).transpose(2, 0, 1)
    return out


def target_centred(box: Box2D, width: int, height: int, gamma: float = 0.6) -> bool:
    """The paper's IF criterion (Video4Spatial, Sec. 4): the box centre is within gamma/2 of the
    *box's* width and height from the frame centre: |x - W/2| <= gamma/2 * box_w, likewise y."""
    if not (0.0 < gamma <= 2.0):
        raise ValueError(f"gamma must be in (0, 2], got {gamma}; the paper uses 0.6")
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    x, y = box.center
    return abs(x - width / 2.0) <= gamma / 2.0 * box.width and abs(y - height / 2.0) <= gamma / 2.0 * box.height
