"""Camera path of a video from dense optical flow and the first frame's depth (AVDC style).

Imagined videos have no depth; the real current observation's depth stands in for the first frame
(the first imagined frame is the current view), which also fixes the metric scale. Per frame pair:
dense flow (OpenCV DIS or Farneback) with a forward-backward check gives 2D matches of pixels whose
depth is known, i.e. 3D-2D correspondences; a rigid motion is fitted to them, either planar
(x, z, yaw: what a ground robot can do; robust least squares with scipy) or full 6-DoF with
cv2.solvePnPRansac. The first frame's depth is kept as a point cloud and re-rendered (z-buffered
splat) at every estimated pose, so later pairs use it where it is still in view. Dense flow at 64 px
loses large turns, so each pair's flow is seeded with the flow a motion guess predicts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from envs.config import check_at_least
from envs.geometry import backproject_depth, intrinsics_from_hfov
from models.red_box import redness
from planners.readback.path import PathEstimate

# OpenCV cameras look along +Z with y down; ours (Habitat) look along -Z with y up.
_CV = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class FlowPathConfig:
    flow: Literal["dis", "farneback"] = "dis"
    motion: Literal["planar", "pnp"] = "planar"
    fb_check_px: float = 1.0  # forward-backward flow disagreement above this (at 64 px wide) = bad match
    inlier_px: float = 1.5  # reprojection error of an inlier (at 64 px wide; scaled with width)
    max_points: int = 1500  # correspondences per pair (random subset; the fit is 3-6 parameters)
    min_points: int = 12
    min_depth: float = 0.05
    max_depth: float = 20.0  # set just below a sensor's clip value (Habitat: 5.0) to drop clipped pixels
    iterations: int = 2  # flow -> fit rounds per pair; each round seeds the flow with the last fit
    hfov_deg: float = 79.0  # only used when K is not given
    seed: int = 0

    def __post_init__(self) -> None:
        if self.flow not in ("dis", "farneback"):
            raise ValueError(f"flow must be 'dis' or 'farneback', got {self.flow!r}")
        if self.motion not in ("planar", "pnp"):
            raise ValueError(f"motion must be 'planar' or 'pnp', got {self.motion!r}")
        check_at_least(self, iterations=1)
        if self.fb_check_px <= 0 or self.inlier_px <= 0:
            raise ValueError("fb_check_px and inlier_px must be > 0")
        if self.min_points < 6 or self.max_points < self.min_points:
            raise ValueError(f"need 6 <= min_points <= max_points, got {self.min_points}, {self.max_points}")
        if not (0 <= self.min_depth < self.max_depth):
            raise ValueError(f"need 0 <= min_depth < max_depth, got {self.min_depth}, {self.max_depth}")


@dataclass(frozen=True)
class PnPFlowPathConfig(FlowPathConfig):
    """The `flow_pnp` read-back: the same flow, a full 6-DoF fit."""

    motion: Literal["planar", "pnp"] = "pnp"


def dense_flow(a: np.ndarray, b: np.ndarray, method: str = "farneback", init: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 2) flow from RGB frame a to b (pixels, u then v), optionally starting from `init`
    (the flow a motion guess predicts) so that turns of tens of pixels are not lost at 64 px."""
    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    flow = None if init is None else np.ascontiguousarray(init, dtype=np.float32).copy()
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        dis.setPatchSize(max(4, min(8, a.shape[1] // 16)))
        dis.setPatchStride(max(1, dis.getPatchSize() // 2))
        return dis.calc(ga, gb, flow)
    levels = max(1, int(np.log2(min(a.shape[:2]) / 16)))
    flags = 0 if flow is None else cv2.OPTFLOW_USE_INITIAL_FLOW
    return cv2.calcOpticalFlowFarneback(ga, gb, flow, 0.5, levels, max(5, a.shape[1] // 8), 5, 5, 1.1, flags)


def global_yaw(a: np.ndarray, b: np.ndarray, K: np.ndarray) -> float:
    """Yaw from a to b (left positive) from the global horizontal image shift (phase correlation):
    the starting guess that lets local flow lock on after a large turn."""
    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float64)
    win = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_64F)
    (dx, _), _ = cv2.phaseCorrelate(ga, gb, win)
    return float(np.arctan2(dx, K[0, 0]))


def texture_mask(frame: np.ndarray, min_eig: float = 1e-3, min_share: float = 0.05) -> np.ndarray:
    """Pixels whose flow can be trusted (minimum structure-tensor eigenvalue, cv2.cornerMinEigenVal);
    flat walls give consistent but wrong zero flow. Keeps at least `min_share` of the pixels."""
    eig = cv2.cornerMinEigenVal(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0, 3)
    thr = min(min_eig, float(np.quantile(eig, 1.0 - min_share)))
    return eig >= thr


def predicted_flow(T: np.ndarray, depth: np.ndarray, valid: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W, 2) flow that camera motion T (next camera in this one) induces; pixels without depth
    get the rotation-only flow."""
    H, W = depth.shape
    d = np.where(valid, depth, 1e6).astype(np.float64)  # far away = rotation only
    P = backproject_depth(d, K).reshape(-1, 3).astype(np.float64)
    q, _ = _project(_transform_into(T, P), K)
    vv, uu = np.mgrid[0:H, 0:W]
    return (q - np.stack([uu.ravel() + 0.5, vv.ravel() + 0.5], axis=1)).reshape(H, W, 2).astype(np.float32)


def _project(P: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = -P[:, 2]
    zz = np.where(np.abs(z) < 1e-6, 1e-6, z)
    return np.stack([K[0, 0] * P[:, 0] / zz + K[0, 2], -K[1, 1] * P[:, 1] / zz + K[1, 2]], axis=1), z


def planar_motion(x: float, z: float, yaw: float) -> np.ndarray:
    """4x4 motion on the floor plane: translation (x, 0, z), then `yaw` about the up axis."""
    return _planar_T(np.array([x, z, yaw], dtype=np.float64))


def _planar_T(p: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("Y", p[2]).as_matrix()
    T[0, 3], T[2, 3] = p[0], p[1]
    return T


def _transform_into(T: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Points P (N, 3) in camera i -> camera i+1, where T is camera i+1's pose in camera i."""
    R, t = T[:3, :3], T[:3, 3]
    return (P - t) @ R


def _yaw_of(T: np.ndarray) -> float:
    return float(Rotation.from_matrix(T[:3, :3]).as_euler("YXZ")[0])


def _fit_planar(P: np.ndarray, uv: np.ndarray, K: np.ndarray, scale_px: float, yaw0: float,
                xz0: np.ndarray | None = None) -> np.ndarray:
    def res(p):
        q, _ = _project(_transform_into(_planar_T(p), P), K)
        return (q - uv).ravel()

    sol = least_squares(res, x0=np.array([*(np.zeros(2) if xz0 is None else xz0), yaw0]), loss="soft_l1", f_scale=scale_px, method="trf")
    return _planar_T(sol.x)


def _fit_pnp(P: np.ndarray, uv: np.ndarray, K: np.ndarray, inlier_px: float) -> np.ndarray | None:
    ok, rvec, tvec, _ = cv2.solvePnPRansac(
        (P @ _CV).astype(np.float64), uv.astype(np.float64), K, None,
        reprojectionError=inlier_px, iterationsCount=200, flags=cv2.SOLVEPNP_ITERATIVE,
    )
    if not ok:
        return None
    Tcv = np.eye(4)
    Tcv[:3, :3] = cv2.Rodrigues(rvec)[0]
    Tcv[:3, 3] = tvec.ravel()
    S = np.eye(4)
    S[:3, :3] = _CV
    return S @ np.linalg.inv(Tcv) @ S  # camera i+1 pose in camera i, Habitat axes


def render_depth(cloud: np.ndarray, T: np.ndarray, K: np.ndarray, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Depth map of a point cloud (N, 3, first-camera frame) seen from camera pose T (in the first
    camera): z-buffered splat, then single-pixel holes (forward motion spreads the points) filled
    from their nearest neighbour. Re-rendering the first frame's cloud at every step instead of
    warping the last depth map keeps resampling errors from compounding along the path."""
    q, z = _project(_transform_into(T, cloud), K)
    with np.errstate(invalid="ignore"):
        keep = (z > 1e-3) & np.all(np.isfinite(q), axis=1) & (q[:, 0] >= 0) & (q[:, 0] < W) & (q[:, 1] >= 0) & (q[:, 1] < H)
    u, v = q[keep, 0].astype(int), q[keep, 1].astype(int)
    out = np.full(H * W, np.inf, dtype=np.float32)
    np.minimum.at(out, v * W + u, z[keep].astype(np.float32))
    out = out.reshape(H, W)
    ok = np.isfinite(out)
    big = np.float32(1e9)
    filled = cv2.erode(np.where(ok, out, big), np.ones((3, 3), np.uint8))
    hole = ~ok & (filled < big)
    # only fill pixels with at least 3 valid neighbours: a hole inside a surface, not its edge
    hole &= cv2.filter2D(ok.astype(np.float32), -1, np.ones((3, 3), np.float32), borderType=cv2.BORDER_CONSTANT) >= 3
    out = np.where(ok, out, np.where(hole, filled, 0.0)).astype(np.float32)
    return out, ok | hole


def photometric_error(a: np.ndarray, b: np.ndarray, T: np.ndarray, depth: np.ndarray, valid: np.ndarray, K: np.ndarray) -> float:
    """Mean absolute grey-level difference between a and b warped into a by motion T and a's depth,
    over a's pixels with depth; pixels T moves out of view count as a fixed penalty so that a
    motion cannot look good by explaining nothing. Picks among starting guesses."""
    H, W = depth.shape
    fl = predicted_flow(T, depth, valid, K)
    vv, uu = np.mgrid[0:H, 0:W].astype(np.float32)
    mx, my = uu + fl[..., 0], vv + fl[..., 1]
    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float32)
    warped = cv2.remap(gb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0)
    err = np.where(warped < 0, 40.0, np.abs(warped - ga))
    return float(err[valid].mean()) if valid.any() else np.inf


def _fit_pair(a: np.ndarray, b: np.ndarray, depth: np.ndarray, valid: np.ndarray, usable: np.ndarray, K: np.ndarray,
              T: np.ndarray, cfg: FlowPathConfig, rng: np.random.Generator, rounds: int) -> tuple[np.ndarray, float]:
    """Motion of b's camera in a's, refined `rounds` times from T: flow seeded by T's prediction,
    forward-backward check, robust fit. Returns (T, confidence = inlier share, 0 if it failed)."""
    H, W = depth.shape
    px = W / 64.0
    vv, uu = np.mgrid[0:H, 0:W]
    conf = 0.0
    for _ in range(rounds):
        fwd = dense_flow(a, b, cfg.flow, predicted_flow(T, depth, valid, K))
        bwd = dense_flow(b, a, cfg.flow, -fwd)
        u2, v2 = uu + 0.5 + fwd[..., 0], vv + 0.5 + fwd[..., 1]
        back = cv2.remap(bwd, (u2 - 0.5).astype(np.float32), (v2 - 0.5).astype(np.float32), cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(1e3, 1e3))
        inside = (u2 >= 0) & (u2 < W) & (v2 >= 0) & (v2 < H)
        good = usable & inside & (np.linalg.norm(fwd + back, axis=-1) < cfg.fb_check_px * px)
        if good.sum() < cfg.min_points:
            return T, 0.0
        sel = np.flatnonzero(good.ravel())
        if len(sel) > cfg.max_points:
            sel = rng.choice(sel, cfg.max_points, replace=False)
        P = backproject_depth(depth, K).reshape(-1, 3)[sel].astype(np.float64)
        uv = np.stack([u2.ravel()[sel], v2.ravel()[sel]], axis=1)
        if cfg.motion == "pnp":
            T_new = _fit_pnp(P, uv, K, cfg.inlier_px * px)
        else:
            T_new = _fit_planar(P, uv, K, cfg.inlier_px * px, _yaw_of(T), T[[0, 2], 3])
        if T_new is None:
            return T, 0.0
        T = T_new
        q, _ = _project(_transform_into(T, P), K)
        inl = np.linalg.norm(q - uv, axis=1) < cfg.inlier_px * px
        # share of all usable pixels (not just the matched ones) that the motion explains
        conf = float(inl.sum()) / max(int(usable.sum()), 1) * len(sel) / max(int(good.sum()), 1)
        conf = float(np.clip(conf, 0.0, 1.0)) * min(1.0, inl.sum() / 100.0)
    return T, conf


def fit_motion(a: np.ndarray, b: np.ndarray, depth: np.ndarray, valid: np.ndarray, K: np.ndarray, inits: list[np.ndarray],
               cfg: FlowPathConfig, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Motion of b's camera in a's (4x4) and its confidence, from a's depth and several starting
    guesses: repetitive textures (stripes, tiles) can fool any single one, so one flow -> fit round
    runs from each and the motion that best warps b onto a (photometric error over a's pixels with
    depth) is refined. Confidence 0: no usable matches (the motion is then meaningless)."""
    usable = valid & (redness(a) < 0.2) & (redness(b) < 0.2) & texture_mask(a)  # the red outline is drawn, not seen
    tries = [_fit_pair(a, b, depth, valid, usable, K, T0, cfg, rng, 1) for T0 in inits]
    T, conf = min(tries, key=lambda tc: photometric_error(a, b, tc[0], depth, valid, K) if tc[1] > 0 else np.inf)
    if cfg.iterations > 1 and conf > 0:
        T, conf = _fit_pair(a, b, depth, valid, usable, K, T, cfg, rng, cfg.iterations - 1)
    return T, conf


def flow_path(frames: np.ndarray, first_depth: np.ndarray, K: np.ndarray | None = None,
              cfg: FlowPathConfig | None = None) -> PathEstimate:
    """Read the camera path of `frames` (F, H, W, 3) uint8, given the metric depth of the first
    frame (any resolution, resized to the video's) and intrinsics K at the video's resolution."""
    cfg = cfg or FlowPathConfig()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (F, H, W, 3), got {frames.dtype} {frames.shape}")
    if len(frames) < 2:
        raise ValueError(f"need at least 2 frames to read a path, got {len(frames)}")
    F, H, W = frames.shape[:3]
    first_depth = np.asarray(first_depth, dtype=np.float32)
    if first_depth.ndim != 2:
        raise ValueError(f"first_depth must be (H, W) metres, got shape {first_depth.shape}; pass the current observation's depth")
    if first_depth.shape != (H, W):
        first_depth = cv2.resize(first_depth, (W, H), interpolation=cv2.INTER_NEAREST)
    K = intrinsics_from_hfov(cfg.hfov_deg, W, H) if K is None else np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or abs(K[0, 2] - W / 2) > W / 4:
        raise ValueError(f"K must be 3x3 intrinsics at the video resolution {W}x{H} (cx={W / 2}); got {K.tolist()}; "
                         f"use envs.geometry.intrinsics_from_hfov(79, {W}, {H})")

    rng = np.random.default_rng(cfg.seed)
    depth = np.nan_to_num(first_depth, nan=0.0, posinf=0.0)
    valid = (depth > cfg.min_depth) & (depth < cfg.max_depth)
    cloud = backproject_depth(depth, K)[valid].astype(np.float64)  # first camera frame
    poses = [np.eye(4)]
    confs: list[float] = []
    T_prev = np.eye(4)
    for i in range(F - 1):
        a, b = frames[i], frames[i + 1]
        # starting guesses: the global image shift, the last step on a smooth path, standing still
        inits = [_planar_T(np.array([0.0, 0.0, global_yaw(a, b, K)])), T_prev, np.eye(4)]
        T, conf = fit_motion(a, b, depth, valid, K, inits, cfg, rng)
        if conf == 0.0:  # no usable matches: keep the global-shift yaw, and say so with zero confidence
            T = inits[0]
        T_prev = T
        confs.append(conf)
        poses.append(poses[-1] @ T)
        depth, valid = render_depth(cloud, poses[-1], K, H, W)
        valid &= (depth > cfg.min_depth) & (depth < cfg.max_depth)
    return PathEstimate.from_poses(np.stack(poses), confidence=float(np.mean(confs)), method=f"flow-{cfg.flow}-{cfg.motion}")


def flow_readback(frames: np.ndarray, depth: np.ndarray | None, K: np.ndarray, poses: np.ndarray | None = None,
                  cfg: FlowPathConfig | None = None) -> PathEstimate:
    """The `flow` / `flow_pnp` read-back (planners.readback.READBACKS): needs the current view's depth."""
    if depth is None:
        raise ValueError("readback=flow needs depth; this env gives none, use readback=idm")
    return flow_path(frames, depth, K, cfg)
