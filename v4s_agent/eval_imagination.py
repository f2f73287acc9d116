"""`python -m v4s_agent.eval imagination split=test episodes=N [key=value ...]` — the imagination model
against simulator ground truth on scenes it never saw, with the paper's baselines in the same run.

Cases. One case per episode of `envs.embedded.task.make_episodes(split, N, seed)` (its scene and
target category). The agent's state is built exactly as the training clips are (models/data.py): a
look-around (+ half of the time a walk toward the target) ending within one clip's reach of the
nearest instance of the category; the context is the agent's own pick (`Memory.select_indices`,
≤ 16 frames, current view last). The ground-truth clip of that state is the `oracle`.
A share `out_of_view` of the cases (3 in 8 by default, evenly spread over the case indices) is drawn the
same way but kept only when the current view shows no instance of the target category while an older
context frame shows the target (models.data.target_out_of_view): a state the agent reaches by turning away
after its look-around, which only context use can solve. Natural draws have that in about 1 case in 8
(4 of the first 32 test cases), too few to measure context use. The defaults, 80 cases of which 30 are drawn
out of view, bound every rate's standard error by 0.056 and IF_out_of_view's by 0.091 (at p = 0.5).

Grounding metrics (per video; means over cases):
- path read-back: the camera path of the path frames (all but the trailing box frames) from the
  current view's depth (`readback=flow_pnp`: dense flow + PnP, planners/readback/flow_path.py; `flow`:
  the planar fit the planners use by default; or `idm`: any of planners.readback.READBACKS but `true`). The chained pose of the last path frame is the *read-back* pose.
- the *implied* final pose: the read-back pose registered against the simulator (`relocalize`
  rounds: render at the pose, flow from that render to the generated last path frame, PnP with the
  render's true depth). This is where a camera must stand in the real scene to see the last frame,
  without the drift of chaining 15 flow fits.
- IF: an instance of the target category is centred (|x−W/2| ≤ γ/2·w, |y−H/2| ≤ γ/2·h, γ = 0.6,
  paper §4.1) in the simulator render at the implied final pose (ground-truth segmentation box, at
  least `min_target_pixels` visible). IF_readback: the same at the un-registered read-back pose.
- IF_box: the red box read back from the box frames (models.red_box.detect_red_box) has
  IoU ≥ 0.3 with the ground-truth box of a target-category instance at the implied final pose.
- SD (metres; paper eq. 3 with the simulator as ground truth): for each path frame i, its read-back
  pose is registered against the simulator like the last one, giving pose P_i with the true render
  (rgb, depth D) there. Dense flow (forward-backward checked) from the generated frame to that render
  matches each generated pixel u to a scene pixel u'; the 3D point the generated content claims is
  the ray through u at depth D(u'), its ground truth the point of u' at D(u'); the per-pixel distance
  is ‖X_gen − X_gt‖ (an upper bound of the nearest-neighbour distance to the ground-truth cloud).
  Pixels without a consistent match or whose colour differs from the match by > `sd_colour` (content
  the scene does not have: hallucination) count `sd_unmatched_m` (1 m). SD_i = mean over pixels;
  SD = max over frames (as the paper, to penalise single-frame failures). IF_sd = IF ∧ SD < 0.2 m,
  IF_sd01 = IF ∧ SD < 0.1 m.

Navigation metrics: a smooth random path from the current view (models.data.nav_path, the training
distribution; `nav_min_turn_deg=180 nav_max_yaw_deg=20` draws rotation-heavy paths instead), given to the
model as egocentric waypoints; PSNR / SSIM (Gaussian 11×11, σ 1.5, on [0, 255] RGB) of the generated frames against simulator renders at the commanded poses, frames
1..F−1 (frame 0 is the given current view; `nav_horizon=H` scores 1..H only, to compare models of
different clip lengths on a common horizon), averaged per case, then over cases. `psnr_nav_per_frame`
(and `psnr_<baseline>_per_frame`) is the PSNR per frame index, mean over cases: how fast the
prediction degrades. `psnr_nav_minus_<baseline>` (with `_se`) is the model's gain over a baseline,
paired over the same cases.

Baselines (same cases, same metrics): `copy_last` (the current view repeated), `first_frame_only`
(the model with the current view as the only context), `no_context_cfg` (CFG on text/camera only:
the unconditional branch keeps the real context instead of noise; paper "w/o context CFG"), `warp`
(navigation only: the context's RGB-D frames splatted with a z-buffer into every target camera,
holes filled from the current view; models.warp), `warp_filtered` (the same splat after the pipeline's
`composite_smooth` filter, holes from the current view: a `composite=warp` pipeline's output without
the model, so model − warp_filtered is what the model adds to the 3D cache), and `oracle` (simulator renders: the ground-truth
clip; for navigation the renders through the model's codec — the best any generator in this latent
space can score, since raw renders would be exact).

Context use. Every grounding rate is also reported split by whether an instance of the target
category is visible (≥ `min_target_pixels`) in the current view: `IF_in_view` / `IF_out_of_view`
(and `IF_box_*`, per baseline with its suffix), with the case counts `cases_in_view` /
`cases_out_of_view`. Out of view, the target can only be found from the older context frames.
Every rate comes with its standard error over cases (`<key>_se`, sqrt(p(1-p)/n)), every mean
(SD, PSNR, SSIM) with its standard error too. Skipped episodes are counted by reason
(`skipped_reasons`).
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from envs.config import parse_overrides

BASELINES = ("copy_last", "first_frame_only", "no_context_cfg", "warp", "warp_filtered", "oracle")
NAVIGATION_ONLY = ("warp", "warp_filtered")  # baselines without a grounding video
GROUNDING_RATES = ("IF", "IF_box", "IF_sd", "IF_sd01", "IF_readback", "box_found")


class ImaginationEvalError(ValueError):
    """Bad arguments (reported as one line by v4s_agent.eval)."""


def _error(msg: str) -> ValueError:
    return ImaginationEvalError(msg)


@dataclass
class ImaginationEvalConfig:
    """key=value arguments of `eval imagination` (defaults finish in about 10 min on the shared 2 CPU cores)."""

    split: str = "test"
    # 80 cases: a rate's standard error is then ≤ sqrt(0.25/80) = 0.056 (≤ 0.06 needs ≥ 70); 30 of them are drawn
    # out of view (below), so IF_out_of_view's is ≤ sqrt(0.25/30) = 0.091 (≤ 0.1 needs ≥ 25)
    episodes: int = 80
    # share of cases drawn with the target out of view (models.data.target_out_of_view): none of its category in
    # the current view, the target in an older context frame, so only context use finds it. Natural draws have
    # it in about 1 case in 8 (4 of 32 test cases): too few to measure context use
    out_of_view: float = 0.375
    seed: int = 0
    checkpoint: str = ""  # "" = the shipped default (models/checkpoints/v4s-tiny); "random" = untrained tiny
    steps: int = 0  # sampling steps; 0 = the checkpoint's default
    guidance: float = -1.0  # CFG scale; < 0 = the checkpoint's default
    samples: int = 1  # videos per call; metrics use the first, IF_any any of them
    readback: str = "flow_pnp"  # a planners.readback.READBACKS name: flow_pnp (dense flow + PnP) | flow (planar) | idm
    relocalize: int = 2  # rounds registering a frame's read-back pose against the simulator
    baselines: str = "all"  # "all", "none" or a comma list of copy_last,first_frame_only,no_context_cfg,oracle
    navigation: bool = True
    grounding: bool = True  # false: navigation metrics only (e.g. the rotation-heavy cases)
    gamma: float = 0.6
    box_iou: float = 0.3
    sd_threshold: float = 0.2
    sd_colour: float = 0.15  # mean |RGB difference| in [0, 1] above which a flow match is no match
    sd_unmatched_m: float = 1.0
    min_target_pixels: int = 30  # at render resolution
    render_size: int = 128
    # navigation PSNR/SSIM at this square size (0 = the model's own): set it to compare models that work
    # at different resolutions (their frames are resized to it, the truth is rendered at it)
    score_size: int = 0
    # navigation PSNR/SSIM over target frames 1..nav_horizon (0 = all of them): set it to compare models
    # that generate clips of different lengths on a common horizon (later frames are harder to predict)
    nav_horizon: int = 0
    # navigation paths: turn rate limit (0 = the training clips' 15° per frame) and, when > 0, the least total
    # turn, one way (models.data.nav_path: rotation-heavy cases)
    nav_max_yaw_deg: float = 0.0
    nav_min_turn_deg: float = 0.0
    results: str = ""  # append one JSON line per episode here (a rerun skips the episodes already in it)
    executor: str = "local"  # local | ray: one task per episode (models/executor.py)
    num_workers: int = 1
    ray_address: str = ""  # executor=ray: "" starts a local Ray, "auto" joins a running cluster
    # torch CPU threads per case (0 = leave as is; Ray tasks start with 1). Bitwise-identical model output
    # needs the same count everywhere: torch's CPU kernels may sum in another order with more threads
    threads: int = 0
    # "" = the checkpoint's own; "model" | "head": how grounding paths are made (models.pipeline.ImaginationConfig)
    grounding_path: str = ""

    def __post_init__(self) -> None:
        from envs.splits import split_seeds
        from models.executor import check_executor

        check_executor(self.executor, self.num_workers)

        try:
            split_seeds(self.split)
        except ValueError as e:
            raise _error(str(e)) from None
        if self.episodes < 1:
            raise _error(f"episodes must be >= 1, got {self.episodes}")
        if not 0.0 <= self.out_of_view <= 1.0:
            raise _error(f"out_of_view must be a share in [0, 1], got {self.out_of_view}")
        if self.samples < 1:
            raise _error(f"samples must be >= 1, got {self.samples}")
        if self.score_size and not 16 <= self.score_size <= 512:
            raise _error(f"score_size must be 0 (the model's size) or in [16, 512], got {self.score_size}")
        if self.nav_horizon < 0:
            raise _error(f"nav_horizon must be >= 0 (0 = every generated frame), got {self.nav_horizon}")
        if self.steps < 0:
            raise _error(f"steps must be >= 0 (0 = checkpoint default), got {self.steps}")
        if not (self.grounding or self.navigation):
            raise _error("grounding=false and navigation=false leave nothing to evaluate: keep one of them")
        if not 0 <= self.nav_max_yaw_deg <= 90 or self.nav_min_turn_deg < 0:
            raise _error(f"nav_max_yaw_deg must be in [0, 90] (0 = training default) and nav_min_turn_deg >= 0, "
                         f"got {self.nav_max_yaw_deg}, {self.nav_min_turn_deg}")
        from planners.readback import READBACKS

        choices = [n for n in READBACKS.names() if n != "true"]  # generated videos report no poses
        if self.readback not in choices:
            raise _error(f"readback must be one of {choices}, got {self.readback!r}")
        if self.relocalize < 0:
            raise _error(f"relocalize must be >= 0, got {self.relocalize}")
        if not 0 < self.gamma <= 2:
            raise _error(f"gamma must be in (0, 2], got {self.gamma}")
        if not 0 < self.box_iou <= 1:
            raise _error(f"box_iou must be in (0, 1], got {self.box_iou}")
        from models.types import GROUNDING_PATHS

        if self.grounding_path not in ("", *GROUNDING_PATHS):
            raise _error(f"grounding_path must be one of {list(GROUNDING_PATHS)} (or empty for the checkpoint's own), "
                         f"got {self.grounding_path!r}")
        self.baseline_list()  # validates

    def baseline_list(self) -> list[str]:
        if self.baselines == "all":
            return list(BASELINES)
        if self.baselines in ("none", ""):
            return []
        names = [b.strip() for b in self.baselines.split(",") if b.strip()]
        bad = [b for b in names if b not in BASELINES]
        if bad:
            raise _error(f"unknown baseline(s) {bad}; choose from {list(BASELINES)}, 'all' or 'none'")
        return names

    @classmethod
    def from_argv(cls, argv: list[str]) -> ImaginationEvalConfig:
        return parse_overrides(cls, argv)


# ------------------------------------------------------------------------------------ image metrics
def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of uint8 images (peak 255); 100 dB for identical images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ssim_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004; Gaussian 11×11, σ = 1.5, K1 = 0.01, K2 = 0.03) on RGB, channel mean."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())


# ------------------------------------------------------------------------------------ geometry helpers
def _render(world: Any, pose, size: int, semantic: bool = False):
    """(rgb at `size`, depth at render resolution, semantic at render resolution or None)."""
    obs = world.render_at(pose, semantic=semantic)
    rgb = obs.rgb if obs.rgb.shape[0] == size else cv2.resize(obs.rgb, (size, size), interpolation=cv2.INTER_AREA)
    return rgb, obs.depth, obs.semantic


def register(world: Any, frame: np.ndarray, guess, K: np.ndarray, rounds: int) -> tuple[Any, float]:
    """Refine the pose of `frame` (model resolution) from `guess` against the simulator: render at the
    guess, read the 2-frame path render → frame with the render's true depth (flow + PnP).
    Returns (pose, photometric error of the render there vs the frame, mean |grey| in [0, 255])."""
    from envs.geometry import matrix_to_pose, pose_to_matrix
    from planners.readback.flow_path import FlowPathConfig, flow_path

    pose = guess
    for _ in range(rounds):
        rgb, depth, _ = _render(world, pose, frame.shape[0])
        est = flow_path(np.stack([rgb, frame]), depth, K, FlowPathConfig(motion="pnp"))
        if est.confidence <= 0.0:
            break
        step = est.poses_rel[1]
        if not np.all(np.isfinite(step)) or np.linalg.norm(step[:3, 3]) > 2.0:
            break  # a failed fit, not a refinement
        pose = matrix_to_pose(pose_to_matrix(pose) @ step)
    return pose, photo_error(_render(world, pose, frame.shape[0])[0], frame)


def photo_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute grey-level difference of two uint8 RGB frames (0-255)."""
    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(ga - gb).mean())


