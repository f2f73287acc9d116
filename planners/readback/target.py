"""Where the target is, from a box on the current view and that view's depth.

A box also covers background (a chair's legs frame the floor behind it), so the object's depth is
taken as the near cluster of depths in the box's central region rather than their mean: pixels
within `band` metres of a low percentile. Their centroid is the visible surface of the object,
which is what the agent must approach (ObjectNav success is about distance to the object).
"""
from __future__ import annotations

import numpy as np

from envs.geometry import backproject_depth, pose_to_matrix
from envs.types import Box2D, Pose


def _check(box: Box2D, depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W) metres, got shape {depth.shape}")
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be 3x3 intrinsics of the depth image, got shape {K.shape}")
    if not isinstance(box, Box2D):
        raise ValueError(f"box must be an envs.types.Box2D, got {type(box).__name__}")
    return depth


def target_points(box: Box2D, depth: np.ndarray, K: np.ndarray, core: float = 0.6, band: float = 0.4,
                  near_percentile: float = 20.0) -> np.ndarray:
    """(N, 3) camera-frame points of the object inside `box` (pixels of the depth image); empty when
    the box holds no valid depth. `core` is the share of the box (centred) that is looked at; a box
    with a mask (segmentation) gives its masked pixels instead."""
    depth = _check(box, depth, K)
    if not (0.0 < core <= 1.0):
        raise ValueError(f"core must be in (0, 1], got {core}")
    H, W = depth.shape
    if box.mask is not None and box.mask.shape == depth.shape:  # the detector segmented it: its own pixels
        sel = box.mask & np.isfinite(depth) & (depth > 0)
        if sel.sum() >= 3:
            return backproject_depth(np.where(sel, depth, 0.0).astype(np.float32), K)[sel].astype(np.float64)
    cx, cy = box.center
    hw, hh = 0.5 * core * max(box.width, 1.0), 0.5 * core * max(box.height, 1.0)
    x0, x1 = int(np.clip(np.floor(cx - hw), 0, W)), int(np.clip(np.ceil(cx + hw), 0, W))
    y0, y1 = int(np.clip(np.floor(cy - hh), 0, H)), int(np.clip(np.ceil(cy + hh), 0, H))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 3))
    d = depth[y0:y1, x0:x1]
    ok = np.isfinite(d) & (d > 0)
    if ok.sum() < 3:
        return np.zeros((0, 3))
    near = np.percentile(d[ok], near_percentile)
    sel = ok & (d <= near + band)
    pts = backproject_depth(np.where(ok, d, 0.0).astype(np.float32), _shift_K(K, x0, y0))
    return pts[sel].astype(np.float64)


def _shift_K(K: np.ndarray, x0: int, y0: int) -> np.ndarray:
    K = np.array(K, dtype=np.float64)
    K[0, 2] -= x0
    K[1, 2] -= y0
    return K


def target_position(box: Box2D, depth: np.ndarray, pose: Pose, K: np.ndarray) -> np.ndarray | None:
    """World xyz (3,) of the object's visible surface in `box`, or None without valid depth there.
    box, depth and K must share one resolution (scale a model-resolution box first)."""
    pts = target_points(box, depth, K)
    if len(pts) == 0:
        return None
    c = np.median(pts, axis=0)
    T = pose_to_matrix(pose)
    return T[:3, :3] @ c + T[:3, 3]


def target_distance(box: Box2D, depth: np.ndarray, K: np.ndarray) -> float | None:
    """Horizontal distance (m) from the camera to the object's visible surface, or None."""
    pts = target_points(box, depth, K)
    if len(pts) == 0:
        return None
    c = np.median(pts, axis=0)
    return float(np.hypot(c[0], c[2]))
