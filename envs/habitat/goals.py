"""ObjectNav goals: scene objects (from our JSON sidecar or HM3D's semantic scene) and view points.

Habitat-lab's ObjectNav success needs *view points*: navigable floor points within `radius` (1.0 m)
of the object from which it is visible. Building them needs a navmesh and a renderer, so the logic
here takes those as callables (`snap`, `is_navigable`, `visible`) and stays testable without
habitat_sim; `envs.habitat.env` plugs in the real pathfinder and depth sensor.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs.types import Episode, Pose

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class SceneObject:
    """One goal candidate in the Habitat world frame (Y-up, metres)."""

    instance_id: int
    category: str
    aabb_min: Vec3
    aabb_max: Vec3
    position: Vec3  # object centre (sidecar `position`, or the AABB centre)

    @property
    def center(self) -> np.ndarray:
        return 0.5 * (np.asarray(self.aabb_min) + np.asarray(self.aabb_max))

    def sample_points(self, shrink: float = 0.1) -> np.ndarray:
        """(9, 3) centre + 8 AABB corners pulled `shrink` of the way inward (visibility probes)."""
        lo, hi, c = np.asarray(self.aabb_min), np.asarray(self.aabb_max), self.center
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        return np.vstack([c, corners + shrink * (c - corners)])


def normalize_category(name: str) -> str:
    return " ".join(str(name).strip().lower().replace("_", " ").split())


def _vec3(v, what: str, where: str) -> Vec3:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.shape != (3,) or not np.all(np.isfinite(a)):
        raise ValueError(f"{where}: {what} must be 3 finite numbers, got {v!r}")
    return (float(a[0]), float(a[1]), float(a[2]))


def objects_from_records(records: Iterable[dict], where: str = "sidecar") -> list[SceneObject]:
    """Sidecar records {instance_id, category, aabb_min, aabb_max, position?} -> SceneObjects."""
    out = []
    for i, r in enumerate(records):
        at = f"{where} object #{i}"
        missing = [k for k in ("instance_id", "category", "aabb_min", "aabb_max") if k not in r]
        if missing:
            raise ValueError(f"{at} lacks {missing}; each object needs instance_id, category, aabb_min, aabb_max")
        lo, hi = _vec3(r["aabb_min"], "aabb_min", at), _vec3(r["aabb_max"], "aabb_max", at)
        if any(a > b for a, b in zip(lo, hi)):
            raise ValueError(f"{at}: aabb_min {lo} exceeds aabb_max {hi}")
        pos = _vec3(r["position"], "position", at) if r.get("position") is not None else tuple(
            float(v) for v in 0.5 * (np.asarray(lo) + np.asarray(hi)))
        out.append(SceneObject(int(r["instance_id"]), normalize_category(r["category"]), lo, hi, pos))
    return out


def load_sidecar(path: str | Path) -> list[SceneObject]:
    """Read our exporter's semantic JSON: a list of objects, or {"objects": [...], ...}."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"semantic sidecar {p} not found; export the scene with "
                                "envs.embedded.export.export_glb or set env.semantic_sidecar")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"semantic sidecar {p} is not valid JSON: {e}") from None
    records = data.get("objects") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise ValueError(f"semantic sidecar {p} must be a list of objects or {{'objects': [...]}}")
    return objects_from_records(records, where=str(p))


def objects_from_semantic_scene(entries: Iterable[tuple[int, str, object, object]]) -> list[SceneObject]:
    """HM3D/MP3D semantic objects as (semantic_id, category name, aabb centre, aabb sizes) tuples.

    The env extracts them from `sim.semantic_scene.objects` (obj.semantic_id, obj.category.name(),
    obj.aabb.center, obj.aabb.sizes); objects without a category are skipped.
    """
    out = []
    for sid, name, center, sizes in entries:
        cat = normalize_category(name)
        if not cat or cat in {"unknown", "void"}:
            continue
        c = np.asarray(center, dtype=np.float64).reshape(3)
        h = 0.5 * np.abs(np.asarray(sizes, dtype=np.float64).reshape(3))
        out.append(SceneObject(int(sid), cat, tuple((c - h).tolist()), tuple((c + h).tolist()), tuple(c.tolist())))
    return out


def objects_of_category(objects: Iterable[SceneObject], category: str) -> list[SceneObject]:
    cat = normalize_category(category)
    return [o for o in objects if o.category == cat]


def horizontal_distance_to_aabb(point, obj: SceneObject) -> float:
    """Floor-plane (x, z) distance from a point to the object's footprint (0 inside)."""
    p = np.asarray(point, dtype=np.float64)
    lo, hi = np.asarray(obj.aabb_min), np.asarray(obj.aabb_max)
    d = np.maximum(np.maximum(lo - p, 0.0), p - hi)[[0, 2]]
    return float(np.linalg.norm(d))