def track_poses(world: Any, frames: np.ndarray, start, poses_rel: np.ndarray, K: np.ndarray, rounds: int) -> list:
    """World poses of every frame: frame 0 is `start`; frame i is registered against the simulator
    from two guesses — the last registered pose moved by the read-back step i-1 → i (tracking, no
    drift) and the chained read-back pose — keeping the one whose render matches the frame better."""
    from envs.geometry import matrix_to_pose, pose_to_matrix, wrap_angle

    T0 = pose_to_matrix(start)
    out = [start]
    for i in range(1, len(frames)):
        step = np.linalg.inv(poses_rel[i - 1]) @ poses_rel[i]
        guesses = [matrix_to_pose(pose_to_matrix(out[-1]) @ step)]
        chained = matrix_to_pose(T0 @ poses_rel[i])
        if np.linalg.norm(chained.xyz - guesses[0].xyz) > 0.1 or abs(wrap_angle(chained.yaw - guesses[0].yaw)) > 0.1:
            guesses.append(chained)
        best = min((register(world, frames[i], g, K, rounds) for g in guesses), key=lambda pe: pe[1])
        out.append(best[0])
    return out


def spatial_distance(gen: np.ndarray, gt_rgb: np.ndarray, gt_depth: np.ndarray, K: np.ndarray, colour_tol: float,
                     unmatched_m: float) -> float:
    """Mean per-pixel 3D distance (m) of generated frame content to the scene at the frame's pose
    (module docstring: SD). gen / gt_rgb at model resolution, gt_depth any resolution."""
    from envs.geometry import backproject_depth
    from planners.readback.flow_path import dense_flow

    H, W = gen.shape[:2]
    depth = cv2.resize(gt_depth, (W, H), interpolation=cv2.INTER_NEAREST) if gt_depth.shape != (H, W) else gt_depth
    fwd = dense_flow(gen, gt_rgb)  # gen pixel u -> scene pixel u' = u + fwd(u)
    bwd = dense_flow(gt_rgb, gen)
    vv, uu = np.mgrid[0:H, 0:W].astype(np.float32)
    u2, v2 = uu + fwd[..., 0], vv + fwd[..., 1]
    back = cv2.remap(bwd, u2, v2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(1e3, 1e3))
    inside = (u2 >= 0) & (u2 <= W - 1) & (v2 >= 0) & (v2 <= H - 1)
    ok = inside & (np.linalg.norm(fwd + back, axis=-1) < 1.0 * W / 64.0)
    d = cv2.remap(depth.astype(np.float32), u2, v2, cv2.INTER_NEAREST)
    col = cv2.remap(gt_rgb, u2, v2, cv2.INTER_LINEAR).astype(np.float32)
    ok &= np.abs(col - gen.astype(np.float32)).mean(axis=-1) / 255.0 <= colour_tol
    ok &= np.isfinite(d) & (d > 0)
    rays = backproject_depth(np.ones((H, W), np.float32), K)  # z = -1 rays per pixel
    # X_gen: ray through u at depth d(u'); X_gt: ray through u' at depth d(u') (bilinear ray at u')
    ray_u2 = np.stack([(u2 + 0.5 - K[0, 2]) / K[0, 0], -(v2 + 0.5 - K[1, 2]) / K[1, 1], -np.ones_like(u2)], axis=-1)
    dist = np.linalg.norm((rays - ray_u2) * d[..., None], axis=-1)
    per = np.where(ok, dist, unmatched_m)
    return float(np.clip(per, 0.0, unmatched_m).mean())


