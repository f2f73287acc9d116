"""Habitat-lab ObjectNav measures from the episode's distances, and the pose-following measures
(pure functions; every backend uses them)."""
from __future__ import annotations

import math

import numpy as np

from envs.geometry import wrap_angle
from envs.types import EpisodeMetrics, Pose


def objectnav_metrics(
    called_stop: bool,
    distance_to_goal: float,
    start_distance: float,
    path_length: float,
    num_steps: int,
    collisions: int = 0,
    success_distance: float = 0.1,
) -> EpisodeMetrics:
    """success = STOP strictly closer than `success_distance` (geodesic) to a view point (habitat-lab's `<`); SPL = S·ℓ/max(p, ℓ);
    Soft-SPL = max(0, 1 − d_T/d_0)·ℓ/max(p, ℓ) (habitat-lab's definitions, ℓ = d_0 geodesic)."""
    d_t, d_0, p = float(distance_to_goal), float(start_distance), float(path_length)
    success = float(bool(called_stop) and math.isfinite(d_t) and d_t < success_distance)  # habitat-lab: strictly less
    if math.isfinite(d_0) and d_0 > 0:
        eff = d_0 / max(p, d_0)
        spl = success * eff
        soft = max(0.0, 1.0 - d_t / d_0) * eff if math.isfinite(d_t) else 0.0
    else:
        spl = soft = float("nan")
    return EpisodeMetrics(success=success, spl=spl, soft_spl=soft, distance_to_goal=d_t, path_length=p,
                          num_steps=int(num_steps), collisions=int(collisions),
                          extra={"called_stop": float(bool(called_stop)), "start_distance": d_0})


ROUTE_SUCCESS_DISTANCE = 0.25  # metres from the last waypoint (floor plane)
ROUTE_SUCCESS_YAW_DEG = 15.0


def distance_to_polyline(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """(N,) distance of each floor point (N, 2) to the nearest segment of a polyline (K, 2)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 1, 2)
    if polyline.shape[0] < 2:
        return np.linalg.norm(p[:, 0] - polyline[0], axis=1)
    a, b = polyline[:-1][None], polyline[1:][None]
    ab = b - a
    t = np.clip(np.sum((p - a) * ab, axis=-1) / np.maximum(np.sum(ab * ab, axis=-1), 1e-12), 0.0, 1.0)
    return np.min(np.linalg.norm(p - (a + t[..., None] * ab), axis=-1), axis=1)


def route_metrics(called_stop: bool, final: Pose, goal: Pose, positions_xz: np.ndarray, route_xz: np.ndarray,
                  num_steps: int, collisions: int, route_length: float) -> EpisodeMetrics:
    """Pose-following measures on true poses: final position error (floor plane, metres) and yaw
    error (degrees) against the last waypoint `goal`; ATE = RMS distance of the agent's positions to
    the route polyline; success = STOP within 0.25 m and 15 degrees. `distance_to_goal` is the final
    position error; SPL and Soft-SPL are ObjectNav's and stay NaN."""
    pos_err = float(np.hypot(final.position[0] - goal.position[0], final.position[2] - goal.position[2]))
    yaw_err = abs(math.degrees(float(wrap_angle(final.yaw - goal.yaw))))
    xz = np.asarray(positions_xz, dtype=np.float64).reshape(-1, 2)
    ate = float(np.sqrt(np.mean(distance_to_polyline(xz, np.asarray(route_xz, dtype=np.float64)) ** 2)))
    path = float(np.linalg.norm(np.diff(xz, axis=0), axis=1).sum()) if len(xz) > 1 else 0.0
    success = float(bool(called_stop) and pos_err <= ROUTE_SUCCESS_DISTANCE and yaw_err <= ROUTE_SUCCESS_YAW_DEG)
    return EpisodeMetrics(success=success, spl=float("nan"), soft_spl=float("nan"), distance_to_goal=pos_err,
                          path_length=path, num_steps=int(num_steps), collisions=int(collisions),
                          extra={"final_position_error": pos_err, "final_yaw_error_deg": yaw_err, "ate": ate,
                                 "route_length": float(route_length), "called_stop": float(bool(called_stop))})
