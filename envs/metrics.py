"""Habitat-lab ObjectNav measures from the episode's distances (pure; every backend uses them)."""
from __future__ import annotations

import math

from envs.types import EpisodeMetrics


def objectnav_metrics(
    called_stop: bool,
    distance_to_goal: float,
    start_distance: float,
    path_length: float,
    num_steps: int,
    collisions: int = 0,
    success_distance: float = 0.1,
) -> EpisodeMetrics:
    """success = STOP within `success_distance` (geodesic) of a view point; SPL = S·ℓ/max(p, ℓ);
    Soft-SPL = max(0, 1 − d_T/d_0)·ℓ/max(p, ℓ) (habitat-lab's definitions, ℓ = d_0 geodesic)."""
    d_t, d_0, p = float(distance_to_goal), float(start_distance), float(path_length)
    success = float(bool(called_stop) and math.isfinite(d_t) and d_t <= success_distance)
    if math.isfinite(d_0) and d_0 > 0:
        eff = d_0 / max(p, d_0)
        spl = success * eff
        soft = max(0.0, 1.0 - d_t / d_0) * eff if math.isfinite(d_t) else 0.0
    else:
        spl = soft = float("nan")
    return EpisodeMetrics(success=success, spl=spl, soft_spl=soft, distance_to_goal=d_t, path_length=p,
                          num_steps=int(num_steps), collisions=int(collisions),
                          extra={"called_stop": float(bool(called_stop)), "start_distance": d_0})
