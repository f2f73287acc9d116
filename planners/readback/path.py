"""The camera path implied by an imagined video, as both read-back methods return it.

Step convention (shared by the inverse-dynamics model, the flow fit and the controller): going from
frame i to frame i+1 the camera first moves `dforward` metres along its own viewing axis (-Z) and
then turns `dyaw` radians about +Y (left positive, Habitat). This is what one Habitat MOVE_FORWARD
followed by a TURN does, so a step is directly quantisable into actions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from envs.geometry import pose_to_matrix, world_poses
from envs.types import Pose


def step_matrix(dforward: float, dyaw: float) -> np.ndarray:
    """4x4 transform of camera i+1 in camera i's frame for one (dforward, dyaw) step."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("Y", dyaw).as_matrix()
    T[2, 3] = -dforward
    return T


def steps_to_poses(steps: np.ndarray) -> np.ndarray:
    """(F-1, 2) steps -> (F, 4, 4) camera-to-first-camera transforms (first one is identity)."""
    steps = np.asarray(steps, dtype=np.float64).reshape(-1, 2)
    poses = np.empty((len(steps) + 1, 4, 4))
    poses[0] = np.eye(4)
    for i, (df, dy) in enumerate(steps):
        poses[i + 1] = poses[i] @ step_matrix(df, dy)
    return poses


def poses_to_steps(poses_rel: np.ndarray) -> np.ndarray:
    """(F, 4, 4) camera-to-first-camera -> (F-1, 2) (dforward, dyaw). Lateral and vertical motion
    are dropped (a ground robot cannot strafe); `poses_rel` keeps them."""
    poses_rel = np.asarray(poses_rel, dtype=np.float64)
    out = np.zeros((max(len(poses_rel) - 1, 0), 2))
    for i in range(len(out)):
        rel = np.linalg.inv(poses_rel[i]) @ poses_rel[i + 1]
        out[i, 0] = -rel[2, 3]
        out[i, 1] = Rotation.from_matrix(rel[:3, :3]).as_euler("YXZ")[0]
    return out


def relative_matrices(poses: list[Pose] | np.ndarray) -> np.ndarray:
    """World poses (list of Pose, or (F, 4, 4) camera-to-world) -> (F, 4, 4) camera-to-first-camera."""
    mats = np.stack([pose_to_matrix(p) for p in poses]) if not isinstance(poses, np.ndarray) else np.asarray(poses, dtype=np.float64)
    if mats.ndim != 3 or mats.shape[1:] != (4, 4):
        raise ValueError(f"poses must be a list of Pose or (F, 4, 4) matrices, got shape {mats.shape}")
    inv0 = np.linalg.inv(mats[0])
    return np.einsum("ij,fjk->fik", inv0, mats)


@dataclass
class PathEstimate:
    """A camera path read back from a video.

    poses_rel: (F, 4, 4) camera-to-first-camera (Habitat camera axes: x right, y up, looks along -Z).
    steps: (F-1, 2) per frame pair (dforward metres, dyaw radians, left positive).
    confidence: [0, 1], how much the method trusts the estimate (inlier share for the flow fit).
    method: "flow", "idm", "truth", ...
    """

    poses_rel: np.ndarray
    steps: np.ndarray
    confidence: float
    method: str

    def __post_init__(self) -> None:
        self.poses_rel = np.asarray(self.poses_rel, dtype=np.float64)
        self.steps = np.asarray(self.steps, dtype=np.float64)
        F = len(self.poses_rel)
        if self.poses_rel.shape != (F, 4, 4) or F < 1:
            raise ValueError(f"poses_rel must be (F, 4, 4) with F >= 1, got {self.poses_rel.shape}")
        if self.steps.shape != (F - 1, 2):
            raise ValueError(f"steps must be (F-1, 2) = ({F - 1}, 2) for {F} poses, got {self.steps.shape}")
        if not (0.0 <= self.confidence <= 1.0):
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")

    @classmethod
    def from_steps(cls, steps: np.ndarray, confidence: float, method: str) -> PathEstimate:
        return cls(steps_to_poses(steps), np.asarray(steps, dtype=np.float64).reshape(-1, 2), confidence, method)

    @classmethod
    def from_poses(cls, poses_rel: np.ndarray, confidence: float, method: str) -> PathEstimate:
        return cls(poses_rel, poses_to_steps(poses_rel), confidence, method)

    @property
    def num_frames(self) -> int:
        return len(self.poses_rel)

    def world_poses(self, start: Pose) -> list[Pose]:
        """The path in the world frame, given where the first frame was taken."""
        return world_poses(start, self.poses_rel)


def reported_path(frames: np.ndarray, depth: np.ndarray | None, K: np.ndarray, poses: np.ndarray | None = None,
                  cfg: None = None) -> PathEstimate:
    """The `true` read-back (planners.readback.READBACKS): poses the imagination itself reports."""
    if poses is None:
        raise ValueError("readback=true needs an imagination that reports poses (the oracle); use readback=flow")
    return PathEstimate.from_poses(np.asarray(poses), 1.0, "truth")
