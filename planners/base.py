"""The planner interface and the typed plan it returns.

A planner turns the current observation (and the agent's memory) into a short list of actions plus
debug information for the viewer (imagined videos, read-back boxes and paths). The agent loop
(v4s_agent/agent.py) executes the actions and calls `plan` again: every planner is receding-horizon.
Faults inside a plan (NaN video, no box, a colliding path) are reported in `Plan.note` and end in a
replan or an exploration move — never in an exception that aborts the episode.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from omegaconf import MISSING

from envs.config import check
from envs.types import Action, Box2D, Episode, Observation, Pose
from models.types import ImaginedVideo
from planners.readback.target import target_distance

if TYPE_CHECKING:
    from models.memory import Memory


class PlannerError(RuntimeError):
    """A planner cannot be built (missing imagination, wrong env); one line with the fix."""


@dataclass
class SampleDebug:
    """What the planner made of one imagined video."""

    box: Box2D | None = None  # read-back red box on the last frame, imagination pixels
    poses_rel: np.ndarray | None = None  # (F, 4, 4) read-back path, camera-to-current-camera
    confidence: float = 0.0  # read-back confidence
    score: float = float("-inf")  # planner's score (higher is better)
    rejected: str = ""  # why the sample was dropped ("" = kept)
    cut: str = ""  # why the path was shortened (an obstacle in the depth), "" = whole path


@dataclass
class Plan:
    """Actions to execute now, plus what the viewer shows about how they were chosen.

    actions: executed in order; the agent re-plans after them (or earlier when the episode ends).
    videos / samples: every imagination call of this plan and the per-sample read-back.
    chosen: (video index, sample index) of the executed sample, or None.
    path_world: the intended camera path in the world frame (for the 3D view), may be empty.
    target_world: estimated target position (3,), when the planner has one.
    map_image: the planner's own top-down map (uint8, rows z, columns x), when it keeps one.
    belief_image: a target belief on the same grid as map_image (uint8, 255 = peak), when kept.
    hypotheses: (N, 4) world x, y, z and weight of imagined target positions, when kept.
    pose_estimates: where the planner believes it is (e.g. a visually corrected estimate), by name.
    """

    actions: list[Action] = field(default_factory=list)
    seconds: float = 0.0
    imagined: bool = False
    videos: list[ImaginedVideo] = field(default_factory=list)
    samples: list[list[SampleDebug]] = field(default_factory=list)
    chosen: tuple[int, int] | None = None
    path_world: list[Pose] = field(default_factory=list)
    target_world: np.ndarray | None = None
    map_image: np.ndarray | None = None
    belief_image: np.ndarray | None = None
    hypotheses: np.ndarray | None = None
    pose_estimates: dict[str, Pose] = field(default_factory=dict)  # the planner's own pose estimates, by name
    note: str = ""

    @property
    def stops(self) -> bool:
        return bool(self.actions) and self.actions[-1] == Action.STOP


@runtime_checkable
class Planner(Protocol):
    name: str

    def reset(self, episode: Episode, obs: Observation, memory: Memory) -> None: ...

    def plan(self, obs: Observation, memory: Memory) -> Plan: ...


@dataclass
class PlannerConfig:
    """Fields every planner shares."""

    name: str = MISSING
    gamma: float = 0.6  # centring tolerance (paper's IF: |x - x*| <= gamma/2 * W)
    stop_distance: float = 1.0  # metres, by depth inside the target box
    agent_radius: float = 0.18  # metres, for the collision check of read-back paths
    context_frames: int = 8  # frames the memory hands to the imagination
    min_clearance: float = 0.45  # metres of free depth ahead required to step forward

    @property
    def needs_imagination(self) -> bool:
        """Whether the run loads the `model=` imagination for this planner."""
        return False

    def __post_init__(self) -> None:
        check(0.0 < self.gamma <= 1.0, f"planner.gamma must be in (0, 1], got {self.gamma}")
        check(self.stop_distance > 0, f"planner.stop_distance must be > 0 metres, got {self.stop_distance}")
        check(self.agent_radius >= 0, f"planner.agent_radius must be >= 0, got {self.agent_radius}")
        check(self.context_frames >= 1, f"planner.context_frames must be >= 1, got {self.context_frames}")
        check(self.min_clearance > 0, f"planner.min_clearance must be > 0 metres, got {self.min_clearance}")


# ---------------------------------------------------------------------------------- helpers
class Timer:
    """`with Timer() as t: ...; t.seconds` — wall time of one plan."""

    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.t0


def check_video(video: Any, height: int, width: int) -> str:
    """'' when `video` is a usable ImaginedVideo, else a one-line reason (NaN, wrong shape, ...)."""
    if not isinstance(video, ImaginedVideo):
        return f"imagination returned {type(video).__name__}, not ImaginedVideo"
    f = np.asarray(video.frames)
    if f.ndim != 5 or f.shape[-1] != 3 or f.shape[0] < 1 or f.shape[1] < 1:
        return f"imagined video has shape {f.shape}, expected (S, F, H, W, 3)"
    if f.shape[2:4] != (height, width):
        return f"imagined video is {f.shape[2]}x{f.shape[3]}, expected {height}x{width}"
    if f.dtype != np.uint8:
        if not np.issubdtype(f.dtype, np.number):
            return f"imagined video has dtype {f.dtype}, expected uint8"
        if not np.all(np.isfinite(f)):
            return "NaN/Inf in the generated video"
        return f"imagined video has dtype {f.dtype}, expected uint8"
    return ""


def box_depth(box: Box2D, depth: np.ndarray | None) -> float:
    """Median valid depth (metres) inside the central half of `box`; nan when unknown.

    Why the central half: the box outline hugs the object, so its border pixels often see the wall
    behind it."""
    if depth is None:
        return float("nan")
    H, W = depth.shape
    cx, cy = box.center
    hw, hh = max(box.width / 4, 1.0), max(box.height / 4, 1.0)
    x0, x1 = int(np.clip(cx - hw, 0, W - 1)), int(np.clip(cx + hw, 1, W))
    y0, y1 = int(np.clip(cy - hh, 0, H - 1)), int(np.clip(cy + hh, 1, H))
    d = depth[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.median(d)) if d.size else float("nan")


def is_centred(box: Box2D, width: int, height: int, gamma: float, vertical: bool = False) -> bool:
    """The agent's centring rule for STOP: |x - W/2| <= gamma/2 * W of the *frame* (and the same for
    y when `vertical`). This is a control rule, deliberately looser than the IF metric
    (envs.geometry.target_centred, the paper's box-relative test used by the evals):
    with 30-degree turns a small box can never get within a fraction of its own width of the centre,
    and ObjectNav success is judged by the env's view points, not by centring. Objects on the floor
    sit below the centre of a 0.88 m high camera at 1 m, so the vertical test is off by default (no
    LOOK_DOWN in the loop)."""
    cx, cy = box.center
    ok = abs(cx - width / 2) <= gamma / 2 * width
    return bool(ok and (not vertical or abs(cy - height / 2) <= gamma / 2 * height))


def target_range(box: Box2D, depth: np.ndarray | None, K: np.ndarray | None = None) -> float:
    """Floor-plane distance (m) from the camera to the nearest part of the object in `box`; nan when
    unknown.

    ObjectNav's "within 1 m" is measured on the floor plane to the object's extent, so each pixel's
    depth (along the viewing axis) becomes a horizontal distance with `K` (a pixel 25 degrees off the
    axis at depth 0.9 m is 1.0 m away). With the detector's mask (segmentation) it is the object's own
    pixels (2nd percentile); with a box only, min(read-back's target_distance (near-cluster centroid),
    10th percentile of the box's pixels): a wide object (a TV, a sofa) seen from 1 m has its centroid
    further than its nearest part."""
    if depth is None:
        return float("nan")
    H, W = depth.shape
    if box.mask is not None and box.mask.shape == depth.shape:
        ys, xs = np.nonzero(box.mask)
        pct = 2.0
    else:
        x0, x1, y0, y1 = box.pixel_bounds(W, H)
        ys, xs = np.mgrid[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)].reshape(2, -1)
        pct = 10.0
    d = depth[ys, xs]
    ok = np.isfinite(d) & (d > 0)
    d, xs = d[ok], xs[ok]
    if K is not None and d.size:
        d = d * np.hypot(1.0, (xs + 0.5 - K[0, 2]) / K[0, 0])  # along the axis -> on the floor plane
    near = float(np.percentile(d, pct)) if d.size else float("nan")
    if box.mask is not None and box.mask.shape == depth.shape:
        return near
    if K is not None:
        c = target_distance(box, depth, K)
        if c is not None:
            return float(np.nanmin([c, near]))
    return near if np.isfinite(near) else box_depth(box, depth)


def should_stop(box: Box2D | None, depth: np.ndarray | None, width: int, height: int, gamma: float, stop_distance: float,
                K: np.ndarray | None = None) -> bool:
    """Stop rule: the target is centred and within `stop_distance` by depth."""
    if box is None:
        return False
    d = target_range(box, depth, K)
    return bool(np.isfinite(d) and d <= stop_distance and is_centred(box, width, height, gamma))


def start_pose(obs: Observation) -> Pose:
    """Where a plan starts: the agent's pose (the origin when the backend gives none)."""
    return obs.pose if obs.pose is not None else Pose((0.0, 0.0, 0.0), 0.0)


def path_length_xz(poses_rel: np.ndarray) -> float:
    """Floor-plane length (m) of a (F, 4, 4) relative path."""
    p = np.asarray(poses_rel)[:, [0, 2], 3]
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum()) if len(p) > 1 else 0.0
