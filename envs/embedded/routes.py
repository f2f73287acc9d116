"""Pose-following task on the embedded world: waypoint routes and their measures.

A route is what a noise-free agent walks along a navigable shortest path of 3-8 m between two
random floor points of a scene, kept `ROUTE_CLEARANCE` clear of walls beyond the agent radius: the greedy discrete expert (`follower.greedy_descent`) gives poses
that 0.25 m / 30-degree actions execute exactly, so any error at the end comes from actuation
noise and from how the agent estimates its pose. Waypoints are the poses at every corner (before
a turn), every `WAYPOINT_EVERY` forward steps along straight runs, and at the end. Routes need at
least one corner.

Measures (habitat-lab style reset/update, on the TRUE pose): final position error (floor plane) and
yaw error against the last waypoint, ATE = RMS distance of the agent's true positions (one per
step) to the route polyline, and success = STOP within 0.25 m and 15 degrees of the last waypoint.
"""
from __future__ import annotations

import math
import zlib
from typing import TYPE_CHECKING

import numpy as np

from envs.embedded.config import WorldConfig
from envs.metrics import route_metrics
from envs.navgrid import NavGrid
from envs.splits import split_seeds
from envs.types import Action, EpisodeMetrics, Pose, RouteEpisode

if TYPE_CHECKING:
    from envs.embedded.world import EmbeddedWorld

MIN_ROUTE_M, MAX_ROUTE_M = 3.0, 8.0
ROUTE_CLEARANCE = 0.1  # metres of floor a route keeps beyond the agent radius, as a taught route would
WAYPOINT_EVERY = 4  # forward steps between waypoints on a straight run (1 m at 0.25 m steps)


def route_waypoints(poses: list[Pose]) -> tuple[list[Pose], int, int]:
    """Waypoints of an expert pose sequence (one pose per action); (waypoints, corners, forward steps)."""
    def is_forward(i: int) -> bool:
        return poses[i].position != poses[i - 1].position

    out: list[Pose] = []
    corners = run = forwards = 0
    for i in range(1, len(poses)):
        if not is_forward(i):
            continue
        forwards += 1
        run += 1
        last = i == len(poses) - 1
        corner = not last and not is_forward(i + 1) and any(is_forward(j) for j in range(i + 1, len(poses)))
        if corner or run == WAYPOINT_EVERY or last:
            out.append(poses[i])
            corners += int(corner)
            run = 0
    if out and out[-1] is not poses[-1]:
        out.append(poses[-1])  # trailing turns: the last pose is the goal
    return out, corners, forwards


def make_route(scene_seed: int, rng: np.random.Generator, cfg: WorldConfig | None = None, tries: int = 64) -> RouteEpisode | None:
    """One route in scene `scene_seed` (None when `tries` samples found none of 3-8 m with a corner)."""
    from envs.embedded.assets import get_assets
    from envs.embedded.follower import greedy_descent

    cfg = WorldConfig.from_any(cfg)
    nav = get_assets(scene_seed, cfg).navgrid
    g = NavGrid(nav.free, tuple(nav.origin), nav.res, nav.agent_radius + ROUTE_CLEARANCE)
    step, turn = float(cfg.forward_step), math.radians(cfg.turn_angle_deg)
    for _ in range(tries):
        a, b = g.sample_navigable(rng), g.sample_navigable(rng)
        if not MIN_ROUTE_M <= g.geodesic_distance(a, b) <= MAX_ROUTE_M:
            continue
        field = g.distance_field(b)[0]
        start = Pose((float(a[0]), float(cfg.sensor_height), float(a[1])), float(rng.uniform(-np.pi, np.pi)))
        poses = greedy_descent(g, lambda xz, f=field: float(f[g.start_cell(xz)]), start, step, turn)
        waypoints, corners, forwards = route_waypoints(poses)
        length = forwards * step
        if corners < 1 or not MIN_ROUTE_M <= length <= MAX_ROUTE_M:
            continue
        tag = zlib.crc32(np.asarray([a[0], a[1], b[0], b[1]]).tobytes()) & 0xFFFF
        return RouteEpisode(f"s{scene_seed}-route-{tag:04x}", int(scene_seed), start, "", (), length,
                            waypoints=tuple(waypoints), route_length=length)
    return None


def make_routes(split: str, n: int, seed: int = 0, cfg: WorldConfig | dict | None = None) -> list[RouteEpisode]:
    """`n` deterministic routes from the scenes of `split` (one per scene, in a seeded order)."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    seeds = split_seeds(split)
    cfg = WorldConfig.from_any(cfg)
    rng = np.random.default_rng([int(seed), zlib.crc32(f"route-{split}".encode())])
    offset = int(rng.integers(len(seeds)))
    out: list[RouteEpisode] = []
    for k in range(len(seeds)):
        if len(out) == n:
            break
        scene_seed = seeds[(offset + k) % len(seeds)]
        ep = make_route(scene_seed, np.random.default_rng([int(seed), scene_seed, 1]), cfg)
        if ep is not None:
            out.append(RouteEpisode(f"{split}-{len(out):04d}-{ep.episode_id}", ep.scene_seed, ep.start, "", (),
                                    ep.geodesic_start_distance, waypoints=ep.waypoints, route_length=ep.route_length))
    if len(out) < n:
        raise ValueError(f"split {split!r} gave only {len(out)} routes; ask for fewer episodes")
    return out


class RouteMeasures:
    """habitat-lab style measures of a RouteEpisode: reset at the start, update after every action."""

    def reset(self, episode: RouteEpisode, world: EmbeddedWorld) -> None:
        if not episode.waypoints:
            raise ValueError(f"route episode {episode.episode_id!r} has no waypoints")
        self._episode = episode
        self._xz = [episode.start.xyz[[0, 2]]]
        self._final = episode.start
        self._steps = self._collisions = 0
        self._stopped = False

    def update(self, action: Action | int, world: EmbeddedWorld, collided: bool = False) -> None:
        self._final = world.agent_pose
        self._xz.append(self._final.xyz[[0, 2]])
        self._steps += 1
        self._collisions += int(collided)
        self._stopped = int(action) == Action.STOP

    def metrics(self) -> EpisodeMetrics:
        ep = self._episode
        route = np.stack([ep.start.xyz[[0, 2]]] + [w.xyz[[0, 2]] for w in ep.waypoints])
        return route_metrics(self._stopped, self._final, ep.waypoints[-1], np.stack(self._xz), route,
                             self._steps, self._collisions, ep.route_length)
