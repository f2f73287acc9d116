"""`pose_following` planner: follow waypoints, and correct the pose estimate against imagined frames.

Waypoints are the episode's route (a `RouteEpisode`, world poses) or `planner.waypoints`, egocentric
rows (dx, dy, dz, dyaw, dpitch, droll) relative to the first planning pose, as in Video4Spatial's
navigation mode. The agent walks to one waypoint at a time from its pose estimate (the env's pose,
dead-reckoned under `pose_source=odometry`, times the last correction).

Teach and repeat with imagined references: at the start the imagination renders the route in
navigation mode, one frame at every pose a noise-free walk of the route passes (`reference_poses=path`)
or at the waypoints only (`reference_poses=waypoints`); `reference=model` uses the imagination,
`reference=oracle` simulator renders at those intended poses (the upper bound). Every
`correct_every` actions the real view is compared with the imagined frame whose intended pose is
nearest the estimate (`planners.relocalize`, starting from the relative pose the estimate predicts);
when the gate accepts, the pose estimate becomes "that intended pose, moved by the estimated
offset", and the next actions are planned from there, so drift is removed before it walks the
agent into a wall. After a bump it detours to the freer side from the corrected estimate.
`reference=none` is dead reckoning.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from envs.base import NavEnv, intrinsics_of
from envs.config import check
from envs.geometry import apply_relative, matrix_to_pose, pose_to_matrix, relative_pose, wrap_angle
from envs.odometry import integrate
from envs.types import Action, Episode, Observation, Pose, RouteEpisode
from models.types import Imagination
from planners.base import Plan, PlannerConfig, PlannerError, Timer, check_video, start_pose
from planners.control import Motion, goto_actions, step_is_free
from planners.relocalize import RelocalizationGate, relocalize

if TYPE_CHECKING:
    from models.memory import Memory


@dataclass
class PoseFollowingPlannerConfig(PlannerConfig):
    """Follow waypoints (the route of task=pose, else `waypoints`); every `correct_every` actions,
    correct the pose estimate against the nearest imagined frame (`reference`), behind a confidence gate."""

    name: str = "pose_following"
    waypoints: list[list[float]] = field(default_factory=list)  # rows (dx, dy, dz, dyaw, dpitch, droll)
    imagine: bool = True  # imagine the route once at the start (shown in the viewer)
    reference: str = "none"  # frames the correction compares with: none (dead reckoning) | model | oracle (simulator renders)
    reference_poses: str = "path"  # imagined frames at every pose of the intended walk (path) | at the waypoints only
    correct_every: int = 1  # actions between corrections
    correction_readback: str = "flow"  # relative pose of real vs imagined frame: flow (+ depth) | idm
    min_confidence: float = 0.5  # gate: read-back confidence at least this (chosen on val routes)
    max_residual: float = 20.0  # gate: mean grey-level error of the aligned frames at most this
    max_correction_m: float = 0.75  # gate: a larger change of the estimate is implausible, ignored
    max_correction_deg: float = 30.0
    drift_per_action_m: float = 0.1  # gate: and at most this much change per action since the last accepted correction
    drift_per_action_deg: float = 6.0  # (about twice the actuation noise a base is specified with)
    max_collisions: int = 3  # bumps on the way to a waypoint (each answered by a detour) before it is given up
    oracle_size: int = 64  # reference=oracle renders at this square resolution
    oracle_frames: int = 12

    @property
    def needs_imagination(self) -> bool:
        return self.imagine or self.reference == "model"

    def __post_init__(self) -> None:
        super().__post_init__()
        for i, w in enumerate(self.waypoints):
            check(len(w) == 6, f"planner.waypoints[{i}] must have 6 numbers (dx, dy, dz, dyaw, dpitch, droll), got {len(w)}")
        check(self.reference in ("none", "model", "oracle"), f"planner.reference must be none | model | oracle, got {self.reference!r}")
        check(self.reference_poses in ("path", "waypoints"), f"planner.reference_poses must be path | waypoints, got {self.reference_poses!r}")
        check(self.correct_every >= 1, f"planner.correct_every must be >= 1 action, got {self.correct_every}")
        check(self.correction_readback in ("flow", "idm"), f"planner.correction_readback must be flow | idm, got {self.correction_readback!r}")
        check(0.0 <= self.min_confidence <= 1.0, f"planner.min_confidence must be in [0, 1], got {self.min_confidence}")
        check(min(self.max_residual, self.max_correction_m, self.max_correction_deg, self.drift_per_action_m, self.drift_per_action_deg) > 0,
              "planner.max_residual, max_correction_m/deg and drift_per_action_m/deg must be > 0")
        check(self.max_collisions >= 1, f"planner.max_collisions must be >= 1, got {self.max_collisions}")
        check(self.oracle_size >= 16 and self.oracle_frames >= 2, "planner.oracle_size must be >= 16 and oracle_frames >= 2")


def intended_path(start: Pose, goals: list[Pose], motion: Motion) -> list[Pose]:
    """The poses a noise-free walk from `start` through `goals` passes, one per action (the last of
    each leg is its waypoint): where the imagined reference frames are rendered."""
    poses, here = [], start
    for k, goal in enumerate(goals):
        final_yaw = goal.yaw if k == len(goals) - 1 else None
        for a in goto_actions(here, goal.xyz[[0, 2]], motion.step_m, motion.turn_deg, final_yaw=final_yaw):
            here = integrate(here, a, motion.step_m, math.radians(motion.turn_deg))
            poses.append(here)
    return poses


def resample_waypoints(rows: np.ndarray, n: int) -> np.ndarray:
    """(K, 6) waypoints -> (n, 6) by linear interpolation from the identity (the current pose)."""
    return frames_through(rows, n)[0]


def frames_through(rows: np.ndarray, n: int) -> tuple[np.ndarray, list[int]]:
    """(K, 6) waypoints (K <= n - 1) -> (n, 6) navigation-mode rows starting at the identity, with
    waypoint k exactly at frame index[k] and linear interpolation between (yaw unwrapped)."""
    rows = np.concatenate([np.zeros((1, 6)), np.asarray(rows, dtype=np.float64).reshape(-1, 6)])
    rows[:, 3] = np.unwrap(rows[:, 3])
    k = len(rows) - 1
    if k > n - 1:
        raise ValueError(f"{k} waypoints do not fit in {n} frames (at most {n - 1})")
    anchors = np.round(np.arange(k + 1) * (n - 1) / max(k, 1)).astype(int) if k else np.zeros(1, int)
    t = np.arange(n)
    out = np.stack([np.interp(t, anchors, rows[:, j]) for j in range(6)], axis=1)
    return out, [int(a) for a in anchors[1:]]


class PoseFollowingPlanner:
    name = "pose_following"

    def __init__(self, cfg: PoseFollowingPlannerConfig, env: NavEnv, imagination: Imagination | None = None, seed: int = 0) -> None:
        self.cfg = cfg
        self.env = env
        self.imagination = imagination if (cfg.imagine or cfg.reference == "model") else None
        if cfg.reference == "model" and imagination is None:
            raise PlannerError("planner.reference=model needs an imagination; pick model=tiny or model=random, or reference=oracle|none")
        self.references: Imagination | None = None
        if cfg.reference == "model":
            self.references = imagination
        elif cfg.reference == "oracle":
            from planners.oracle import OracleImagination

            self.references = OracleImagination(env, cfg.oracle_size, cfg.oracle_size, cfg.oracle_frames, 0)
        self.gate = RelocalizationGate(cfg.min_confidence, cfg.max_residual, cfg.max_correction_m, cfg.max_correction_deg)
        self.motion = Motion.of(env)
        self.K = intrinsics_of(env)
        self.seed = seed
        self._goals: list[Pose] = []

    # ---------------------------------------------------------------------------------- episode
    def reset(self, episode: Episode, obs: Observation, memory: Memory) -> None:
        start = start_pose(obs)
        if isinstance(episode, RouteEpisode) and episode.waypoints:
            self._goals = list(episode.waypoints)
        elif self.cfg.waypoints:
            self._goals = [apply_relative(start, np.asarray(w[:3]), np.asarray(w[3:])) for w in self.cfg.waypoints]
        else:
            raise ValueError("no waypoints: run task=pose (routes) or give planner.waypoints rows (dx, dy, dz, dyaw, dpitch, droll)")
        self._correction = np.eye(4)  # estimate = correction @ env pose
        self._next = 0  # index of the waypoint being walked to
        self._expect_step: int | None = None  # the env step count when the last plan's actions end
        self._last_actions: list[Action] = []
        self._collisions = 0
        self._since_correction = 0
        self._accepted_at_step = obs.step  # the estimate is exact at the start
        self._plans = 0
        self._note = ""
        self._shown: list = []
        self._intended = self._goals if self.cfg.reference_poses == "waypoints" else intended_path(start, self._goals, self.motion)
        self._references: dict[int, np.ndarray] = {}  # index into self._intended -> imagined frame there
        if self.imagination is not None and self.imagination is not self.references:
            self._shown = self._imagine(self.imagination, start, self._goals, memory)[0]
        if self.references is not None:
            videos, self._references = self._imagine(self.references, start, self._intended, memory)
            self._shown += videos

    def _imagine(self, img: Imagination, start: Pose, poses: list[Pose], memory: Memory) -> tuple[list, dict[int, np.ndarray]]:
        """Navigation-mode videos through `poses` from the start view (several calls when there are
        more poses than the clip has frames); the frame at each pose by index."""
        rows = np.array([np.concatenate(relative_pose(start, g)) for g in poses])
        ctx = memory.select_context(min(self.cfg.context_frames, memory.cfg.max_context), size=(img.height, img.width))
        per_call = img.num_frames - 1
        videos, refs = [], {}
        for c0 in range(0, len(rows), per_call):
            chunk = rows[c0 : c0 + per_call]
            wp, index = frames_through(chunk, img.num_frames)
            try:
                video = img.navigate(ctx, wp, num_samples=1, seed=self.seed + c0)
            except Exception as e:  # a failed imagination leaves those poses without a reference
                self._note += f"imagination failed ({type(e).__name__}: {e}); no reference for poses {c0 + 1}-{c0 + len(chunk)}. "
                continue
            if check_video(video, img.height, img.width):
                continue
            videos.append(video)
            for k, i in enumerate(index):
                refs[c0 + k] = np.asarray(video.frames[0, i])
        return videos, refs

    # ------------------------------------------------------------------------------------- plan
    def estimate(self, obs: Observation) -> Pose:
        return matrix_to_pose(self._correction @ pose_to_matrix(start_pose(obs)))

    def _nearest_reference(self, est: Pose) -> int | None:
        """The reference whose intended pose is nearest the estimate (a 30-degree turn counts as much
        as a 0.25 m step: both change the view about as much)."""
        if not self._references:
            return None
        per_rad = self.motion.step_m / math.radians(self.motion.turn_deg)

        def cost(i: int) -> float:
            p = self._intended[i]
            return float(np.hypot(*(p.xyz - est.xyz)[[0, 2]]) + per_rad * abs(float(wrap_angle(p.yaw - est.yaw))))

        return min(self._references, key=cost)

    def _correct(self, obs: Observation) -> str:
        """Compare the real view with the nearest imagined frame; move the estimate if the gate accepts."""
        if obs.pose is None:
            return ""
        est = self.estimate(obs)
        i = self._nearest_reference(est)
        if i is None:
            return ""
        ref_pose = pose_to_matrix(self._intended[i])
        prior = np.linalg.inv(ref_pose) @ pose_to_matrix(est)  # the estimate's pose in the reference camera
        # the drift since the last accepted correction bounds how far a correction can plausibly move
        # the estimate: a frame that only resembles the view (an imagination copying its context) is ignored
        n = max(obs.step - self._accepted_at_step, 1)
        gate = dataclasses.replace(self.gate, max_translation=min(self.gate.max_translation, n * self.cfg.drift_per_action_m),
                                   max_yaw_deg=min(self.gate.max_yaw_deg, n * self.cfg.drift_per_action_deg))
        try:
            rel = relocalize(obs, self._references[i], self.env.hfov_deg, self.cfg.correction_readback, gate, prior=prior)
        except ValueError as e:
            return f"no correction ({e}). "
        if not rel.accepted:
            return f"correction ignored ({rel.reason}). "
        here = ref_pose @ rel.ref_from_real
        moved_m = float(np.hypot(*(here[[0, 2], 3] - est.xyz[[0, 2]])))
        self._correction = here @ np.linalg.inv(pose_to_matrix(obs.pose))
        self._accepted_at_step = obs.step
        return f"corrected by {moved_m:.2f} m (confidence {rel.confidence:.2f}, residual {rel.residual:.1f}). "

    def _detour(self, obs: Observation) -> list[Action]:
        """After a bump: turn to the nearest heading (towards the waypoint's side first) whose next
        step the depth shows free, and take it; [] when no heading within 60 degrees is free."""
        if obs.depth is None:
            return []
        rel, _ = relative_pose(self.estimate(obs), self._goals[self._next])
        side = 1 if rel[0] < 0 else -1  # the waypoint is to the left: try left turns first
        for turns in (side, -side, 2 * side, -2 * side):
            if step_is_free(obs.depth, self.K, self.motion, self.cfg.agent_radius, turns):
                turn = Action.TURN_LEFT if turns > 0 else Action.TURN_RIGHT
                return [turn] * abs(turns) + [Action.MOVE_FORWARD]
        return []

    def _bumped(self, obs: Observation, memory: Memory) -> bool:
        """Did the last executed action, a MOVE_FORWARD, collide? (The bumper: a blocked move leaves
        the reported position unchanged; the agent cuts a plan short after one.)"""
        if self._expect_step is None or len(memory) < 2 or obs.pose is None:
            return False
        done = len(self._last_actions) - (self._expect_step - obs.step)
        if done < 1 or self._last_actions[done - 1] != Action.MOVE_FORWARD:
            return False
        before = memory.observation(len(memory) - 2).pose
        return before is not None and before.position == obs.pose.position

    def plan(self, obs: Observation, memory: Memory) -> Plan:
        plan = Plan()
        with Timer() as t:
            if self._plans == 0:
                plan.videos, plan.imagined, plan.note = list(self._shown), bool(self._shown), self._note
            bumped = self._bumped(obs, memory)
            if bumped or self._since_correction >= self.cfg.correct_every:
                plan.note += self._correct(obs)
                self._since_correction = 0
            self._collisions += int(bumped)
            detour = self._detour(obs) if bumped and self._collisions < self.cfg.max_collisions else []
            if detour:
                plan.actions = detour
                plan.note += f"bumped: detour of {len(detour)} action(s) to the freer side"
            else:
                if self._collisions >= self.cfg.max_collisions:
                    plan.note += f"waypoint {self._next + 1} given up after {self._collisions} bumps. "
                    if self._next == len(self._goals) - 1:
                        plan.actions = [Action.STOP]
                    self._next, self._collisions = min(self._next + 1, len(self._goals) - 1), 0
                if not plan.actions:
                    self._walk(plan, obs)
            self._expect_step, self._last_actions = obs.step + len(plan.actions), list(plan.actions)
            self._since_correction += len(plan.actions)
            est = self.estimate(obs)
            plan.path_world = [est, *self._goals[self._next :]]
            plan.pose_estimates = {"estimate": est}
        plan.seconds = t.seconds
        self._plans += 1
        return plan

    def _walk(self, plan: Plan, obs: Observation) -> None:
        """The next actions (at most `correct_every`) from the estimate towards the current waypoint;
        a waypoint the estimate has reached hands over to the next one, the last one to STOP."""
        last = len(self._goals) - 1
        est = self.estimate(obs)
        while True:
            goal = self._goals[self._next]
            final_yaw = goal.yaw if self._next == last else None
            acts = goto_actions(est, goal.xyz[[0, 2]], self.motion.step_m, self.motion.turn_deg, final_yaw=final_yaw)
            if acts:
                plan.actions = acts[: self.cfg.correct_every]
                plan.note += f"to waypoint {self._next + 1}/{len(self._goals)}"
                return
            if self._next == last:
                plan.actions = [Action.STOP]
                plan.note += "last waypoint reached -> STOP"
                return
            self._next, self._collisions = self._next + 1, 0