# ------------------------------------------------------------------------------------ the evaluator
@dataclass
class Case:
    scene_seed: int
    category: str
    station: Any  # models.data.Station
    target: Any  # models.data.GroundingTarget
    context: Any  # models.types.VideoContext
    instruction: str
    depth0: np.ndarray  # current view depth (render resolution)
    oracle_video: np.ndarray  # (F, H, W, 3) ground-truth grounding clip
    nav_poses: list
    nav_waypoints: np.ndarray  # (F, 6)
    nav_truth: np.ndarray  # (F, H, W, 3)
    target_in_context: bool
    nav_truth_scored: np.ndarray | None = None  # (F, S, S, 3) at cfg.score_size, when that differs
    target_in_view: bool = False  # an instance of the category is visible in the current view


class SkippedCase(Exception):
    """An episode the evaluator cannot turn into a case; the message is the reason (counted)."""


class Evaluator:
    def __init__(self, cfg: ImaginationEvalConfig, pipe: Any, world: Any) -> None:
        from envs.geometry import intrinsics_from_hfov
        from models.data import ClipGenConfig

        self.cfg, self.pipe, self.world = cfg, pipe, world
        self.size = int(pipe.height)
        self.F, self.nbox = int(pipe.num_frames), int(pipe.num_box_frames)
        if cfg.nav_horizon > self.F - 1:
            raise _error(f"nav_horizon={cfg.nav_horizon} is beyond this model's clip: it generates {self.F - 1} frames "
                         f"after the current view; pass nav_horizon <= {self.F - 1} (or 0 for all)")
        self.scored_frames = range(1, (cfg.nav_horizon or self.F - 1) + 1)
        self.K = intrinsics_from_hfov(float(pipe.settings.hfov_deg), self.size, self.size)
        try:
            self.gen_cfg = ClipGenConfig(out="-", split=cfg.split, size=self.size, render_size=cfg.render_size,
                                         path_frames=self.F - self.nbox, box_frames=self.nbox, nav_frames=self.F,
                                         context_frames=int(pipe.max_context_frames),
                                         min_context_frames=1, min_target_pixels=cfg.min_target_pixels,
                                         gamma=cfg.gamma, max_tries=12, num_workers=1,
                                         nav_min_turn_deg=cfg.nav_min_turn_deg,
                                         **({"nav_max_yaw_deg": cfg.nav_max_yaw_deg} if cfg.nav_max_yaw_deg else {}))
        except ValueError as e:  # e.g. a least turn this clip length cannot reach at the turn rate limit
            raise _error(str(e)) from None

    # ---- cases
    def out_of_view_case(self, k: int) -> bool:
        """Whether case k is drawn out of view: evenly spread, a share `out_of_view` of the cases."""
        s = self.cfg.out_of_view
        return math.floor((k + 1) * s) > math.floor(k * s)

    def make_case(self, episode: Any, k: int) -> Case:
        from envs.embedded.categories import category_phrase
        from envs.geometry import relative_pose
        from envs.instructions import grounding_instruction
        from models.data import (
            agent_context,
            category_in_view,
            context_geometry,
            grounding_clip,
            instance_seen,
            make_station,
            nav_path,
            render_rgb,
        )
        from models.types import VideoContext

        w, g = self.world, self.gen_cfg
        w.load_scene(episode.scene_seed)
        rng = np.random.default_rng([self.cfg.seed, episode.scene_seed, k])
        away = self.out_of_view_case(k)
        station, target = make_station(w, rng, g, with_target=True, category=episode.target_category, out_of_view=away)
        if target is None:
            raise SkippedCase(f"no {episode.target_category} out of view but seen in the context within one clip "
                              f"({g.out_of_view_tries} station draws)" if away else
                              f"no {episode.target_category} reachable within one clip ({g.max_tries} station draws)")
        idx = agent_context(station.poses, g.context_frames)
        geo = context_geometry(station, idx)
        context = VideoContext(frames=station.frames[idx], indices=idx, poses=geo["context_poses"],
                               depths=geo["context_depth"])
        clip = grounding_clip(w, station, target, idx, g, episode.scene_seed)
        depth0 = w.render_at(station.current, semantic=False).depth
        seen = instance_seen(w, [station.poses[i] for i in idx], target.instance_id, self.cfg.min_target_pixels)
        in_view = category_in_view(w, station.current, target.category, self.cfg.min_target_pixels)
        nav = nav_path(w, station.current, self.F, rng, g.nav_max_forward, g.nav_max_yaw_deg, g.nav_min_turn_deg)
        wp = np.zeros((self.F, 6))
        for i, p in enumerate(nav):
            dt, dr = relative_pose(nav[0], p)
            wp[i, :3], wp[i, 3:] = dt, dr
        scored = render_rgb(w, nav, self.cfg.score_size) if self.cfg.score_size not in (0, self.size) else None
        return Case(episode.scene_seed, target.category, station, target, context,
                    grounding_instruction(w.scene.scene_phrase(), category_phrase(target.category)), depth0,
                    clip.target_frames, nav, wp, render_rgb(w, nav, self.size), seen, scored, in_view)

    # ---- generation
    def _steps(self) -> int:
        return self.cfg.steps or int(self.pipe.settings.num_inference_steps)

    def _gs(self) -> float:
        return float(self.pipe.settings.guidance_scale) if self.cfg.guidance < 0 else float(self.cfg.guidance)

    def generate(self, method: str, case: Case, mode: str) -> np.ndarray:
        """(S, F, H, W, 3) videos of `method` for `case` in `mode`."""
        from models.types import VideoContext

        S = self.cfg.samples
        if method == "copy_last":
            cur = case.context.frames[-1]
            return np.broadcast_to(cur, (S, self.F, *cur.shape)).copy()
        if method == "oracle":
            if mode == "grounding":
                return case.oracle_video[None].repeat(S, axis=0)
            return self._codec_roundtrip(case.nav_truth)[None].repeat(S, axis=0)
        if method in NAVIGATION_ONLY:
            if mode != "navigation":
                raise ValueError(f"the {method} baseline has no grounding video (it needs target cameras)")
            return self._warp(case, filtered=method == "warp_filtered")[None].repeat(S, axis=0)
        ctx = case.context
        bind = getattr(self.pipe, "bind_case", None)
        if bind is not None:  # an imagination over the simulator (the quality dial) starts at the case's pose
            bind(self.world, case)
        if method == "first_frame_only":
            ctx = VideoContext(frames=ctx.frames[-1:], indices=ctx.indices[-1:],
                               poses=None if ctx.poses is None else ctx.poses[-1:],
                               depths=None if ctx.depths is None else ctx.depths[-1:])
        kw = {"num_samples": S, "num_inference_steps": self._steps(), "guidance_scale": self._gs(), "seed": self.cfg.seed}
        if method == "no_context_cfg":  # the same sampler, the real context kept in the unconditional branch
            kw["context_cfg"] = "keep"
        if mode == "grounding":
            return self.pipe(ctx, instruction=case.instruction, **kw).frames
        return self.pipe(ctx, waypoints=case.nav_waypoints, **kw).frames

    def _warp(self, case: Case, filtered: bool = False) -> np.ndarray:
        """The context's RGB-D frames splatted into the commanded cameras, holes from the current view;
        `filtered`: the splatted pixels through the pipeline's composite filter (composite_smooth)."""
        from envs.geometry import pose_to_matrix
        from models.warp import filtered_cache, warp_frames

        ctx = case.context
        tgt = np.stack([pose_to_matrix(p) for p in case.nav_poses])
        images, valid = warp_frames(ctx.frames, ctx.depths, ctx.poses, tgt, float(self.pipe.settings.hfov_deg),
                                    fill=ctx.frames[-1])
        smooth = float(getattr(self.pipe.settings, "composite_smooth", 0.0))
        return filtered_cache(images, valid, smooth) if filtered else images

    def _codec_roundtrip(self, frames: np.ndarray) -> np.ndarray:
        import torch

        from models.codecs import frames_to_tensor, tensor_to_frames

        x = frames_to_tensor(frames).permute(1, 0, 2, 3)[None].to(self.pipe.device)
        with torch.no_grad():
            rec = self.pipe.codec.decode_target(self.pipe.codec.encode_target(x), len(frames))
        return tensor_to_frames(rec[0].permute(1, 0, 2, 3))

    # ---- scoring
    def _readback(self, frames: np.ndarray, depth0: np.ndarray):
        from planners.readback import read_back

        return read_back(self.cfg.readback, frames, depth0, self.K)

    def _category_boxes(self, pose, category: str) -> list:
        from models.data import category_boxes

        return category_boxes(self.world, pose, category, self.cfg.min_target_pixels, self.size)

    def score_grounding(self, video: np.ndarray, case: Case) -> dict[str, float]:
        from envs.geometry import matrix_to_pose, pose_to_matrix
        from models.data import centred
        from models.red_box import detect_red_box

        n_path = self.F - self.nbox
        path = video[:n_path]
        est = self._readback(path, case.depth0)
        T0 = pose_to_matrix(case.station.current)
        chained = [matrix_to_pose(T0 @ T) for T in est.poses_rel]
        poses = track_poses(self.world, path, case.station.current, est.poses_rel, self.K, self.cfg.relocalize)
        final = poses[-1]
        boxes = self._category_boxes(final, case.category)
        boxes_rb = self._category_boxes(chained[-1], case.category)
        g = self.cfg.gamma
        IF = float(any(centred(b, self.size, self.size, g) for b in boxes))
        IF_rb = float(any(centred(b, self.size, self.size, g) for b in boxes_rb))
        red = detect_red_box(video[n_path:]) if self.nbox else None
        IF_box = float(red is not None and any(red.iou(b) >= self.cfg.box_iou for b in boxes))
        sds = []
        for i in range(1, n_path):  # frame 0 is the given current view
            rgb, depth, _ = _render(self.world, poses[i], self.size)
            sds.append(spatial_distance(path[i], rgb, depth, self.K, self.cfg.sd_colour, self.cfg.sd_unmatched_m))
        SD = float(max(sds)) if sds else 0.0
        return {"IF": IF, "IF_readback": IF_rb, "IF_box": IF_box, "SD": SD,
                "IF_sd": float(IF and SD < self.cfg.sd_threshold), "IF_sd01": float(IF and SD < 0.1),
                "box_found": float(red is not None), "readback_confidence": float(est.confidence)}

    def score_navigation(self, video: np.ndarray, case: Case) -> dict[str, float]:
        truth = case.nav_truth
        if case.nav_truth_scored is not None:
            s = case.nav_truth_scored.shape[1]
            interp = cv2.INTER_LINEAR if s > video.shape[1] else cv2.INTER_AREA
            video, truth = np.stack([cv2.resize(f, (s, s), interpolation=interp) for f in video]), case.nav_truth_scored
        ps = [psnr_uint8(video[i], truth[i]) for i in self.scored_frames]
        ss = [ssim_uint8(video[i], truth[i]) for i in self.scored_frames]
        return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "psnr_per_frame": ps}


