"""`cem` planner, NWM style: sample pose paths, imagine each in navigation mode, score the last frame,
refit the sampling distribution to the elites, repeat; execute the best path's first actions.

Score of a candidate = how well its imagined last frame shows the target centred. The goal view
comes from one grounding imagination per plan (its last path frame shows the target centred, its red
box says where): score = -(mean absolute pixel difference to that goal view) - w * distance of the
candidate's end pose to the grounded end pose (the box/target centring term, in metres + radians).
NWM scores by LPIPS to a goal image; a pixel L1 keeps the tiny CPU default cheap.

A path is two (turn, forward) segments: params (yaw1, d1, yaw2, d2), turned into F egocentric
waypoints (F, 6) by walking the segments at constant speed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from envs.config import check
from envs.geometry import apply_relative, matrix_to_pose, pose_to_matrix, world_poses
from envs.types import Action, Observation, Pose
from planners.base import (
    Plan,
    SampleDebug,
    check_video,
    path_length_xz,
    should_stop,
    start_pose,
)
from planners.control import approach_box_actions, free_prefix, path_actions
from planners.grounding import NEAR_YAW, GroundedRouteConfig, GroundingPlanner, read_back_path, trim_box_frames

if TYPE_CHECKING:
    from models.memory import Memory

POSE_WEIGHT = 0.1  # score units per metre / radian of end-pose disagreement with the grounded path


@dataclass
class CEMPlannerConfig(GroundedRouteConfig):
    """NWM-style cross-entropy search over pose paths imagined in navigation mode."""

    name: str = "cem"
    num_candidates: int = 4
    num_elites: int = 2
    iterations: int = 2
    horizon_m: float = 1.5  # total forward motion of a candidate path, at most
    max_turn_deg: float = 90.0
    ground_samples: int = 1  # grounding videos that give the goal view and box

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.num_candidates >= 2, f"planner.num_candidates must be >= 2, got {self.num_candidates}")
        check(1 <= self.num_elites <= self.num_candidates, "planner.num_elites must be in [1, num_candidates]")
        check(self.iterations >= 1, f"planner.iterations must be >= 1, got {self.iterations}")
        check(self.horizon_m > 0, f"planner.horizon_m must be > 0, got {self.horizon_m}")


def params_to_waypoints(p: np.ndarray, n: int) -> np.ndarray:
    """(yaw1, d1, yaw2, d2) -> (n, 6) egocentric waypoints (dx, dy, dz, dyaw, 0, 0) at constant speed,
    turning in place before each segment."""
    yaw1, d1, yaw2, d2 = (float(v) for v in p)
    d1, d2 = max(d1, 0.0), max(d2, 0.0)
    keys = [Pose((0.0, 0.0, 0.0), 0.0)]
    keys.append(Pose((0.0, 0.0, 0.0), yaw1))
    keys.append(apply_relative(keys[-1], np.array([0.0, 0.0, -d1]), np.zeros(3)))
    keys.append(Pose(keys[-1].position, yaw1 + yaw2))
    keys.append(apply_relative(keys[-1], np.array([0.0, 0.0, -d2]), np.zeros(3)))
    cost = np.concatenate([[0.0], np.cumsum([abs(yaw1) * 0.3, d1, abs(yaw2) * 0.3, d2])])
    ts = np.linspace(0, cost[-1], n) if cost[-1] > 0 else np.zeros(n)
    out = np.zeros((n, 6))
    for k, t in enumerate(ts):
        i = int(np.clip(np.searchsorted(cost, t, side="right") - 1, 0, 3))
        f = 0.0 if cost[i + 1] <= cost[i] else (t - cost[i]) / (cost[i + 1] - cost[i])
        a, b = keys[i], keys[i + 1]
        pos = (1 - f) * a.xyz + f * b.xyz
        out[k, :3] = pos
        out[k, 3] = (1 - f) * a.yaw + f * b.yaw
    return out


def waypoints_to_rel(w: np.ndarray) -> np.ndarray:
    """(n, 6) egocentric waypoints -> (n, 4, 4) camera-to-current-camera."""
    origin = Pose((0.0, 0.0, 0.0), 0.0)
    return np.stack([pose_to_matrix(apply_relative(origin, row[:3], row[3:])) for row in w])


class CEMPlanner(GroundingPlanner):
    """The grounding planner's set-up, reset and receding-horizon `plan` (same instruction, seeds and
    failure counters); each plan is a cross-entropy search over imagined navigation paths."""

    name = "cem"

    def _plan_into(self, plan: Plan, obs: Observation, memory: Memory) -> None:
        from models.red_box import detect_red_box

        img, cfg = self.imagination, self.cfg
        ctx = memory.select_context(min(cfg.context_frames, memory.cfg.max_context), size=(img.height, img.width))
        seed = self.seed * 100_003 + self._plans * 7919 + self._failures
        rng = np.random.default_rng(seed)
        start = start_pose(obs)
        H, W = obs.rgb.shape[:2]

        # 1) goal view + box from grounding mode
        try:
            g = img.ground(ctx, self._instruction, num_samples=cfg.ground_samples, seed=seed)
            why = check_video(g, img.height, img.width)
        except Exception as e:
            g, why = None, f"grounding imagination failed ({type(e).__name__}: {e})"
        if g is None or why:
            return self._fallback(plan, why)
        plan.videos.append(g)
        gsamples, goal, goal_rel, gbox = [], None, None, None
        for s, frames in enumerate(g.frames):
            d = SampleDebug(box=detect_red_box(frames, min_confidence=cfg.min_box_score))
            gsamples.append(d)
            if d.box is None:
                d.rejected = "no confident red box"
                continue
            try:
                path = read_back_path("true" if "poses_rel" in g.meta else self.cfg.readback, frames, obs.depth, self.K_img, g, s)
                d.poses_rel, d.confidence, d.score = path.poses_rel, path.confidence, d.box.score
            except ValueError as e:
                d.rejected = f"read-back failed: {e}"
                continue
            if goal is None or d.score > gbox.score:
                goal = trim_box_frames(frames)[-2 if len(trim_box_frames(frames)) > 1 else -1]
                goal_rel, gbox = d.poses_rel[-1], d.box
        plan.samples.append(gsamples)
        if goal is None:
            return self._fallback(plan, "no grounding sample has a confident red box")
        self._failures = 0
        box_obs = gbox.scaled(W / img.width, H / img.height)
        gpath = next(d.poses_rel for d in gsamples if d.box is gbox)
        if path_length_xz(gpath) <= 0.3 and abs(matrix_to_pose(goal_rel).yaw) <= NEAR_YAW and should_stop(box_obs, obs.depth, W, H, cfg.gamma, cfg.stop_distance, self.K_obs):
            plan.actions, plan.note = [Action.STOP], "target centred within stop distance -> STOP"
            return

        # 2) CEM over (yaw1, d1, yaw2, d2), initialised at the grounded end pose
        gp = matrix_to_pose(goal_rel)
        dist = float(np.hypot(gp.position[0], gp.position[2]))
        head = float(np.arctan2(-gp.position[0], -gp.position[2])) if dist > 1e-3 else 0.0
        mean = np.array([head, min(dist, cfg.horizon_m), gp.yaw - head, 0.0])
        std = np.array([np.deg2rad(cfg.max_turn_deg) / 2, cfg.horizon_m / 3, np.deg2rad(cfg.max_turn_deg) / 3, cfg.horizon_m / 6])
        lo = np.array([-np.deg2rad(cfg.max_turn_deg), 0.0, -np.deg2rad(cfg.max_turn_deg), 0.0])
        hi = np.array([np.deg2rad(cfg.max_turn_deg), cfg.horizon_m, np.deg2rad(cfg.max_turn_deg), cfg.horizon_m])
        goal_f = goal.astype(np.float32) / 255.0
        best = (-np.inf, None, None)
        cand_samples: list[SampleDebug] = []
        for it in range(cfg.iterations):
            P = np.clip(mean + std * rng.standard_normal((cfg.num_candidates, 4)), lo, hi)
            if it == 0:
                P[0] = np.clip(mean, lo, hi)  # always try the grounded path itself
            total = P[:, 1] + P[:, 3]
            over = total > cfg.horizon_m
            P[over, 1] *= cfg.horizon_m / total[over]  # keep within the horizon by shrinking both legs
            P[over, 3] *= cfg.horizon_m / total[over]
            scores = np.full(len(P), -np.inf)
            for k, p in enumerate(P):
                wp = params_to_waypoints(p, img.num_frames)
                rel = waypoints_to_rel(wp)
                d = SampleDebug(poses_rel=rel)
                cand_samples.append(d)
                prefix, why = free_prefix(obs.depth, self.K_obs, rel, cfg.agent_radius)
                if prefix is None:
                    d.rejected = why
                    continue
                if why:  # imagine the whole path, execute only its free part
                    d.cut = why
                try:
                    v = img.navigate(ctx, wp, num_samples=1, seed=seed + 1 + k + it * cfg.num_candidates)
                    why = check_video(v, img.height, img.width)
                except Exception as e:
                    v, why = None, f"navigation imagination failed ({type(e).__name__}: {e})"
                if v is None or why:
                    d.rejected = why
                    continue
                plan.videos.append(v)
                last = v.frames[0, -1].astype(np.float32) / 255.0
                ep = matrix_to_pose(rel[-1])
                pose_err = float(np.hypot(ep.position[0] - gp.position[0], ep.position[2] - gp.position[2]) + abs(np.angle(np.exp(1j * (ep.yaw - gp.yaw)))))
                scores[k] = d.score = float(-np.abs(last - goal_f).mean() - POSE_WEIGHT * pose_err - (0.05 if why else 0.0))
                if scores[k] > best[0]:
                    best = (scores[k], prefix, len(plan.videos) - 1)
            ok = np.isfinite(scores)
            if ok.sum() >= 1:
                elite = P[ok][np.argsort(scores[ok])[::-1][: cfg.num_elites]]
                mean = elite.mean(axis=0)
                std = np.maximum(elite.std(axis=0), 0.05) if len(elite) > 1 else std * 0.5
        plan.samples.append(cand_samples)
        if best[1] is None:
            return self._fallback(plan, "every CEM candidate collided or failed to imagine")
        rel = best[1]
        plan.chosen, plan.path_world = (best[2], 0), world_poses(start, rel)
        acts = path_actions(start, rel, self.motion)
        plan.actions = acts[: cfg.execute_steps] or approach_box_actions(box_obs, obs.depth, W, self.motion, self.K_obs, cfg.agent_radius, cfg.gamma)
        plan.note = f"CEM best score {best[0]:.3f}; executing {len(plan.actions)}/{max(len(acts), 1)} actions"
