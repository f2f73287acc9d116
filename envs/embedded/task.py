"""ObjectNav task on the embedded world: episode sampling with guaranteed reachable targets, and
Habitat's measures (distance_to_goal, success, SPL, Soft-SPL).

Success follows habitat-lab: the agent calls STOP within `success_distance` (0.1 m) geodesic of a
view point (navigable, within `view_point_radius` = 1 m of the object, visible), measured on the
navgrid from the agent's cell. SPL = S * l / max(p, l); Soft-SPL replaces S by max(0, 1 - d_T / d_0)
(habitat-lab SoftSPL). Both backends compute them with `envs.metrics.objectnav_metrics`.
"""
from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np

from envs.embedded.categories import CATEGORIES, OBJECTNAV_CATEGORIES, check_category
from envs.embedded.config import WorldConfig
from envs.embedded.errors import NoReachableTargetError
from envs.metrics import objectnav_metrics
from envs.splits import split_seeds
from envs.types import Action, Episode, EpisodeMetrics, Pose

if TYPE_CHECKING:
    from envs.embedded.assets import SceneAssets
    from envs.embedded.world import EmbeddedWorld

MIN_START_DISTANCE = 1.5  # metres of geodesic distance between start and the nearest view point


def _rng(rng_or_seed) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if rng_or_seed is None:
        raise ValueError("make_episode needs a seed or a numpy Generator for reproducibility, got None")
    return np.random.default_rng(rng_or_seed)


def reachable_targets(assets: SceneAssets, category: str) -> tuple[int, ...]:
    """Instance ids of `category` with at least one view point in the largest navigable component."""
    return tuple(o.instance_id for o in assets.scene.instances_of(category) if len(assets.reachable_view_points(o.instance_id)))


def goal_view_points(assets: SceneAssets, instance_ids) -> np.ndarray:
    vps = [assets.view_points(int(i)) for i in instance_ids]
    vps = [v for v in vps if len(v)]
    return np.concatenate(vps, axis=0) if vps else np.zeros((0, 2))


def sample_start(assets: SceneAssets, targets, rng: np.random.Generator, tries: int = 64) -> tuple[np.ndarray | None, float]:
    """(start xz, geodesic distance to the targets' view points): the first of up to `tries` navigable
    draws at least MIN_START_DISTANCE away, else the farthest reachable one (None if none is)."""
    g = assets.navgrid
    field = g.distance_field(goal_view_points(assets, targets))[0]  # one lookup per draw
    best, best_d = None, -1.0
    for _ in range(tries):
        p = g.sample_navigable(rng)
        d = float(field[g.start_cell(p)])
        if np.isfinite(d) and d > best_d:
            best, best_d = p, d
        if best_d >= MIN_START_DISTANCE:
            break
    return best, best_d


def make_episode(
    scene_seed: int,
    rng_or_seed,
    category: str | None = None,
    cfg: WorldConfig | dict | None = None,
    world: EmbeddedWorld | None = None,
) -> Episode:
    """One ObjectNav episode in scene `scene_seed`: a reachable target category (random ObjectNav
    category present in the scene unless given) and a start >= 1.5 m (geodesic) away when possible.

    Raises ValueError for an unknown category and NoReachableTargetError when the scene has no
    reachable instance of it (or of any category)."""
    from envs.embedded.assets import get_assets

    if category is not None:
        check_category(category)
    cfg = world.cfg if world is not None else WorldConfig.from_any(cfg)
    assets = get_assets(scene_seed, cfg)
    rng = _rng(rng_or_seed)
    if category is not None:
        targets = reachable_targets(assets, category)
        if not targets:
            ok = [c for c in CATEGORIES if reachable_targets(assets, c)]
            raise NoReachableTargetError(
                f"scene seed {scene_seed} has no reachable {category!r} (reachable here: {ok}); "
                f"pick another scene seed or category, or pass category=None"
            )
    else:
        # ObjectNav categories present, in a seeded random order; the first reachable one wins (view
        # points are only computed for what is tried), then any other category as a fallback
        present = assets.scene.categories_present
        first = [c for c in OBJECTNAV_CATEGORIES if c in present]
        rest = [c for c in CATEGORIES if c in present and c not in first]
        order = [first[i] for i in rng.permutation(len(first))] + [rest[i] for i in rng.permutation(len(rest))]
        targets = ()
        for category in order:
            targets = reachable_targets(assets, category)
            if targets:
                break
        if not targets:
            raise NoReachableTargetError(
                f"scene seed {scene_seed} has no reachable target of any category; pick another scene seed"
            )
    best, best_d = sample_start(assets, targets, rng)
    if best is None:  # cannot happen when targets are reachable; kept as a guard
        raise NoReachableTargetError(f"scene seed {scene_seed}: no start reaches {category!r}; pick another scene seed")
    yaw = float(rng.uniform(-np.pi, np.pi))
    start = Pose((float(best[0]), float(cfg.sensor_height), float(best[1])), yaw, 0.0)
    tag = zlib.crc32(np.asarray([best[0], best[1], yaw]).tobytes()) & 0xFFFF
    return Episode(
        episode_id=f"s{scene_seed}-{category}-{tag:04x}",
        scene_seed=int(scene_seed),
        start=start,
        target_category=category,
        target_instance_ids=tuple(int(t) for t in targets),
        geodesic_start_distance=float(best_d),
    )