def _load_pipeline(cfg: ImaginationEvalConfig) -> Any:
    from models.pipeline import (
        ImaginationPipeline,
        load_default_pipeline,
        tiny_pipeline,
    )

    overrides = {"grounding_path": cfg.grounding_path} if cfg.grounding_path else {}
    try:
        if cfg.checkpoint == "random":
            return tiny_pipeline(seed=cfg.seed, **overrides)
        if cfg.checkpoint:
            p = Path(cfg.checkpoint)
            if not (p / "model_index.json").exists():
                raise _error(f"checkpoint={cfg.checkpoint!r} is not a pipeline folder (no model_index.json); "
                             f"pass a folder written by ImaginationPipeline.save_pretrained, or leave it unset")
            return ImaginationPipeline.from_pretrained(p, **overrides)
        return load_default_pipeline(**overrides)
    except (FileNotFoundError, ValueError) as e:  # no checkpoint, or a setting it cannot take (no path head)
        raise _error(str(e).splitlines()[0]) from None


def _plain(v: Any) -> Any:
    """JSON-ready metric values (numpy scalars and lists of them)."""
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return bool(v) if isinstance(v, bool | np.bool_) else float(v)


def case_record(ev: Evaluator, methods: list[str], episode: Any, k: int) -> dict[str, Any]:
    """One episode's results.jsonl line: every method's metrics on its case (or `skipped`)."""
    cfg = ev.cfg
    rec: dict[str, Any] = {"episode_id": episode.episode_id, "index": k}
    try:
        case = ev.make_case(episode, k)
    except SkippedCase as e:
        return {**rec, "skipped": True, "reason": str(e)}
    rec.update(scene_seed=int(case.scene_seed), category=case.category, target_in_context=bool(case.target_in_context),
               target_in_view=bool(case.target_in_view), methods={})
    for m in methods:
        r: dict[str, Any] = {}
        if cfg.grounding and m not in NAVIGATION_ONLY:
            vids = ev.generate(m, case, "grounding")
            r = ev.score_grounding(vids[0], case)
            if m == "model" and cfg.samples > 1:
                rec["IF_any"] = float(r["IF"] or any(ev.score_grounding(v, case)["IF"] for v in vids[1:]))
        if cfg.navigation:
            r.update(ev.score_navigation(ev.generate(m, case, "navigation")[0], case))
        rec["methods"][m] = {key: _plain(v) for key, v in r.items()}
    return rec


