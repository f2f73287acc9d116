"""`pose_following` planner: follow waypoints, and correct the pose estimate against imagined frames.

Waypoints are the episode's route (a `RouteEpisode`, world poses) or `planner.waypoints`, egocentric
rows (dx, dy, dz, dyaw, dpitch, droll) relative to the first planning pose, as in Video4Spatial's
navigation mode. The agent walks to one waypoint at a time from its pose estimate (the env's pose,
dead-reckoned under `pose_source=odometry`, times the last correction).

Teach and repeat with imagined references: at the start the imagination renders the route in
navigation mode, one frame at each waypoint (`reference=model`; `reference=oracle`: simulator renders
at the intended poses, the upper bound). On reaching a waypoint the real view is compared with its
imagined frame (`planners.relocalize`); when the gate accepts the estimate, the agent's pose
estimate becomes "the intended pose, moved by the estimated offset", and it plans to the next
waypoint from there. At the last waypoint it walks again (up to `max_retries` times) if the
corrected estimate is more than half a step or half a turn away; then STOP. `reference=none` is
dead reckoning.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from envs.base import NavEnv, intrinsics_of
from envs.config import check
from envs.geometry import apply_relative, matrix_to_pose, pose_to_matrix, relative_pose, wrap_angle
from envs.types import Action, Episode, Observation, Pose, RouteEpisode
from models.types import Imagination
from planners.base import Plan, PlannerConfig, PlannerError, Timer, check_video, start_pose
from planners.control import Motion, goto_actions, step_is_free
from planners.relocalize import RelocalizationGate, relocalize

if TYPE_CHECKING:
    from models.memory import Memory


@dataclass
class PoseFollowingPlannerConfig(PlannerConfig):
    """Follow waypoints (the route of task=pose, else `waypoints`); correct the pose estimate at each
    waypoint against the imagined frame there (`reference`), behind a confidence gate."""

    name: str = "pose_following"
    waypoints: list[list[float]] = field(default_factory=list)  # rows (dx, dy, dz, dyaw, dpitch, droll)
    imagine: bool = True  # imagine the route once at the start (shown in the viewer)
    reference: str = "none"  # frames the correction compares with: none (dead reckoning) | model | oracle (simulator renders)
    correction_readback: str = "flow"  # relative pose of real vs imagined frame: flow (+ depth) | idm
    min_confidence: float = 0.5  # gate: read-back confidence at least this (chosen on val routes)
    max_residual: float = 20.0  # gate: mean grey-level error of the aligned frames at most this
    max_correction_m: float = 0.75  # gate: larger corrections are implausible, ignored
    max_correction_deg: float = 30.0
    max_retries: int = 2  # walks again to the last waypoint when the corrected estimate is off
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
        check(self.correction_readback in ("flow", "idm"), f"planner.correction_readback must be flow | idm, got {self.correction_readback!r}")
        check(0.0 <= self.min_confidence <= 1.0, f"planner.min_confidence must be in [0, 1], got {self.min_confidence}")
        check(self.max_residual > 0 and self.max_correction_m > 0 and self.max_correction_deg > 0,
              "planner.max_residual, max_correction_m and max_correction_deg must be > 0")
        check(self.max_retries >= 0 and self.max_collisions >= 1, "planner.max_retries must be >= 0 and max_collisions >= 1")
        check(self.oracle_size >= 16 and self.oracle_frames >= 2, "planner.oracle_size must be >= 16 and oracle_frames >= 2")


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
        self._arrive_at_step: int | None = None  # the env step count when the last plan's actions end
        self._retries = self._collisions = 0
        self._detouring = False
        self._plans = 0
        self._note = ""
        self._shown: list = []
        self._references: dict[int, np.ndarray] = {}
        if self.imagination is not None and self.imagination is not self.references:
            self._shown = self._imagine(self.imagination, start, memory)[0]
        if self.references is not None:
            videos, self._references = self._imagine(self.references, start, memory)
            self._shown += videos

    def _imagine(self, img: Imagination, start: Pose, memory: Memory) -> tuple[list, dict[int, np.ndarray]]:
        """Navigation-mode videos through all waypoints from the start view (several calls when the
        route has more waypoints than the clip has frames); the frame at each waypoint by index."""
        rows = np.array([np.concatenate(relative_pose(start, g)) for g in self._goals])
        ctx = memory.select_context(min(self.cfg.context_frames, memory.cfg.max_context), size=(img.height, img.width))
        per_call = img.num_frames - 1
        videos, refs = [], {}
        for c0 in range(0, len(rows), per_call):
            chunk = rows[c0 : c0 + per_call]
            wp, index = frames_through(chunk, img.num_frames)
            try:
                video = img.navigate(ctx, wp, num_samples=1, seed=self.seed + c0)
            except Exception as e:  # a failed imagination leaves those waypoints without a reference
                self._note += f"imagination failed ({type(e).__name__}: {e}); no reference for waypoints {c0 + 1}-{c0 + len(chunk)}. "
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

    def _correct(self, k: int, obs: Observation) -> str:
        """Compare the real view with waypoint k's imagined frame; move the estimate if the gate accepts."""
        ref = self._references.get(k)
        if ref is None or obs.pose is None:
            return ""
        try:
            rel = relocalize(obs, ref, self.env.hfov_deg, self.cfg.correction_readback, self.gate)
        except ValueError as e:
            return f"waypoint {k}: no correction ({e}). "
        if not rel.accepted:
            return f"waypoint {k}: correction ignored ({rel.reason}). "
        here = pose_to_matrix(self._goals[k]) @ rel.ref_from_real
        self._correction = here @ np.linalg.inv(pose_to_matrix(obs.pose))
        return (f"waypoint {k}: corrected by {rel.translation:.2f} m / {rel.yaw_deg:.1f} deg "
                f"(confidence {rel.confidence:.2f}, residual {rel.residual:.1f}). ")

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

    def _close(self, est: Pose, goal: Pose) -> bool:
        d = np.hypot(*(est.xyz - goal.xyz)[[0, 2]])
        return bool(d <= self.motion.step_m / 2 and abs(float(wrap_angle(est.yaw - goal.yaw))) <= np.radians(self.motion.turn_deg) / 2)

    def plan(self, obs: Observation, memory: Memory) -> Plan:
        plan = Plan()
        with Timer() as t:
            if self._plans == 0:
                plan.videos, plan.imagined, plan.note = list(self._shown), bool(self._shown), self._note
            cut = self._arrive_at_step is not None and obs.step < self._arrive_at_step  # a move collided
            self._collisions += int(cut)
            detour = self._detour(obs) if cut and self._collisions < self.cfg.max_collisions else []
            if detour:
                plan.actions, self._detouring = detour, True
                plan.note += f"bumped: detour of {len(detour)} action(s) to the freer side"
            else:
                # a finished walk reaches the waypoint; after repeated collisions give it up and
                # compare with its reference from here
                arrived = self._arrive_at_step is not None and not self._detouring and (
                    not cut or self._collisions >= self.cfg.max_collisions)
                self._detouring = False
                self._walk(plan, obs, arrived)
            self._arrive_at_step = obs.step + len(plan.actions)
            est = self.estimate(obs)
            plan.path_world = [est, *self._goals[self._next :]]
            plan.pose_estimates = {"estimate": est}
        plan.seconds = t.seconds
        self._plans += 1
        return plan

    def _walk(self, plan: Plan, obs: Observation, arrived: bool) -> None:
        """On arrival: correct, then move on to the next waypoint (or STOP at the last); then the
        actions from the estimate to the current waypoint."""
        last = len(self._goals) - 1
        while True:
            if arrived:
                self._collisions = 0
                plan.note += self._correct(self._next, obs)
                if self._next < last:
                    self._next += 1
                elif self._close(self.estimate(obs), self._goals[last]) or self._retries >= self.cfg.max_retries:
                    plan.actions = [Action.STOP]
                    plan.note += "last waypoint reached -> STOP"
                    return
                else:
                    self._retries += 1
            est, goal = self.estimate(obs), self._goals[self._next]
            acts = goto_actions(est, goal.xyz[[0, 2]], self.motion.step_m, self.motion.turn_deg, final_yaw=goal.yaw)
            if acts:
                plan.actions = acts
                plan.note += f"to waypoint {self._next + 1}/{len(self._goals)}"
                return
            arrived = True  # already there