def candidate_floor_points(obj: SceneObject, radius: float, step: float, floor_y: float) -> np.ndarray:
    """(N, 3) grid points at height `floor_y` within `radius` (floor plane) of the object's footprint."""
    lo, hi = np.asarray(obj.aabb_min), np.asarray(obj.aabb_max)
    xs = np.arange(lo[0] - radius, hi[0] + radius + 1e-9, step)
    zs = np.arange(lo[2] - radius, hi[2] + radius + 1e-9, step)
    pts = np.array([[x, floor_y, z] for x in xs for z in zs], dtype=np.float64).reshape(-1, 3)
    keep = [0.0 < horizontal_distance_to_aabb(p, obj) <= radius for p in pts]
    return pts[np.asarray(keep, dtype=bool)] if len(pts) else pts


def look_at_pose(floor_point, target, sensor_height: float) -> Pose:
    """Camera `sensor_height` above a floor point, yawed to face the target, level (agents start level)."""
    cam = np.asarray(floor_point, dtype=np.float64) + np.array([0.0, sensor_height, 0.0])
    d = np.asarray(target, dtype=np.float64) - cam
    from envs.geometry import yaw_towards

    return Pose(tuple(float(v) for v in cam), yaw_towards(d[0], d[2]), 0.0)


def visible_in_depth(depth: np.ndarray, K: np.ndarray, pose: Pose, points: np.ndarray,
                     tolerance: float = 0.15, max_depth: float = float("inf")) -> bool:
    """True when any probe point projects into the image in front of the camera and nothing in the
    depth image is closer than it (minus `tolerance`). Depth is metres along the viewing axis."""
    from envs.geometry import project_points

    H, W = depth.shape
    uv, z = project_points(np.asarray(points, dtype=np.float64), pose, K)
    for (u, v), zi in zip(uv, z):
        if not (zi > 1e-6 and zi <= max_depth and 0 <= u < W and 0 <= v < H):
            continue
        d = float(depth[int(v), int(u)])
        if d <= 0.0 or d >= zi - tolerance:  # 0 = no return (beyond far plane)
            return True
    return False


def select_view_points(
    obj: SceneObject,
    candidates: np.ndarray,
    snap: Callable[[np.ndarray], np.ndarray | None],
    is_navigable: Callable[[np.ndarray], bool],
    visible: Callable[[np.ndarray, SceneObject], bool],
    radius: float,
) -> np.ndarray:
    """(M, 3) navigable floor points within `radius` of the object from which it is visible."""
    out: dict[tuple, np.ndarray] = {}
    for c in np.asarray(candidates, dtype=np.float64).reshape(-1, 3):
        p = snap(c)
        if p is None:
            continue
        p = np.asarray(p, dtype=np.float64).reshape(3)
        if not np.all(np.isfinite(p)) or not is_navigable(p):
            continue
        if not (0.0 < horizontal_distance_to_aabb(p, obj) <= radius):
            continue
        key = tuple(np.round(p, 3))
        if key not in out and visible(p, obj):
            out[key] = p
    return np.array(list(out.values()), dtype=np.float64).reshape(-1, 3)


def available_categories(objects: Iterable[SceneObject], wanted: Iterable[str] = ()) -> list[str]:
    """Sorted categories present in the scene, restricted to `wanted` when it is non-empty."""
    present = sorted({o.category for o in objects})
    want = {normalize_category(w) for w in wanted}
    return [c for c in present if not want or c in want]


def sample_episode(
    categories: list[str],
    rng: np.random.Generator,
    sample_start: Callable[[], np.ndarray],
    geodesic_to_category: Callable[[np.ndarray, str], float],
    sensor_height: float,
    min_distance: float,
    max_distance: float,
    episode_id: str,
    scene_seed: int = -1,
    max_tries: int = 200,
) -> Episode:
    """Draw (category, start) until the start's geodesic distance to the category's view points is
    finite and in [min_distance, max_distance]; raise with the reason when none is found."""
    if not categories:
        raise ValueError("no target category available in this scene; check env.target_categories "
                         "against the scene's objects (sidecar or semantic scene)")
    best = float("nan")
    for _ in range(max_tries):
        cat = categories[int(rng.integers(len(categories)))]
        start = np.asarray(sample_start(), dtype=np.float64).reshape(3)
        d = float(geodesic_to_category(start, cat))
        best = d if not math.isfinite(best) else best
        if math.isfinite(d) and min_distance <= d <= max_distance:
            yaw = float(rng.uniform(-math.pi, math.pi))
            cam = (float(start[0]), float(start[1] + sensor_height), float(start[2]))
            return Episode(episode_id, scene_seed, Pose(cam, yaw, 0.0), cat, geodesic_start_distance=d)
    raise RuntimeError(f"no start within geodesic [{min_distance}, {max_distance}] m of a view point of "
                       f"{categories} after {max_tries} tries (navmesh disconnected or no view points?); "
                       "relax env.min_start_distance/env.max_start_distance")
