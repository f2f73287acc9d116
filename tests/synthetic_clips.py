"""Small real clips without a simulator: a camera panning across a procedural room image.

Used by tests and smoke runs (trainer, pipeline, clip shards) so they need no renderer. The pan
is consistent with the poses (yaw changes with the crop offset), and grounding clips end with a
red box around a fixed object, like the simulator's clips.
"""
from __future__ import annotations

import numpy as np

from envs.instructions import grounding_instruction
from models.codecs import synthetic_frames
from models.red_box import draw_red_box
from models.types import Clip


def panorama(seed: int, size: int = 64, width_factor: int = 3) -> np.ndarray:
    tiles = synthetic_frames(width_factor, size, seed)
    return np.concatenate(list(tiles), axis=1)  # (size, size*k, 3)


def make_clip(mode: str = "grounding", seed: int = 0, size: int = 64, num_frames: int = 20, num_box_frames: int = 4,
              num_context: int = 12, obj: str = "a sofa") -> Clip:
    """One clip: context = earlier views of the pan (sparse indices), target = continued pan."""
    rng = np.random.default_rng(seed)
    pano = panorama(seed, size)
    max_off = pano.shape[1] - size
    n_total = num_context * 3 + num_frames
    offsets = np.linspace(0, max_off, n_total).round().astype(int)
    ctx_src = np.sort(rng.choice(n_total - num_frames, num_context - 1, replace=False))
    first_target = n_total - num_frames
    ctx_idx = np.append(ctx_src, first_target)
    view = lambda o: pano[:, o : o + size].copy()  # noqa: E731
    ctx = np.stack([view(offsets[i]) for i in ctx_idx])
    n_path = num_frames - (num_box_frames if mode == "grounding" else 0)
    tgt_idx = list(range(first_target, first_target + n_path))
    tgt = [view(offsets[i]) for i in tgt_idx]
    yaw_per_px = np.radians(79.0) / size

    def pose(i: int) -> np.ndarray:
        T = np.eye(4, dtype=np.float32)
        yaw = -offsets[i] * yaw_per_px
        T[:3, :3] = [[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]]
        return T

    poses = [pose(i) for i in tgt_idx]
    box = None
    if mode == "grounding":
        box = np.array([size * 0.3, size * 0.3, size * 0.7, size * 0.7], dtype=np.float32)
        boxed = draw_red_box(tgt[-1], box)
        tgt += [boxed] * num_box_frames
        poses += [poses[-1]] * num_box_frames
    return Clip(mode=mode, context_frames=ctx, context_indices=ctx_idx.astype(np.int64),
                target_frames=np.stack(tgt), target_poses=np.stack(poses).astype(np.float32),
                instruction=grounding_instruction("a living room", obj) if mode == "grounding" else "",
                num_box_frames=num_box_frames if mode == "grounding" else 0, target_box=box,
                scene_seed=seed, category=obj.split()[-1], instance_id=1,
                context_poses=np.stack([pose(i) for i in ctx_idx]).astype(np.float32),
                context_depth=np.full(ctx.shape[:3], 3.0, dtype=np.float16))  # the pan: a wall 3 m away


def make_clips(n: int, seed: int = 0, **kw) -> list[Clip]:
    """Alternating grounding / navigation clips."""
    return [make_clip("grounding" if i % 2 == 0 else "navigation", seed=seed + i, **kw) for i in range(n)]
