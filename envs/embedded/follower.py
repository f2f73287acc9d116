"""Greedy shortest-path follower over Habitat's discrete actions (like habitat-sim's
ShortestPathFollower): used for scripted episodes, oracle baselines and data generation.

Why greedy over the geodesic field instead of tracking waypoints: with 30 degree turns the agent
cannot aim exactly at a waypoint, and near 64 cm doorways aiming errors mean collisions; choosing
the heading whose next forward step lowers the geodesic distance the most never collides.
"""
from __future__ import annotations

import math

import numpy as np

from envs.geometry import wrap_angle
from envs.types import Action, Pose


class ShortestPathFollower:
    def __init__(self, navgrid, goals_xz: np.ndarray, forward_step: float, turn_angle_deg: float) -> None:
        self.g = navgrid
        self.goals = np.asarray(goals_xz, dtype=np.float64).reshape(-1, 2)
        self.step_len = float(forward_step)
        self.turn = math.radians(turn_angle_deg)
        self.dist, _ = navgrid.distance_field(self.goals)

    def _d(self, xz) -> float:
        iz, ix = self.g.cell_of(xz)
        if not (0 <= iz < self.dist.shape[0] and 0 <= ix < self.dist.shape[1]):
            return math.inf
        return float(self.dist[iz, ix])

    def distance(self, pose: Pose) -> float:
        return self._d((pose.position[0], pose.position[2]))

    def next_action(self, pose: Pose) -> Action:
        """STOP on a goal cell; else turn towards / move along the best reachable heading."""
        xz = np.array([pose.position[0], pose.position[2]])
        here = self._d(xz)
        if here == 0.0:
            return Action.STOP
        n = max(1, int(round(2 * math.pi / self.turn)))
        best_k, best_d = 0, math.inf
        for k in range(n):  # headings reachable by k left turns (k > n/2 = right turns)
            yaw = pose.yaw + k * self.turn
            nxt = xz + self.step_len * np.array([-math.sin(yaw), -math.cos(yaw)])
            if not self.g.segment_free(xz, nxt):
                continue
            d = self._d(nxt) + 1e-3 * min(k, n - k)  # prefer fewer turns on ties
            if d < best_d:
                best_k, best_d = k, d
        if not math.isfinite(best_d):
            return Action.TURN_LEFT
        if best_k == 0:
            return Action.MOVE_FORWARD
        return Action.TURN_LEFT if best_k <= n // 2 else Action.TURN_RIGHT


def greedy_descent(grid, distance, start: Pose, forward_step: float, turn_rad: float, max_actions: int = 400) -> list[Pose]:
    """Poses after each action of a greedy discrete expert that walks down `distance(xz)` (a
    geodesic field): per move, the heading within half a turn either way whose forward step is free
    and lowers the distance most (0.02 m per turn breaks ties), turning there first; it ends where
    no move lowers the distance. The first pose is `start`. Exactly executable by the discrete actions."""
    n_head = int(round(2 * np.pi / turn_rad))
    pose, poses = start, [start]
    y = start.position[1]
    d_now = distance(start.xyz[[0, 2]])
    while len(poses) < max_actions and np.isfinite(d_now) and d_now > 0.0:
        x, z = pose.position[0], pose.position[2]
        best = None
        for k in range(-(n_head // 2) + 1, n_head // 2 + 1):
            yaw = pose.yaw + k * turn_rad
            nx_, nz_ = x - forward_step * np.sin(yaw), z - forward_step * np.cos(yaw)
            if not grid.segment_free((x, z), (nx_, nz_)):
                continue
            val = distance((nx_, nz_)) + 0.02 * abs(k)
            if best is None or val < best[0]:
                best = (val, k, nx_, nz_)
        if best is None or best[0] >= d_now:  # no move brings it closer: as close as it gets
            break
        _, k, nx_, nz_ = best
        for _ in range(abs(k)):
            pose = Pose(pose.position, float(wrap_angle(pose.yaw + np.sign(k) * turn_rad)), 0.0)
            poses.append(pose)
        pose = Pose((float(nx_), y, float(nz_)), pose.yaw, 0.0)
        poses.append(pose)
        d_now = distance((nx_, nz_))
    return poses


def follow(world, max_steps: int | None = None) -> list[Action]:
    """Drive `world` (after reset) to the nearest goal view point and STOP; returns the actions."""
    fol = ShortestPathFollower(world.navgrid, world.goal_view_points(world.episode), world.cfg.forward_step,
                               world.cfg.turn_angle_deg)
    actions: list[Action] = []
    limit = max_steps or world.cfg.max_episode_steps
    while not world.done and len(actions) < limit:
        a = fol.next_action(world.agent_pose)
        world.step(a)
        actions.append(a)
    return actions


__all__ = ["ShortestPathFollower", "follow", "greedy_descent", "wrap_angle"]
