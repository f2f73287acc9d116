"""The agent's memory: every frame it has seen, with its pose, and the choice of model context.

The model takes a few context frames (16 in the tiny default, 169-337 in the paper) sampled
non-contiguously with their source indices kept as RoPE positions. Which frames matter is a
question of *coverage*: frames from places and headings the context does not yet show add the most.
`select_context` therefore does farthest-point sampling in a pose space (position, heading on a
circle scaled to metres, and a small time term that spreads out frames taken at one pose), always
keeping the current view last.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from envs.config import check_at_least
from envs.geometry import pose_to_matrix
from envs.types import Action, Observation, Pose
from models.types import VideoContext


@dataclass(frozen=True)
class MemoryConfig:
    """max_context: the most frames select_context may return (the model's context size).
    yaw_scale_m: metres that one radian of heading difference is worth (on a circle, so 180 deg
    apart = 2 * yaw_scale_m). time_scale_m: metres the whole time span is worth; only breaks ties
    between frames at the same pose (the look-around at the start, or waiting in place)."""

    max_context: int = 16
    yaw_scale_m: float = 1.0
    time_scale_m: float = 0.05
    max_frames: int = 100_000

    def __post_init__(self) -> None:
        check_at_least(self, max_context=1)
        if self.yaw_scale_m < 0 or self.time_scale_m < 0:
            raise ValueError(f"yaw_scale_m and time_scale_m must be >= 0, got {self.yaw_scale_m}, {self.time_scale_m}")
        if self.max_frames < self.max_context:
            raise ValueError(f"max_frames ({self.max_frames}) must be >= max_context ({self.max_context})")


class Memory:
    """All observations of an episode. Source indices are the order of `add` (0, 1, 2, ...)."""

    def __init__(self, cfg: MemoryConfig | None = None) -> None:
        self.cfg = cfg or MemoryConfig()
        self._obs: list[Observation] = []

    @classmethod
    def of(cls, frames: np.ndarray, poses: list[Pose | None], cfg: MemoryConfig | None = None,
           depths: np.ndarray | None = None) -> Memory:
        """A memory that has seen `frames` (N, H, W, 3) uint8 (and `depths` (N, H, W) metres) at `poses`."""
        memory = cls(cfg)
        for i, (rgb, pose) in enumerate(zip(frames, poses)):
            memory.add(Observation(rgb=rgb, pose=pose, depth=None if depths is None else depths[i]))
        return memory

    def add(self, obs: Observation) -> int:
        """Store one observation; returns its source index."""
        rgb = np.asarray(obs.rgb)
        if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"observation rgb must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
        if self._obs and rgb.shape != self._obs[0].rgb.shape:
            raise ValueError(f"all frames must share one resolution: memory has {self._obs[0].rgb.shape}, got {rgb.shape}")
        if len(self._obs) >= self.cfg.max_frames:
            raise ValueError(f"memory is full ({self.cfg.max_frames} frames); raise MemoryConfig.max_frames or start a new episode")
        self._obs.append(obs)
        return len(self._obs) - 1

    def __len__(self) -> int:
        return len(self._obs)

    def clear(self) -> None:
        self._obs.clear()

    def latest(self) -> Observation:
        if not self._obs:
            raise IndexError("memory is empty; add an observation first")
        return self._obs[-1]

    def observation(self, index: int) -> Observation:
        return self._obs[index]

    def frames(self) -> np.ndarray:
        """(N, H, W, 3) uint8, in source-index order."""
        if not self._obs:
            raise IndexError("memory is empty; add an observation first")
        return np.stack([o.rgb for o in self._obs])

    def poses(self) -> list[Pose | None]:
        """One pose per frame (None where the backend gave none, e.g. a rig without odometry)."""
        return [o.pose for o in self._obs]

    def pose_matrices(self) -> np.ndarray | None:
        """(N, 4, 4) camera-to-world, or None if any frame lacks a pose."""
        ps = self.poses()
        if not ps or any(p is None for p in ps):
            return None
        return np.stack([pose_to_matrix(p) for p in ps])

    def _features(self) -> np.ndarray:
        """(N, D) points whose Euclidean distance measures how different two views are."""
        n = len(self._obs)
        t = (np.arange(n, dtype=np.float64) / max(n - 1, 1) * self.cfg.time_scale_m)[:, None]
        ps = self.poses()
        if any(p is None for p in ps):  # no odometry: fall back to even spacing in time
            return t
        xyz = np.array([p.position for p in ps], dtype=np.float64)
        yaw = np.array([p.yaw for p in ps], dtype=np.float64)
        heading = self.cfg.yaw_scale_m * np.stack([np.cos(yaw), np.sin(yaw)], axis=1)
        return np.concatenate([xyz, heading, t], axis=1)

    def select_indices(self, n: int) -> np.ndarray:
        """Source indices of a sparse, diverse context of min(n, len) frames; the latest is last."""
        if not (1 <= n <= self.cfg.max_context):
            raise ValueError(f"context size must be in [1, max_context={self.cfg.max_context}], got {n}")
        N = len(self._obs)
        if N == 0:
            raise IndexError("memory is empty; add an observation (e.g. after look_around_actions) first")
        if N <= n:
            return np.arange(N, dtype=np.int64)
        # Farthest-point sampling seeded with the current view. Hand-written: scipy/sklearn have no
        # greedy k-centre; it is O(n * N) with N the memory size, cheap for episode-length memories.
        X = self._features()
        chosen = [N - 1]
        dist = np.linalg.norm(X - X[N - 1], axis=1)
        for _ in range(n - 1):
            dist[chosen] = -1.0
            nxt = int(np.argmax(dist[::-1]))  # ties go to the most recent frame
            nxt = N - 1 - nxt
            chosen.append(nxt)
            dist = np.minimum(dist, np.linalg.norm(X - X[nxt], axis=1))
        return np.sort(np.asarray(chosen, dtype=np.int64))

    def select_context(self, n: int | None = None, size: tuple[int, int] | None = None) -> VideoContext:
        """Context for the model: `n` frames (default max_context), resized to `size` = (H, W) if
        given (INTER_AREA, as the training clips are downsampled), with their source indices, poses
        and depth maps (each when every chosen frame has one; depth resized with the nearest
        neighbour, since averaging depths across an edge would put points in mid-air)."""
        idx = self.select_indices(self.cfg.max_context if n is None else n)
        frames = np.stack([self._obs[i].rgb for i in idx])
        ds = [self._obs[i].depth for i in idx]
        depths = None if any(d is None for d in ds) else np.stack(ds).astype(np.float32)
        if size is not None:
            h, w = size
            if h <= 0 or w <= 0:
                raise ValueError(f"size must be positive (H, W), got {size}")
            if (h, w) != frames.shape[1:3]:
                frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
            if depths is not None and (h, w) != depths.shape[1:3]:
                depths = np.stack([cv2.resize(d, (w, h), interpolation=cv2.INTER_NEAREST) for d in depths])
        ps = [self._obs[i].pose for i in idx]
        poses = None if any(p is None for p in ps) else np.stack([pose_to_matrix(p) for p in ps])
        return VideoContext(frames=frames, indices=idx, poses=poses, depths=depths)


def look_around_actions(turn_angle_deg: float = 30.0) -> list[Action]:
    """A full turn in place (TURN_LEFT repeated) to fill the memory before the first imagination."""
    if not (0.0 < turn_angle_deg <= 180.0):
        raise ValueError(f"turn_angle_deg must be in (0, 180], got {turn_angle_deg}; Habitat uses 30")
    return [Action.TURN_LEFT] * int(math.ceil(360.0 / turn_angle_deg - 1e-6))