_WORKER: dict[str, Any] = {}  # per worker process: the config key and its (world, evaluator)


def _worker_evaluator(cfg: ImaginationEvalConfig, pipe: Any | None = None) -> Evaluator:
    """The evaluator for `cfg` in this process, built once (with `pipe`, else the one cfg names)."""
    from envs.embedded.config import WorldConfig
    from envs.embedded.task import make_episodes
    from envs.embedded.world import EmbeddedWorld

    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    key = repr(cfg)
    if _WORKER.get("key") != key or (pipe is not None and _WORKER["ev"].pipe is not pipe):
        close_worker()
        _WORKER["loaded"] = pipe is None  # the pipeline cfg names, not a caller's
        pipe = pipe if pipe is not None else _load_pipeline(cfg)
        first = make_episodes(cfg.split, 1, seed=cfg.seed)[0].scene_seed
        world = EmbeddedWorld(WorldConfig(width=cfg.render_size, height=cfg.render_size,
                                          hfov_deg=float(pipe.settings.hfov_deg)), scene_seed=first)
        _WORKER.update(key=key, world=world, ev=Evaluator(cfg, pipe, world))
    return _WORKER["ev"]


def close_worker() -> None:
    if "world" in _WORKER:
        _WORKER.pop("world").close()
    _WORKER.clear()