def make_episodes(split: str, n: int, seed: int = 0, cfg: WorldConfig | dict | None = None) -> list[Episode]:
    """`n` deterministic episodes from the scenes of `split` (one scene per episode, in a seeded order)."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    seeds = split_seeds(split)
    cfg = WorldConfig.from_any(cfg)
    rng = np.random.default_rng([int(seed), zlib.crc32(split.encode())])
    offset = int(rng.integers(len(seeds)))
    out: list[Episode] = []
    k = 0
    while len(out) < n:
        if k >= len(seeds):
            raise NoReachableTargetError(f"split {split!r} has only {len(out)} scenes with reachable targets; ask for fewer episodes")
        scene_seed = seeds[(offset + k) % len(seeds)]
        k += 1
        try:
            ep = make_episode(scene_seed, np.random.default_rng([int(seed), scene_seed]), cfg=cfg)
        except NoReachableTargetError:
            continue
        out.append(Episode(f"{split}-{len(out):04d}-{ep.episode_id}", ep.scene_seed, ep.start, ep.target_category,
                           ep.target_instance_ids, ep.geodesic_start_distance))
    return out


class ObjectNavMeasures:
    """habitat-lab style measures: reset at episode start, update after every action."""

    def __init__(self) -> None:
        self._goals = np.zeros((0, 2))
        self._m = EpisodeMetrics()

    def reset(self, episode: Episode, world: EmbeddedWorld) -> None:
        self._goals = world.goal_view_points(episode)
        g = world.navgrid
        self._grid = g
        # field computed once per episode: per-step distance is then one array lookup (hot path)
        self._field = g.distance_field(self._goals)[0]
        xz = np.array([episode.start.position[0], episode.start.position[2]])
        self._d0 = self._distance(xz)
        self._prev = xz
        self._m = EpisodeMetrics(distance_to_goal=self._d0)
        self._m.extra["geodesic_start_distance"] = float(self._d0)

    def _distance(self, xz: np.ndarray) -> float:
        iz, ix = self._grid.start_cell(xz)
        return float(self._field[iz, ix])

    def update(self, action: Action | int, world: EmbeddedWorld, collided: bool = False) -> None:
        p = world.agent_pose
        m = self._m
        if p.position[0] != self._prev[0] or p.position[2] != self._prev[1]:  # turns add exactly 0
            xz = np.array([p.position[0], p.position[2]])
            m.path_length += float(np.linalg.norm(xz - self._prev))
            self._prev = xz
        m.num_steps += 1
        m.collisions += int(collided)
        m.distance_to_goal = self._distance((p.position[0], p.position[2]))
        r = objectnav_metrics(int(action) == Action.STOP, m.distance_to_goal, self._d0, m.path_length, m.num_steps,
                              m.collisions, world.cfg.success_distance)
        m.success, m.spl, m.soft_spl = r.success, r.spl, r.soft_spl

    def metrics(self) -> EpisodeMetrics:
        m = self._m
        return EpisodeMetrics(m.success, m.spl, m.soft_spl, m.distance_to_goal, m.path_length, m.num_steps, m.collisions, dict(m.extra))
