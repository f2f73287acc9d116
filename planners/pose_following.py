"""`pose_following` planner: navigation mode for given waypoints.

Waypoints are egocentric (dx, dy, dz, dyaw, dpitch, droll) relative to the episode's first planning
pose, as in Video4Spatial's navigation mode. Each plan imagines the rest of the route (so the viewer
shows what the model expects to see) and the controller walks to the next waypoints; STOP once the
last one is reached.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from envs.base import NavEnv
from envs.config import check
from envs.geometry import apply_relative, pose_to_matrix, relative_pose
from envs.types import Action, Episode, Observation, Pose
from models.types import Imagination
from planners.base import Plan, PlannerConfig, Timer, check_video, start_pose
from planners.control import Motion, path_actions

if TYPE_CHECKING:
    from models.memory import Memory


@dataclass
class PoseFollowingPlannerConfig(PlannerConfig):
    """Navigation mode along given egocentric waypoints (F, 6); stops when they are done."""

    name: str = "pose_following"
    waypoints: list[list[float]] = field(default_factory=list)  # rows (dx, dy, dz, dyaw, dpitch, droll)
    imagine: bool = True  # imagine the route first (for the viewer); the controller follows the poses

    @property
    def needs_imagination(self) -> bool:
        return self.imagine

    def __post_init__(self) -> None:
        super().__post_init__()
        for i, w in enumerate(self.waypoints):
            check(len(w) == 6, f"planner.waypoints[{i}] must have 6 numbers (dx, dy, dz, dyaw, dpitch, droll), got {len(w)}")


def resample_waypoints(rows: np.ndarray, n: int) -> np.ndarray:
    """(K, 6) waypoints -> (n, 6) by linear interpolation from the identity (the current pose)."""
    rows = np.concatenate([np.zeros((1, 6)), np.asarray(rows, dtype=np.float64).reshape(-1, 6)])
    t = np.linspace(0, len(rows) - 1, n)
    return np.stack([np.interp(t, np.arange(len(rows)), rows[:, j]) for j in range(6)], axis=1)


class PoseFollowingPlanner:
    name = "pose_following"

    def __init__(self, cfg: PoseFollowingPlannerConfig, env: NavEnv, imagination: Imagination | None = None, seed: int = 0) -> None:
        if not cfg.waypoints:
            raise ValueError("planner.waypoints is empty; give rows (dx, dy, dz, dyaw, dpitch, droll) in conf/planner/pose_following.yaml")
        self.cfg = cfg
        self.env = env
        self.imagination = imagination if cfg.imagine else None
        self.motion = Motion.of(env)
        self.seed = seed
        self._goals: list[Pose] = []
        self._plans = 0

    def reset(self, episode: Episode, obs: Observation, memory: Memory) -> None:
        start = start_pose(obs)
        self._goals = [apply_relative(start, np.asarray(w[:3]), np.asarray(w[3:])) for w in self.cfg.waypoints]
        self._plans = 0

    def plan(self, obs: Observation, memory: Memory) -> Plan:
        plan = Plan()
        with Timer() as t:
            cur = start_pose(obs)
            # drop reached waypoints
            while self._goals and np.hypot(*(self._goals[0].xyz - cur.xyz)[[0, 2]]) < self.motion.step_m / 2 and len(self._goals) > 1:
                self._goals.pop(0)
            rows = np.array([np.concatenate(relative_pose(cur, g)) for g in self._goals])
            if self.imagination is not None:
                img = self.imagination
                ctx = memory.select_context(min(self.cfg.context_frames, memory.cfg.max_context), size=(img.height, img.width))
                try:
                    video = img.navigate(ctx, resample_waypoints(rows, img.num_frames), num_samples=1, seed=self.seed + self._plans)
                    why = check_video(video, img.height, img.width)
                    if not why:
                        plan.videos.append(video)
                        plan.imagined = True
                    else:
                        plan.note = f"imagination unusable ({why}); following the poses anyway. "
                except Exception as e:  # the route is given: imagination is only shown
                    plan.note = f"imagination failed ({type(e).__name__}: {e}); following the poses anyway. "
            T0 = pose_to_matrix(cur)
            poses_rel = np.stack([np.eye(4)] + [np.linalg.inv(T0) @ pose_to_matrix(g) for g in self._goals])
            plan.path_world = [cur, *self._goals]
            acts = path_actions(cur, poses_rel, self.motion)
            if not acts:
                plan.actions, plan.note = [Action.STOP], plan.note + "all waypoints reached -> STOP"
            else:
                plan.actions = acts[: max(1, len(acts))]
                plan.note += f"following {len(self._goals)} waypoint(s)"
        plan.seconds = t.seconds
        self._plans += 1
        return plan
