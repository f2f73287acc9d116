"""Simulator clips with known camera paths, to measure the read-back where the truth is known.

Used by the read-back tests and by anyone checking read-back accuracy: a random smooth path on
navigable floor of an embedded-world scene, rendered at the camera resolution and downsampled to
the video resolution the way the video model's clips are (INTER_AREA).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from envs.config import check_choice
from envs.geometry import matrix_to_pose, pose_to_matrix
from envs.types import Observation, Pose
from planners.readback import READBACKS, read_back
from planners.readback.path import PathEstimate, step_matrix


@dataclass
class TruthClip:
    frames: np.ndarray  # (F, size, size, 3) uint8
    observations: list[Observation]  # at the world's resolution (rgb, depth, semantic, pose)
    truth: PathEstimate  # steps and poses relative to the first frame
    start: Pose


def downsample(frames: np.ndarray, size: int) -> np.ndarray:
    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def random_truth_clip(world, rng: np.random.Generator, num_frames: int = 10, size: int = 64,
                      max_forward: float = 0.2, max_yaw_deg: float = 20.0, min_clearance: float = 0.4, min_median_depth: float = 1.2,
                      tries: int = 200) -> TruthClip:
    """A path of `num_frames` frames with random (dforward, dyaw) steps that stays on navigable
    floor (each pose checked with the world's navgrid, sampled again otherwise) and starts looking
    into the room (10% of the depth beyond `min_clearance`, the median beyond `min_median_depth`), not
    at a bare wall, where neither read-back can tell a turn from a slide."""
    h = float(world.cfg.sensor_height)
    for _ in range(tries):
        xz = np.asarray(world.navgrid.sample_navigable(rng), dtype=np.float64).reshape(-1)[:2]
        start = Pose((float(xz[0]), h, float(xz[1])), float(rng.uniform(-np.pi, np.pi)))
        steps = np.stack([rng.uniform(0.0, max_forward, num_frames - 1),
                          np.radians(rng.uniform(-max_yaw_deg, max_yaw_deg, num_frames - 1))], axis=1)
        T = pose_to_matrix(start)
        poses = [start]
        ok = True
        for df, dy in steps:
            T = T @ step_matrix(df, dy)
            p = matrix_to_pose(T)
            if not world.navgrid.is_navigable(np.array([p.position[0], p.position[2]])):
                ok = False
                break
            poses.append(p)
        if not ok:
            continue
        obs = [world.render_at(p) for p in poses]
        d = obs[0].depth
        d = d[np.isfinite(d)]
        if np.percentile(d, 10) < min_clearance or np.median(d) < min_median_depth:
            continue
        frames = downsample(np.stack([o.rgb for o in obs]), size)
        return TruthClip(frames, obs, PathEstimate.from_steps(steps, 1.0, "truth"), start)
    raise RuntimeError(f"no navigable path of {num_frames} frames found in {tries} tries; use a larger scene or shorter steps")


def _check_method(method: str) -> None:
    """Clips rendered here report no poses to the read-back, so `true` is no choice."""
    check_choice("method", method, [n for n in READBACKS.names() if n != "true"])


def evaluate_readback(method: str = "flow", split: str = "val", scenes: int = 10, num_frames: int = 10,
                      size: int = 64, first_scene: int = 0) -> dict[str, float]:
    """Per-step errors of a path read-back ("flow" or "idm") on random truth clips, one per scene."""
    from envs.embedded.config import WorldConfig
    from envs.embedded.world import EmbeddedWorld
    from envs.geometry import intrinsics_from_hfov
    from envs.splits import split_seeds

    _check_method(method)
    seeds = split_seeds(split, first_scene + scenes)[first_scene:]
    world = EmbeddedWorld(WorldConfig(), scene_seed=seeds[0])
    K = intrinsics_from_hfov(world.hfov_deg, size, size)
    errs, confs = [], []
    for s in seeds:
        world.load_scene(s)
        c = random_truth_clip(world, np.random.default_rng(s), num_frames=num_frames, size=size)
        est = read_back(method, c.frames, c.observations[0].depth, K)
        errs.append(np.abs(est.steps - c.truth.steps))
        confs.append(est.confidence)
    world.close()
    e = np.concatenate(errs)
    yaw = np.degrees(e[:, 1])
    return {"method": method, "split": split, "scenes": scenes, "steps": int(len(e)),
            "yaw_mae_deg": round(float(yaw.mean()), 3), "yaw_median_deg": round(float(np.median(yaw)), 3),
            "yaw_p90_deg": round(float(np.percentile(yaw, 90)), 3), "share_yaw_under_5deg": round(float(np.mean(yaw < 5)), 3),
            "fwd_mae_m": round(float(e[:, 0].mean()), 4), "fwd_median_m": round(float(np.median(e[:, 0])), 4),
            "fwd_p90_m": round(float(np.percentile(e[:, 0], 90)), 4), "share_fwd_under_10cm": round(float(np.mean(e[:, 0] < 0.1)), 3),
            "mean_confidence": round(float(np.mean(confs)), 3)}


@dataclass
class ReadbackEvalConfig:
    """`python -m planners.readback.sim_truth method=flow split=val scenes=10 frames=10 first_scene=0`."""

    method: str = "flow"
    split: str = "val"
    scenes: int = 10
    frames: int = 10
    first_scene: int = 0

    def __post_init__(self) -> None:
        _check_method(self.method)


def main(argv: list[str] | None = None) -> int:
    import json
    import os
    import sys

    from envs.config import cli_config

    os.environ.setdefault("MUJOCO_GL", "egl")
    a = cli_config(ReadbackEvalConfig, sys.argv[1:] if argv is None else argv)
    print(f"[readback] {a.method} on {a.scenes} {a.split} scenes", file=sys.stderr)
    print(json.dumps(evaluate_readback(a.method, a.split, a.scenes, a.frames, first_scene=a.first_scene)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
