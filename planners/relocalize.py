"""Where am I, relative to where I meant to be? The real view against an imagined reference frame.

The reference is the frame the imagination predicts at an intended pose; the read-back of the
two-frame video [real view, reference] (flow + the real depth, or the inverse-dynamics model) is
the reference camera's pose in the real camera's frame, whose inverse places the real camera
relative to the intended pose. A confidence gate decides whether to trust it: the read-back's own
confidence, the photometric residual once the reference is warped onto the real view by the
estimated motion (a poor imagined frame leaves a large residual whatever the motion), and a bound
on how large a correction can plausibly be.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from envs.geometry import intrinsics_from_hfov
from envs.types import Observation


@dataclass(frozen=True)
class RelocalizationGate:
    min_confidence: float = 0.5  # read-back confidence below this: ignored
    max_residual: float = 20.0  # mean absolute grey-level error after alignment above this: ignored
    max_translation: float = 0.75  # metres; a larger correction is implausible for the drift: ignored
    max_yaw_deg: float = 30.0


@dataclass(frozen=True)
class Relocalization:
    """ref_from_real: the real camera's pose in the reference camera's frame (4x4, Habitat axes)."""

    ref_from_real: np.ndarray
    confidence: float
    residual: float
    accepted: bool
    reason: str  # why it was ignored ("" when accepted)

    @property
    def translation(self) -> float:
        return float(np.hypot(self.ref_from_real[0, 3], self.ref_from_real[2, 3]))

    @property
    def yaw_deg(self) -> float:
        return float(np.degrees(np.arctan2(self.ref_from_real[0, 2], self.ref_from_real[2, 2])))


def relocalize(real: Observation, reference: np.ndarray, hfov_deg: float, method: str = "flow",
               gate: RelocalizationGate | None = None, prior: np.ndarray | None = None) -> Relocalization:
    """Estimate the real camera's pose relative to the camera of `reference` (H, W, 3) uint8.
    `prior`: a guess of that pose (4x4 ref_from_real, e.g. from the pose estimate), one more
    starting point for the flow fit besides the global image shift and standing still."""
    from planners.readback.flow_path import FlowPathConfig, fit_motion, global_yaw, photometric_error, planar_motion

    gate = gate or RelocalizationGate()
    H, W = reference.shape[:2]
    rgb = real.rgb if real.rgb.shape[:2] == (H, W) else cv2.resize(real.rgb, (W, H), interpolation=cv2.INTER_AREA)
    ref = np.asarray(reference, dtype=np.uint8)
    K = intrinsics_from_hfov(hfov_deg, W, H)
    depth = None
    if real.depth is not None:
        depth = cv2.resize(np.nan_to_num(real.depth.astype(np.float32)), (W, H), interpolation=cv2.INTER_NEAREST)
    if method == "idm":
        from planners.readback.inverse_dynamics import idm_path

        est = idm_path(np.stack([rgb, ref]))
        real_from_ref, confidence = est.poses_rel[1], float(est.confidence)
    elif depth is None:
        raise ValueError("relocalisation by flow needs the real view's depth; this env gives none, use planner.correction_readback=idm")
    else:
        cfg = FlowPathConfig()
        valid = (depth > cfg.min_depth) & (depth < cfg.max_depth)
        inits = [planar_motion(0.0, 0.0, global_yaw(rgb, ref, K)), np.eye(4)]
        if prior is not None:
            inits.insert(0, np.linalg.inv(prior))
        real_from_ref, confidence = fit_motion(rgb, ref, depth, valid, K, inits, cfg, np.random.default_rng(cfg.seed))
    residual = float("nan")
    if depth is not None:
        residual = photometric_error(rgb, ref, real_from_ref, depth, depth > 0.05, K)
    rel = Relocalization(np.linalg.inv(real_from_ref), confidence, residual, False, "")
    if rel.confidence < gate.min_confidence:
        why = f"read-back confidence {rel.confidence:.2f} < {gate.min_confidence}"
    elif np.isfinite(residual) and residual > gate.max_residual:  # NaN (no depth): nothing to check it with
        why = f"residual {residual:.1f} > {gate.max_residual} grey levels"
    else:
        why = ""
    # the correction is the change from the prior (from standing at the reference without one)
    change = rel if prior is None else Relocalization(np.linalg.inv(prior) @ rel.ref_from_real, 0.0, 0.0, False, "")
    if not why and (change.translation > gate.max_translation or abs(change.yaw_deg) > gate.max_yaw_deg):
        why = f"correction {change.translation:.2f} m / {change.yaw_deg:.0f} deg is beyond the plausible drift"
    return Relocalization(rel.ref_from_real, rel.confidence, residual, not why, why)
