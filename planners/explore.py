"""`explore` planner: no imagination — explore until the target is seen, then walk to it (the lower bound).

Seeing the target goes through a detector (`planners.detect`, `detector=`): by default the
backend's instance segmentation (`semantic`, oracle detection, simulators only), so the baseline
isolates what imagination adds to *navigation*, not to detection. Exploration:
`frontier` is frontier-based exploration (Yamauchi 1997): a top-down occupancy map from depth + pose
(`planners.occupancy`), then the shortest path over known free floor to the nearest frontier, kept
until it is reached or gone; a reached frontier that stays a frontier is set aside. `random` walks
straight and turns at random when blocked. Plans are one action long so the stop check runs after
every step.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from envs.base import NavEnv, intrinsics_of
from envs.config import check
from envs.geometry import wrap_angle, yaw_towards
from envs.types import Action, Box2D, Episode, Observation, Pose
from models.types import Imagination
from planners.base import Plan, PlannerConfig, Timer, is_centred, should_stop, target_range
from planners.control import Motion, approach_box_actions, step_is_free
from planners.detect import Detector, make_detector
from planners.occupancy import MapConfig, OccupancyMap

if TYPE_CHECKING:
    from models.memory import Memory

GOAL_REACH_M = 0.4  # a frontier goal is a navigable cell this close to a frontier cell
REACHED_M = 0.3  # the agent is at its frontier goal
TARGET_FRONTIER_M = 2.5  # a seen target with no known way to it: frontiers this close to it first
MAP_IMAGE_EVERY = 10  # plans between map images in the recording
FORWARD_TOLERANCE = 0.75  # step forward when the bearing is within this many turn angles
SET_ASIDE_M = 1.0  # radius of frontier goals set aside around a reached or unreachable goal
NEAR_TURN_M = 0.5  # seen within stop_distance + this and off-centre: turn to it before walking anywhere
NEW_SIGHTING_M = 1.0  # a sighting this far from the target estimate starts a new estimate (another instance)
LOST_AFTER = 12  # plans heading for a target estimate out of view before giving it up
DETOUR_PLANS = 4  # plans on the map's way round an obstacle before facing the near target again


@dataclass
class ExplorePlannerConfig(PlannerConfig):
    """No imagination: frontier/random exploration; go to the target once it is seen."""

    name: str = "explore"
    strategy: str = "frontier"  # frontier | random
    scan_every: int = 24  # steps between 360-degree scans

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.strategy in ("frontier", "random"), f"planner.strategy must be frontier | random, got {self.strategy!r}")


def column_clearance(depth: np.ndarray, u_centre: float, half_width: int) -> float:
    """Free distance (m) in a vertical band of the depth image around column `u_centre`."""
    H, W = depth.shape
    a, b = int(max(0, u_centre - half_width)), int(min(W, u_centre + half_width))
    c = depth[int(H * 0.3) : int(H * 0.95), a:b]
    c = c[np.isfinite(c) & (c > 0)]
    return float(np.percentile(c, 5)) if c.size else 0.0


class ExplorePlanner:
    name = "explore"

    def __init__(self, cfg: ExplorePlannerConfig, env: NavEnv, imagination: Imagination | None = None, seed: int = 0,
                 detector: Detector | None = None) -> None:
        self.cfg = cfg
        # sees the target once it is in view; oracle detection unless another detector is given
        self.detector = detector if detector is not None else make_detector("semantic", env=env)
        self._memory: Memory | None = None
        self.env = env
        self.K = intrinsics_of(env)
        self.motion = Motion.of(env)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._sensor_height = float(getattr(getattr(env, "cfg", None), "sensor_height", 0.88))
        self._map: OccupancyMap | None = None
        self._set_aside: np.ndarray | None = None  # bool mask on the map grid
        self._goal: np.ndarray | None = None  # xz of the frontier goal being followed
        self._target_sum = np.zeros(3)  # sum of the seen target's xz estimates, and their count
        self._unseen = 0  # plans since the detector last fired
        self._detour = 0  # plans left on the map's way round before the near-target rules apply again
        self._path: np.ndarray | None = None  # (K, 2) xz of the map path this plan follows
        self._plans = 0
        self._pending: list[Action] = []
        self._since_scan = 0
        self._turn_dir = Action.TURN_LEFT
        self._last: tuple[tuple[float, float, float] | None, list[Action]] = (None, [])

    def reset(self, episode: Episode, obs: Observation, memory: Memory) -> None:
        self.detector.reset(episode, obs)
        self._map, self._set_aside, self._goal = None, None, None
        self._target_sum = np.zeros(3)
        self._unseen = 0
        self._detour = 0
        self._plans = 0
        self._pending = []
        self._since_scan = 0
        self._last = (None, [])
        # zlib.crc32, not hash(): str hashes are salted per process and would break `seed=`
        self.rng = np.random.default_rng([self.seed, zlib.crc32(episode.episode_id.encode())])

    @property
    def map(self) -> OccupancyMap | None:
        """The occupancy map of this episode (None before the first posed depth frame)."""
        return self._map

    def _remember(self, obs: Observation) -> None:
        if obs.depth is None or obs.pose is None:
            return
        if self._map is None:
            self._map = OccupancyMap(MapConfig(), (obs.pose.position[0], obs.pose.position[2]),
                                     obs.pose.position[1] - self._sensor_height)
            self._set_aside = np.zeros(self._map.floor_hits.shape, dtype=bool)
        self._map.update(obs.depth, obs.pose, self.K, self.cfg.agent_radius)

    def _seen_box(self, obs: Observation) -> Box2D | None:
        return self.detector(obs, self._memory)

    def plan(self, obs: Observation, memory: Memory) -> Plan:
        plan = Plan(imagined=False)
        self._memory = memory
        with Timer() as t:
            self._path = None
            self._prepare(plan, obs, memory)
            plan.actions, plan.note = self._decide(obs)
            self._last = (obs.pose.position if obs.pose is not None else None, list(plan.actions))
        plan.seconds = t.seconds
        self._describe(plan, obs)
        return plan

    def _prepare(self, plan: Plan, obs: Observation, memory: Memory) -> None:
        """Before deciding: nothing here (the imagine planner imagines and updates its belief)."""

    def _describe(self, plan: Plan, obs: Observation) -> None:
        """What the viewer shows: the map path being followed, the target estimate, and (every
        MAP_IMAGE_EVERY plans, to keep recordings small) the map itself."""
        self._plans += 1
        if self._path is not None and obs.pose is not None:
            y = obs.pose.position[1]
            plan.path_world = [Pose((float(x), y, float(z)), obs.pose.yaw) for x, z in self._path]
        if self._target_sum[2] > 0 and self._map is not None:
            x, z = self._target_sum[:2] / self._target_sum[2]
            plan.target_world = np.array([x, self._map.floor_y + 0.5, z])
        if self._map is not None and self._plans % MAP_IMAGE_EVERY == 1:
            plan.map_image = self._map.to_image()

    def _decide(self, obs: Observation) -> tuple[list[Action], str]:
        H, W = obs.rgb.shape[:2]
        last_pos, last_acts = self._last
        bumped = obs.pose is not None and last_acts[-1:] == [Action.MOVE_FORWARD] and last_pos == obs.pose.position
        self._remember(obs)
        if bumped and self._map is not None:
            self._mark_blocked(obs)
        box = self._seen_box(obs)
        if box is not None:
            self._pending = []
            self._unseen = 0
            if self._stop_here(box, obs):
                return [Action.STOP], "target centred within stop distance -> STOP"
            self._detour = max(0, self._detour - 1)
            if self._detour == 0 and target_range(box, obs.depth, self.K) <= self.cfg.stop_distance + NEAR_TURN_M:
                # nearly there: face it and step straight at it (the map's way to the floor around it
                # turns away, and facing it again turned back: the agent dithered in front of it);
                # blocked: the map's way round, for DETOUR_PLANS plans
                if not is_centred(box, W, H, self.cfg.gamma):
                    return approach_box_actions(box, obs.depth, W, self.motion, self.K, self.cfg.agent_radius, self.cfg.gamma), \
                        "target near, off-centre -> turning to it"
                if step_is_free(obs.depth, self.K, self.motion, self.cfg.agent_radius):
                    return [Action.MOVE_FORWARD], "target near -> straight at it"
                self._detour = DETOUR_PLANS
            acts, note = self._towards_target(obs, box)
            if acts:
                return acts, note
            acts = approach_box_actions(box, obs.depth, W, self.motion, self.K, self.cfg.agent_radius, self.cfg.gamma)
            if self._map is None or not is_centred(box, W, H, self.cfg.gamma) or (acts == [Action.MOVE_FORWARD] and not bumped):
                return acts, "target seen -> approaching"
            # centred, but the straight way is blocked (depth, or the last step bumped) and the map
            # knows no way yet: explore on
        elif self._target_sum[2] > 0 and self._map is not None and obs.pose is not None:
            # seen before, out of view now: keep heading for it rather than for a frontier or another
            # lead, which made the agent turn back and forth between the two
            acts, note = self._to_seen_target(obs)
            if acts:
                self._pending = []
                return acts, note
        if self._pending:
            return [self._pending.pop(0)], "scanning"
        if bumped and (self._map is None or self.cfg.strategy == "random"):
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

    def _stop_here(self, box: Box2D, obs: Observation) -> bool:
        """The shared stop rule on the detector's box (the imagine planner asks a model detector twice)."""
        H, W = obs.rgb.shape[:2]
        return should_stop(box, obs.depth, W, H, self.cfg.gamma, self.cfg.stop_distance, self.K)

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

    def _grid(self):
        # planned with less than the body radius: map cells are coarse, and the depth check of each
        # forward step (step_is_free, full radius) is what keeps the body clear
        return self._map.navgrid(max(0.05, self.cfg.agent_radius - self._map.cfg.resolution))

    def _step_along(self, obs: Observation, path: np.ndarray) -> list[Action]:
        """One action towards the first waypoint of `path` more than REACHED_M away ([] if none is,
        or the depth says the step would hit something the map does not show). Forward within
        FORWARD_TOLERANCE of the bearing: with 30-degree turns, aiming exactly makes the agent
        dither left-right when the bearing sits between two headings."""
        here = obs.pose.xyz[[0, 2]]
        self._path = path
        far = np.flatnonzero(np.linalg.norm(path - here, axis=1) > REACHED_M)
        if len(far) == 0:
            return []
        d = path[far[0]] - here
        err = float(wrap_angle(yaw_towards(d[0], d[1]) - obs.pose.yaw))
        if abs(err) > FORWARD_TOLERANCE * math.radians(self.motion.turn_deg):
            return [Action.TURN_LEFT if err > 0 else Action.TURN_RIGHT]
        if step_is_free(obs.depth, self.K, self.motion, self.cfg.agent_radius):
            return [Action.MOVE_FORWARD]
        self._mark_blocked(obs)  # the depth sees the body would touch something: plan around it
        return []

    def _mark_blocked(self, obs: Observation) -> None:
        self._map.mark_bump(obs.pose, self.cfg.agent_radius + 0.5 * self.motion.step_m, self.cfg.agent_radius)

    def _target_xz(self, box: Box2D, obs: Observation) -> np.ndarray | None:
        """Floor (x, z) of what `box` (observation pixels) frames, by the current depth and pose; None
        without them or when the box holds no usable depth."""
        from planners.readback.target import target_position

        if obs.depth is None or obs.pose is None:
            return None
        p = target_position(box, obs.depth, obs.pose, self.K)
        return None if p is None else p[[0, 2]]

    def _towards_target(self, obs: Observation, box: Box2D) -> tuple[list[Action], str]:
        """Seen but not yet within stop distance: the shortest path on the map to the floor around it
        (a straight approach gets stuck behind furniture), else to the frontier nearest to it."""
        if self._map is None or obs.depth is None:
            return [], ""
        xz = self._target_xz(box, obs)
        if xz is not None:  # the running mean: one view's estimate moves with the view, and the goal with it
            if self._target_sum[2] > 0 and np.linalg.norm(self._target_sum[:2] / self._target_sum[2] - xz) > NEW_SIGHTING_M:
                self._target_sum = np.zeros(3)  # another instance, or the first estimates were off
            self._target_sum += np.array([xz[0], xz[1], 1.0])
        if self._target_sum[2] == 0:
            return [], ""
        return self._walk_to_target(obs, self._target_sum[:2] / self._target_sum[2])

    def _to_seen_target(self, obs: Observation) -> tuple[list[Action], str]:
        """The target estimate while the detector does not see it: walk there, then face it; given up
        after LOST_AFTER plans or when faced from near without a detection."""
        self._unseen += 1
        target_xz = self._target_sum[:2] / self._target_sum[2]
        here = obs.pose.xyz[[0, 2]]
        if self._unseen <= LOST_AFTER:
            if np.linalg.norm(target_xz - here) > self.cfg.stop_distance:
                acts, note = self._walk_to_target(obs, target_xz)
                if acts:
                    return acts, note.replace("target seen", "target seen before")
            else:
                err = float(wrap_angle(yaw_towards(*(target_xz - here)) - obs.pose.yaw))
                if abs(err) > FORWARD_TOLERANCE * math.radians(self.motion.turn_deg):
                    return [Action.TURN_LEFT if err > 0 else Action.TURN_RIGHT], "target seen before -> facing where it was"
        self._target_sum = np.zeros(3)  # not there after all (or lost): search on
        return [], ""

    def _walk_to_target(self, obs: Observation, target_xz: np.ndarray) -> tuple[list[Action], str]:
        grid = self._grid()
        here = obs.pose.xyz[[0, 2]]
        xz = grid.cell_centres(np.argwhere(grid.navigable))
        near = xz[np.linalg.norm(xz - target_xz, axis=1) <= self.cfg.stop_distance - 0.15]
        path = grid.shortest_path(here, near) if len(near) else near
        if len(path) and (acts := self._step_along(obs, path)):
            return acts, "target seen -> walking the map to it"
        goals = self._frontier_goals(grid)
        goals = goals[np.linalg.norm(goals - target_xz, axis=1) <= TARGET_FRONTIER_M]
        path = grid.shortest_path(here, goals) if len(goals) else goals
        if len(path) and (acts := self._step_along(obs, path)):
            return acts, "target seen, no known way to it -> the frontier next to it"
        return [], ""

    def _frontier(self, obs: Observation) -> tuple[list[Action], str]:
        if self._map is None:
            return self._random(obs)
        grid = self._grid()
        here = obs.pose.xyz[[0, 2]]
        goals = self._frontier_goals(grid)
        path = self._path_to_kept_goal(grid, here, goals)
        if path is None:  # no goal kept, or it is gone or unreachable: the nearest reachable one
            path = grid.shortest_path(here, goals) if len(goals) else np.zeros((0, 2))
        if len(path) == 0:
            self._goal = None
            return [self._turn_dir] * 3, "frontier: none reachable -> turning 90 degrees"
        self._goal = path[-1]
        acts = self._step_along(obs, path)
        if not acts:
            # reached and still a frontier (what lies beyond cannot be seen from here), or blocked:
            # set it aside and look around (measured on val: better SPL than replanning at once)
            self._set_aside_near(self._goal)
            self._goal = None
            return [self._turn_dir] * 3, "frontier: reached or blocked -> set aside, turning 90 degrees"
        dist = float(np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1)))
        return acts, f"frontier: {dist:.1f} m to the frontier"

    def _path_to_kept_goal(self, grid, here: np.ndarray, goals: np.ndarray) -> np.ndarray | None:
        """Keep heading for the same frontier while it lasts (no dithering between two)."""
        if self._goal is None or len(goals) == 0 or np.min(np.linalg.norm(goals - self._goal, axis=1)) > REACHED_M:
            return None
        path = grid.shortest_path(here, self._goal)
        if len(path) == 0:
            self._set_aside_near(self._goal)
            return None
        return path

    def _frontier_goals(self, grid) -> np.ndarray:
        """(K, 2) xz of navigable cells within GOAL_REACH_M of a frontier, minus those set aside."""
        edge = self._map.frontier_mask()
        if not edge.any():
            return np.zeros((0, 2))
        near = ndimage.distance_transform_edt(~edge) * grid.res <= GOAL_REACH_M
        return grid.cell_centres(np.argwhere(near & grid.navigable & ~self._set_aside))

    def _set_aside_near(self, xz: np.ndarray) -> None:
        iz, ix = self._map.cells_of(np.asarray(xz)[None])[0]
        r = SET_ASIDE_M / self._map.cfg.resolution
        zz, xx = np.ogrid[: self._set_aside.shape[0], : self._set_aside.shape[1]]
        self._set_aside |= (zz - iz) ** 2 + (xx - ix) ** 2 <= r * r