def case_task(args: tuple[ImaginationEvalConfig, int, Any]) -> dict[str, Any]:
    """One episode as an executor task (models/executor.py)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    cfg, k, episode = args
    ev = _worker_evaluator(cfg)
    return case_record(ev, ["model"] + cfg.baseline_list(), episode, k)


def evaluate(cfg: ImaginationEvalConfig, pipe: Any | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the evaluation; returns the summary dict (see module docstring for every key). Cases run
    here or, with `executor=ray` / `num_workers > 1`, one task per episode; with `results=PATH` each
    case's line is appended as it finishes and a rerun skips the episodes already there."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    import json

    from envs.embedded.task import make_episodes
    from models.executor import run_tasks

    t0 = time.perf_counter()
    episodes = make_episodes(cfg.split, cfg.episodes, seed=cfg.seed)
    methods = ["model"] + cfg.baseline_list()
    path = Path(cfg.results) if cfg.results else None
    done: dict[str, dict] = {}
    if path is not None and path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
                done[rec["episode_id"]] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a torn last line
    if pipe is None and not _WORKER.get("loaded", True):
        close_worker()  # the evaluator kept for this config holds a caller's pipeline: measure the one cfg names
    ev = _worker_evaluator(cfg, pipe)  # here too: the summary reports its settings; in-process cases reuse it

    def append(_: str, rec: dict) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
        if progress and not rec.get("skipped"):
            r = rec["methods"]
            print(f"case {rec['index']} scene {rec['scene_seed']} {rec['category']}"
                  f"{' (in view)' if rec.get('target_in_view') else ''}: "
                  + " | ".join(m + (f" IF {r[m]['IF']:.0f} box {r[m]['IF_box']:.0f} SD {r[m]['SD']:.2f}" if "IF" in r[m]
                                    else "") + (f" psnr {r[m]['psnr']:.1f}" if "psnr" in r[m] else "") for m in methods),
                  file=sys.stderr, flush=True)

    todo = {ep.episode_id: (cfg, k, ep) for k, ep in enumerate(episodes) if ep.episode_id not in done}
    new, failed = run_tasks(case_task, todo, executor=cfg.executor, num_workers=cfg.num_workers,
                            ray_address=cfg.ray_address, desc="imagination eval", progress=progress,
                            on_result=append)
    records = [done.get(ep.episode_id) or new.get(ep.episode_id) for ep in episodes]
    records = [r for r in records if r is not None]
    per: dict[str, list[dict[str, float]]] = {m: [r["methods"][m] for r in records if not r.get("skipped")]
                                               for m in methods}
    any_if = [r["IF_any"] for r in records if "IF_any" in r]
    seen = [float(r["target_in_context"]) for r in records if not r.get("skipped")]
    in_view = [bool(r.get("target_in_view")) for r in records if not r.get("skipped")]
    reasons: dict[str, int] = {}
    for r in records:
        if r.get("skipped"):
            why = r.get("reason", "unknown (recorded before reasons were kept)")
            reasons[why] = reasons.get(why, 0) + 1
    skipped = sum(reasons.values())
    if not per["model"]:
        raise _error(f"no evaluable case among {cfg.episodes} episodes of split {cfg.split!r}: {reasons}")

    out: dict[str, Any] = {}

    def put(name: str, values: list[float], rate: bool) -> None:
        """A mean and its standard error over cases (binomial for a rate); None for no cases."""
        n = len(values)
        p = float(np.mean(values)) if n else None
        out[name] = p
        if not n:
            out[f"{name}_se"] = None
        elif rate:
            out[f"{name}_se"] = math.sqrt(p * (1 - p) / n)
        else:
            out[f"{name}_se"] = float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else 0.0

    def per_frame(m: str) -> list[float]:
        """PSNR per target frame index 1..horizon, mean over cases: how fast the prediction degrades."""
        return [round(float(v), 3) for v in np.mean([r["psnr_per_frame"] for r in per[m]], axis=0)]

    for m in methods:
        suffix = "" if m == "model" else f"_{m}"
        if cfg.grounding and m not in NAVIGATION_ONLY:
            keys = GROUNDING_RATES + ("SD",) if m == "model" else ("IF", "IF_box", "IF_sd", "SD", "IF_readback")
            for key in keys:
                put(key + suffix, [r[key] for r in per[m]], rate=key != "SD")
            for key in ("IF", "IF_box"):  # context use: could the target be seen from where the agent stands?
                for where, want in (("in_view", True), ("out_of_view", False)):
                    put(f"{key}_{where}{suffix}", [r[key] for r, v in zip(per[m], in_view) if v == want], rate=True)
        if cfg.navigation:
            nav = "psnr_nav" if m == "model" else f"psnr_{m}"
            put(nav, [r["psnr"] for r in per[m]], rate=False)
            put("ssim_nav" if m == "model" else f"ssim_{m}", [r["ssim"] for r in per[m]], rate=False)
            out[f"{nav}_per_frame"] = per_frame(m)
            if m != "model":  # paired over the same cases: the model's gain over this baseline
                put(f"psnr_nav_minus_{m}", [a["psnr"] - b["psnr"] for a, b in zip(per["model"], per[m])], rate=False)
    if cfg.navigation:
        out["nav_horizon"] = len(ev.scored_frames)
    if cfg.grounding:
        out["readback_confidence"] = float(np.mean([r["readback_confidence"] for r in per["model"]]))
    if any_if:
        put("IF_any", any_if, rate=True)
    out.update(cases_in_view=int(sum(in_view)), cases_out_of_view=int(len(in_view) - sum(in_view)),
               skipped_reasons=reasons)
    out.update(episodes=len(per["model"]), skipped=skipped, target_in_context=float(np.mean(seen)),
               split=cfg.split, seed=cfg.seed, steps=ev._steps(), guidance=ev._gs(), samples=cfg.samples,
               readback=cfg.readback, checkpoint=cfg.checkpoint or "default",
               grounding_path=getattr(getattr(ev.pipe, "settings", None), "grounding_path", "model"), seconds=round(time.perf_counter() - t0, 1),
               errors=len(failed), failed=[f.id for f in failed])
    return out


def eval_imagination(argv: list[str]) -> dict[str, Any]:
    """Entry point for `python -m v4s_agent.eval imagination key=value ...`."""
    cfg = ImaginationEvalConfig.from_argv(list(argv))
    return evaluate(cfg)
