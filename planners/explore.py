"""`explore` planner: no imagination — explore until the target is seen, then walk to it (the lower bound).

Seeing the target uses the backend's instance segmentation (`Observation.semantic`, simulators
only) so the baseline isolates what imagination adds to *navigation*, not to detection. Exploration:
`frontier` steers to the most open direction in the current depth that leads to less-visited floor
cells (a depth-only frontier proxy: no map is built); `random` walks straight and turns at random
when blocked. Plans are one action long so the stop check runs after every step.
"""
from __future__ import annotations

import math
import zlib
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from envs.base import NavEnv, intrinsics_of
from envs.types import Action, Box2D, Episode, Observation
from planners.base import Plan, Timer, approach_box_actions, motion_of, semantic_box, should_stop, step_is_free

if TYPE_CHECKING:
    from v4s_agent.config import ExplorePlannerConfig
    from v4s_agent.memory import Memory

CELL_M = 0.5  # visit-count cell size


def column_clearance(depth: np.ndarray, u_centre: float, half_width: int) -> float:
    """Free distance (m) in a vertical band of the depth image around column `u_centre`."""
    H, W = depth.shape
    a, b = int(max(0, u_centre - half_width)), int(min(W, u_centre + half_width))
    c = depth[int(H * 0.3) : int(H * 0.95), a:b]
    c = c[np.isfinite(c) & (c > 0)]
    return float(np.percentile(c, 5)) if c.size else 0.0


class ExplorePlanner:
    name = "explore"

    def __init__(self, cfg: ExplorePlannerConfig, env: NavEnv, seed: int = 0) -> None:
        self.cfg = cfg
        self.env = env
        self.K = intrinsics_of(env)
        self.motion = motion_of(env)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._targets: tuple[int, ...] = ()
        self._visits: Counter[tuple[int, int]] = Counter()
        self._pending: list[Action] = []
        self._since_scan = 0
        self._turn_dir = Action.TURN_LEFT
        self._warned_no_semantic = False
        self._last: tuple[tuple[float, float, float] | None, list[Action]] = (None, [])

    def reset(self, episode: Episode, obs: Observation, memory: Memory) -> None:
        self._targets = tuple(episode.target_instance_ids)
        self._visits.clear()
        self._pending = []
        self._since_scan = 0
        self._last = (None, [])
        # zlib.crc32, not hash(): str hashes are salted per process and would break `seed=`
        self.rng = np.random.default_rng([self.seed, zlib.crc32(episode.episode_id.encode())])

    def _cell(self, x: float, z: float) -> tuple[int, int]:
        return (int(math.floor(x / CELL_M)), int(math.floor(z / CELL_M)))

    def _seen_box(self, obs: Observation) -> Box2D | None:
        return semantic_box(obs.semantic, self._targets)

    def plan(self, obs: Observation, memory: Memory) -> Plan:
        plan = Plan(imagined=False)
        with Timer() as t:
            plan.actions, plan.note = self._decide(obs)
            self._last = (obs.pose.position if obs.pose is not None else None, list(plan.actions))
        plan.seconds = t.seconds
        return plan

    def _decide(self, obs: Observation) -> tuple[list[Action], str]:
        H, W = obs.rgb.shape[:2]
        if obs.pose is not None:
            self._visits[self._cell(obs.pose.position[0], obs.pose.position[2])] += 1
        box = self._seen_box(obs)
        if box is not None:
            self._pending = []
            if should_stop(box, obs.depth, W, H, self.cfg.gamma, self.cfg.stop_distance, self.K):
                return [Action.STOP], "target centred within stop distance -> STOP"
            acts = approach_box_actions(box, obs.depth, W, self.motion, self.K, self.cfg.agent_radius, self.cfg.gamma)
            return acts, "target seen -> approaching"
        if obs.semantic is None and not self._warned_no_semantic:
            self._warned_no_semantic = True
        if self._pending:
            return [self._pending.pop(0)], "scanning"
        last_pos, last_acts = self._last
        if obs.pose is not None and last_acts and last_acts[-1] == Action.MOVE_FORWARD and last_pos == obs.pose.position:
            # bumped into something the depth could not show (low, closer than the floor's first visible row)
            if self.rng.random() < 0.3:
                self._turn_dir = Action.TURN_RIGHT if self._turn_dir == Action.TURN_LEFT else Action.TURN_LEFT
            return [self._turn_dir] * 2, "collided -> turning 60 degrees"
        self._since_scan += 1
        if self._since_scan >= self.cfg.scan_every:
            self._since_scan = 0
            n = int(math.ceil(360.0 / self.motion.turn_deg)) - 1
            self._pending = [Action.TURN_LEFT] * n
            return [Action.TURN_LEFT], "360-degree scan"
        if self.cfg.strategy == "random":
            return self._random(obs)
        return self._frontier(obs)

    def _random(self, obs: Observation) -> tuple[list[Action], str]:
        if self._free(obs, 0) and self.rng.random() > 0.1:
            return [Action.MOVE_FORWARD], "random walk: forward"
        a = Action.TURN_LEFT if self.rng.random() < 0.5 else Action.TURN_RIGHT
        return [a] * int(self.rng.integers(1, 4)), "random walk: turn"

    def _free(self, obs: Observation, turns: int) -> bool:
        """Turning `turns` then one step keeps the body clear, with `min_clearance` of free depth
        ahead in that direction (so the agent does not walk up to every wall)."""
        if not step_is_free(obs.depth, self.K, self.motion, self.cfg.agent_radius, turns):
            return False
        if obs.depth is None or turns != 0:
            return True
        W = obs.depth.shape[1]
        return column_clearance(obs.depth, W / 2, max(2, W // 10)) > self.cfg.min_clearance

    def _frontier(self, obs: Observation) -> tuple[list[Action], str]:
        if obs.depth is None:
            return self._random(obs)
        W = obs.depth.shape[1]
        turn = math.radians(self.motion.turn_deg)
        best, best_score = None, -np.inf
        for k in (-1, 0, 1):  # turn right, straight, left (all inside a 79-degree view)
            u = self.K[0, 2] - k * self.K[0, 0] * math.tan(turn)
            if not (0 <= u < W):
                continue
            free = column_clearance(obs.depth, u, max(2, W // 10))
            visits = 0
            if obs.pose is not None:
                yaw = obs.pose.yaw + k * turn
                look = min(free, 1.5)
                x = obs.pose.position[0] - look * math.sin(yaw)
                z = obs.pose.position[2] - look * math.cos(yaw)
                visits = self._visits[self._cell(x, z)]
            score = min(free, 3.0) - 0.6 * visits + (0.2 if k == 0 else 0.0) + 0.05 * self.rng.random()
            if free > self.cfg.min_clearance and score > best_score and self._free(obs, k):
                best, best_score = k, score
        if best == 0:
            return [Action.MOVE_FORWARD], "frontier: forward to open, less-visited space"
        if best is not None:
            self._turn_dir = Action.TURN_LEFT if best > 0 else Action.TURN_RIGHT
            return [self._turn_dir, Action.MOVE_FORWARD], "frontier: turn towards open space"
        # Blocked everywhere in view: keep turning the same way (no left-right dithering).
        return [self._turn_dir] * 3, "frontier: blocked -> turning 90 degrees"
