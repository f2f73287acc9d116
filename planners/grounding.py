"""`grounding` planner: imagine best-of-N grounding videos, keep those with a confident red box, read
back the camera path, execute its first part, re-imagine (receding horizon).

Per plan: context from memory -> imagination.ground(N samples) -> per sample: red box on the last
frames (none -> rejected), path read back (flow + current depth, or the inverse-dynamics model),
collision check of the path against the current depth (collides -> rejected) -> best score ->
controller actions. Stop when the chosen path is already (nearly) at its end, the box is centred
and the current depth inside the box is within `stop_distance`. Faults (the imagination raises or
returns NaN, no sample has a box, every path collides) make the next plan use a new seed; after
`max_failures` in a row the agent turns in place so the context changes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from envs.base import NavEnv, intrinsics_of
from envs.config import check
from envs.geometry import intrinsics_from_hfov, matrix_to_pose, world_poses
from envs.instructions import grounding_instruction, with_article
from envs.types import Action, Episode, Observation, Pose
from models.types import Imagination, ImaginedVideo
from planners.base import (
    Plan,
    PlannerConfig,
    PlannerError,
    SampleDebug,
    Timer,
    check_video,
    path_length_xz,
    should_stop,
    start_pose,
)
from planners.control import Motion, approach_box_actions, free_prefix, path_actions
from planners.detect import Detector
from planners.readback import READBACKS, read_back

if TYPE_CHECKING:
    from models.memory import Memory

log = logging.getLogger(__name__)

NEAR_YAW = np.deg2rad(20.0)
NO_BOX = "no confident red box"  # the rejection that planner.no_box=path may still act on


@dataclass
class GroundedRouteConfig(PlannerConfig):
    """What every planner that walks a read-back route from grounding videos shares (grounding, cem)."""

    min_box_score: float = 0.3
    execute_steps: int = 6  # actions executed before re-imagining
    readback: str = "flow"  # a name of planners.readback.READBACKS (true: poses the imagination reports; oracle only)
    max_failures: int = 3  # consecutive failed plans before an exploration move

    @property
    def needs_imagination(self) -> bool:
        return True

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0.0 <= self.min_box_score <= 1.0, f"planner.min_box_score must be in [0, 1], got {self.min_box_score}")
        check(self.execute_steps >= 1, f"planner.execute_steps must be >= 1, got {self.execute_steps}")
        check(self.readback in READBACKS, f"planner.readback must be one of {READBACKS.names()}, got {self.readback!r}")
        check(self.max_failures >= 1, f"planner.max_failures must be >= 1, got {self.max_failures}")


@dataclass
class GroundingPlannerConfig(GroundedRouteConfig):
    """Best-of-N grounding videos, receding horizon."""

    name: str = "grounding"
    num_samples: int = 2  # videos per plan; keep those with a confident box
    near_translation: float = 0.3  # a read-back path shorter than this (m) means "already there"
    # no sample has a confident box: "turn" in place after max_failures plans, or follow the imagined
    # path of the sample with the most confident read-back ("path": imagination still drives the search)
    no_box: str = "turn"

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.num_samples >= 1, f"planner.num_samples must be >= 1, got {self.num_samples}")
        check(self.no_box in ("turn", "path"), f"planner.no_box must be turn | path, got {self.no_box!r}")


def instruction_for(episode: Episode, obs: Observation) -> str:
    """The paper's template; the observation's own instruction wins when the backend sets one."""
    if obs.instruction:
        return obs.instruction
    return grounding_instruction("the apartment", with_article(episode.target_category.replace("_", " ")))


def trim_box_frames(frames: np.ndarray, box_threshold: float = 0.3) -> np.ndarray:
    """Frames up to the first red-box frame: the box frames repeat the final pose, and the red
    outline would only confuse the flow fit."""
    from models.red_box import box_scores

    s = box_scores(frames)
    n = len(frames)
    while n > 2 and s[n - 1] >= box_threshold:
        n -= 1
    return frames[: min(n + 1, len(frames))]


def read_back_path(method: str, frames: np.ndarray, depth: np.ndarray | None, K_img: np.ndarray, video: ImaginedVideo, sample: int):
    """PathEstimate for one sample. `true` uses poses the imagination reports (oracle only)."""
    if method == "true":
        poses = video.meta.get("poses_rel")
        return read_back(method, frames, depth, K_img, poses=None if poses is None else np.asarray(poses[sample]))
    return read_back(method, trim_box_frames(frames), depth, K_img)


class GroundingPlanner:
    """Receding-horizon best-of-N grounding."""

    name = "grounding"

    def __init__(self, cfg: GroundingPlannerConfig, env: NavEnv, imagination: Imagination | None = None, seed: int = 0,
                 detector: Detector | None = None) -> None:
        if imagination is None:
            raise PlannerError(f"planner {cfg.name!r} needs an imagination; pick model=tiny (shipped checkpoint) or model=random, not model=none")
        self.cfg = cfg
        # None: stop on the chosen sample's own box (the imagination detector's criterion); else stop
        # when this detector (e.g. detector=semantic) sees the target centred and near
        self.detector = detector
        self.env = env
        self.imagination = imagination
        self.seed = seed
        self.K_obs = intrinsics_of(env)
        self.K_img = intrinsics_from_hfov(env.hfov_deg, imagination.width, imagination.height)
        self.motion = Motion.of(env)
        self._episode: Episode | None = None
        self._instruction = ""
        self._plans = 0
        self._failures = 0

    def reset(self, episode: Episode, obs: Observation, memory: Memory) -> None:
        self._episode = episode
        self._instruction = instruction_for(episode, obs)
        self._plans = 0
        self._failures = 0
        if self.detector is not None:
            self.detector.reset(episode, obs)

    # ------------------------------------------------------------------------------- plan
    def _imagine(self, memory: Memory) -> tuple[ImaginedVideo | None, str]:
        img = self.imagination
        n_ctx = min(self.cfg.context_frames, memory.cfg.max_context)
        ctx = memory.select_context(n_ctx, size=(img.height, img.width))
        seed = self.seed * 100_003 + self._plans * 7919 + self._failures
        try:
            video = img.ground(ctx, self._instruction, num_samples=self.cfg.num_samples, seed=seed)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # a model fault is a failed plan, never a crashed episode
            return None, f"imagination failed ({type(e).__name__}: {e})"
        why = check_video(video, img.height, img.width)
        return (video, "") if not why else (None, why)

    def _score_samples(self, video: ImaginedVideo, obs: Observation) -> list[SampleDebug]:
        from models.red_box import detect_red_box

        out: list[SampleDebug] = []
        for s, frames in enumerate(video.frames):
            d = SampleDebug()
            out.append(d)
            d.box = detect_red_box(frames, min_confidence=self.cfg.min_box_score)
            if d.box is None:
                d.rejected = NO_BOX
                if self.cfg.no_box != "path":
                    continue
            try:
                path = read_back_path(self.cfg.readback, frames, obs.depth, self.K_img, video, s)
            except ValueError as e:
                d.rejected = f"read-back failed: {e}"
                continue
            d.poses_rel, d.confidence = path.poses_rel, float(path.confidence)
            if not np.all(np.isfinite(d.poses_rel)):
                d.rejected = "read-back path is not finite"
                continue
            prefix, why = free_prefix(obs.depth, self.K_obs, d.poses_rel, self.cfg.agent_radius)
            if prefix is None:
                d.rejected = why
                continue
            d.cut = why
            d.poses_rel = prefix
            # a path cut short by an obstacle is worth less than one that reaches the target
            box_score = d.box.score if d.box is not None else 0.0
            d.score = float(box_score * (0.5 + 0.5 * d.confidence) * (0.5 if why else 1.0))
        return out

    def _fallback(self, plan: Plan, why: str) -> Plan:
        """A failed plan: replan with a new seed; after max_failures in a row, turn so the view changes."""
        self._failures += 1
        if self._failures >= self.cfg.max_failures:
            self._failures = 0
            plan.actions = [Action.TURN_LEFT] * max(1, int(round(90.0 / self.motion.turn_deg)))
            plan.note = f"{why}; {self.cfg.max_failures} failed plans in a row -> turning to change the view"
        else:
            plan.note = f"{why}; replanning with a new seed"
        log.info(plan.note)
        return plan

    def plan(self, obs: Observation, memory: Memory) -> Plan:
        plan = Plan(imagined=True)
        with Timer() as t:
            self._plan_into(plan, obs, memory)
        plan.seconds = t.seconds
        self._plans += 1
        return plan

    def _plan_into(self, plan: Plan, obs: Observation, memory: Memory) -> None:
        if self.detector is not None:
            H, W = obs.rgb.shape[:2]
            box = self.detector(obs, memory)
            if should_stop(box, obs.depth, W, H, self.cfg.gamma, self.cfg.stop_distance, self.K_obs):
                plan.actions, plan.note = [Action.STOP], f"{self.detector.name} detector: target centred within stop distance -> STOP"
                return
        video, why = self._imagine(memory)
        if video is None:
            self._fallback(plan, why)
            return
        plan.videos.append(video)
        samples = self._score_samples(video, obs)
        plan.samples.append(samples)
        kept = [i for i, d in enumerate(samples) if not d.rejected]
        if not kept:
            reasons = sorted({d.rejected for d in samples})
            why = f"no usable sample of {len(samples)} ({'; '.join(reasons)})"
            if not self._follow_imagined_path(plan, samples, obs, why):
                self._fallback(plan, why)
            return
        best = max(kept, key=lambda i: samples[i].score)
        d = samples[best]
        self._failures = 0
        start = start_pose(obs)
        plan.chosen, plan.path_world = (0, best), world_poses(start, d.poses_rel)
        plan.target_world = self._target_estimate(d, obs, start)
        plan.actions, plan.note = self._act(d, obs, start)
        if d.cut:
            plan.note += f" (path cut: {d.cut})"

    def _follow_imagined_path(self, plan: Plan, samples: list[SampleDebug], obs: Observation, why: str) -> bool:
        """`no_box=path`: no sample shows the box, but the imagined motion is still the model's guess
        of where to go; walk the first part of the most confidently read-back collision-free path."""
        if self.cfg.no_box != "path":
            return False
        # _score_samples leaves NO_BOX only on samples whose path was read back, finite and collision-free
        paths = [i for i, d in enumerate(samples) if d.rejected == NO_BOX and d.poses_rel is not None]
        if not paths:
            return False
        best = max(paths, key=lambda i: samples[i].confidence)
        d = samples[best]
        start = start_pose(obs)
        actions = path_actions(start, d.poses_rel, self.motion)
        if not actions:
            return False
        plan.chosen, plan.path_world = (0, best), world_poses(start, d.poses_rel)
        plan.actions = actions[: self.cfg.execute_steps]
        plan.note = f"{why}; following the imagined path ({len(plan.actions)}/{len(actions)} actions)"
        return True

    def _target_estimate(self, d: SampleDebug, obs: Observation, start: Pose) -> np.ndarray | None:
        """Where the target is: along the end pose's view ray through the box centre, at the depth
        the current view measures there when the path is short (else unknown)."""
        if d.box is None or obs.depth is None or path_length_xz(d.poses_rel) > self.cfg.near_translation:
            return None
        try:
            from planners.readback.target import target_position

            sx, sy = obs.rgb.shape[1] / self.imagination.width, obs.rgb.shape[0] / self.imagination.height
            p = target_position(d.box.scaled(sx, sy), obs.depth, start, self.K_obs)
            return None if p is None else np.asarray(p, dtype=np.float64)
        except (ImportError, ValueError):
            return None

    def _act(self, d: SampleDebug, obs: Observation, start: Pose) -> tuple[list[Action], str]:
        H, W = obs.rgb.shape[:2]
        box_obs = d.box.scaled(W / self.imagination.width, H / self.imagination.height)
        end = d.poses_rel[-1]
        end_yaw = float(matrix_to_pose(end).yaw)
        near = not d.cut and path_length_xz(d.poses_rel) <= self.cfg.near_translation and abs(end_yaw) <= NEAR_YAW
        if near and self.detector is None and should_stop(box_obs, obs.depth, W, H, self.cfg.gamma, self.cfg.stop_distance, self.K_obs):
            return [Action.STOP], "target centred within stop distance -> STOP"
        actions = path_actions(start, d.poses_rel, self.motion)
        if not actions:
            # The imagined path ends here but the target is still far: walk towards the box.
            actions = approach_box_actions(box_obs, obs.depth, W, self.motion, self.K_obs, self.cfg.agent_radius, self.cfg.gamma)
            return actions[: self.cfg.execute_steps], "path ends here; approaching the box"
        return actions[: self.cfg.execute_steps], f"executing {min(len(actions), self.cfg.execute_steps)}/{len(actions)} actions of the read-back path"
