"""Conditioning signals shared by the pipeline and the trainer: RoPE positions, cameras, context picks.

Keeping them in one place guarantees training and sampling build exactly the same inputs.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from envs.config import check_choice
from envs.geometry import intrinsics_from_hfov, plucker_rays, waypoints_to_matrices


def rope_positions(context_indices: np.ndarray, num_target_latents: int, temporal_factor: int,
                   gap: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    """Temporal RoPE positions in units of one target latent frame (paper Fig. 4).

    Context latents keep their sparse source indices (divided by the codec's temporal factor and
    shifted to start at 0 — RoPE only sees differences); targets start at last context + gap."""
    idx = np.asarray(context_indices, dtype=np.float64)
    if idx.ndim != 1 or len(idx) == 0:
        raise ValueError("need at least one context index")
    ctx = (idx - idx[0]) / float(temporal_factor)
    tgt = ctx[-1] + float(gap) + np.arange(num_target_latents, dtype=np.float64)
    return ctx, tgt


def waypoints_to_c2w(waypoints: np.ndarray) -> np.ndarray:
    """Egocentric waypoints (F, 6) = (dt xyz metres, dr yaw/pitch/roll rad) relative to the first target
    frame → camera-to-world (F, 4, 4) in that frame's coordinates (envs.geometry.waypoints_to_matrices,
    checked)."""
    w = np.asarray(waypoints, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != 6:
        raise ValueError(f"waypoints must be (F, 6) rows of (dx, dy, dz, yaw, pitch, roll), got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("waypoints contain NaN or inf")
    return waypoints_to_matrices(w)


ZERO_POSE_MODES = ("first", "random")


def relative_to(c2w: np.ndarray, reference: int = 0) -> np.ndarray:
    """(F, 4, 4) camera-to-world → poses relative to camera `reference` (it becomes the identity: the
    zero pose of the Plücker maps)."""
    c2w = np.asarray(c2w, dtype=np.float64)
    return np.linalg.inv(c2w[reference])[None] @ c2w


def pick_reference(zero_pose: str, sources: list[int], rng: np.random.Generator | None) -> int:
    """The target frame that gets the zero pose: the first (`first`, the usual camera-control
    convention), or one drawn uniformly from the frames that carry a camera (`random`, paper §6.4:
    a fixed origin limits generalisation to large turns when data is limited). No generator = first."""
    check_choice("zero_pose", zero_pose, ZERO_POSE_MODES)
    if zero_pose == "first" or rng is None:
        return 0
    return int(sources[int(rng.integers(len(sources)))])


def plucker_latent(c2w_rel: np.ndarray, sources: list[int], hfov_deg: float, latent_h: int,
                   latent_w: int) -> torch.Tensor:
    """Plücker maps (6, len(sources), latent_h, latent_w) on the latent grid: one camera per target
    latent frame (`sources` from the codec), intrinsics scaled to the latent resolution."""
    K = intrinsics_from_hfov(hfov_deg, latent_w, latent_h)
    rays = plucker_rays(np.asarray(c2w_rel)[sources], K, latent_h, latent_w)  # (Fl, 6, h, w)
    return torch.from_numpy(rays).permute(1, 0, 2, 3).contiguous()


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (N, H, W, 3) → (N, height, width, 3); INTER_AREA when shrinking (no aliasing)."""
    if frames.shape[1:3] == (height, width):
        return frames
    interp = cv2.INTER_AREA if frames.shape[1] >= height and frames.shape[2] >= width else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in frames])


def pick_context(num_frames: int, max_frames: int) -> np.ndarray:
    """Evenly spread subset (always the first and the LAST = current view) when there are too many."""
    if num_frames <= max_frames:
        return np.arange(num_frames)
    return np.unique(np.round(np.linspace(0, num_frames - 1, max_frames)).astype(np.int64))


def pick_context_groups(num_frames: int, max_frames: int, group: int) -> np.ndarray:
    """`pick_context` for codecs that encode context in temporal groups: up to `max_frames` frames as
    runs of `group` consecutive frames, spread evenly, the last run ending on the current view."""
    if group <= 1:
        return pick_context(num_frames, max_frames)
    if num_frames <= max_frames:
        return np.arange(num_frames)
    runs = max_frames // group
    if runs <= 1:  # room for one run: the one ending on the current view (linspace(a, b, 1) is [a])
        return np.arange(num_frames - group, num_frames)
    ends = np.unique(np.round(np.linspace(group - 1, num_frames - 1, runs)).astype(np.int64))
    return np.unique(np.concatenate([np.arange(e - group + 1, e + 1) for e in ends]))


def context_groups(num_frames: int, group: int) -> tuple[np.ndarray, np.ndarray]:
    """Split `num_frames` context frames (in time order) into temporal groups of `group` frames, counted
    from the end so the last group ends on the current view. The first group, when short, is padded
    in front by repeating its first frame (a still camera, as a causal VAE chunk expects).

    Returns (order, last): `order` (G·group,) frame positions to encode, group after group, and
    `last` (G,) the position of each group's last frame: its RoPE source index, as in a Wan video,
    whose latent j covers frames 4j-3..4j (so consecutive groups sit 1 apart after dividing by 4)."""
    if num_frames < 1 or group < 1:
        raise ValueError(f"need at least one context frame and group >= 1, got {num_frames}, {group}")
    g = -(-num_frames // group)
    pad = g * group - num_frames
    order = np.concatenate([np.zeros(pad, dtype=np.int64), np.arange(num_frames, dtype=np.int64)])
    return order, order.reshape(g, group)[:, -1].copy()


def sample_context_groups(num_frames: int, count: int, group: int, rng: np.random.Generator) -> np.ndarray:
    """Training-time non-contiguous context (paper §3.4): `count` frames drawn as random runs of `group`
    consecutive frames (4 for the real Wan VAE, 1 for the tiny codec), sorted, always ending with the
    last frame (the current view = first target frame)."""
    if count < 1:
        raise ValueError("need at least one context frame")
    if num_frames <= count:
        return np.arange(num_frames)
    chosen = {num_frames - 1}
    starts = np.arange(0, max(1, num_frames - 1), max(1, group))
    rng.shuffle(starts)
    for s in starts:
        for k in range(group):
            if len(chosen) >= count:
                break
            if s + k < num_frames:
                chosen.add(int(s + k))
        if len(chosen) >= count:
            break
    return np.array(sorted(chosen), dtype=np.int64)
