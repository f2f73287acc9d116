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

import cv2
import numpy as np
from omegaconf import MISSING

from envs.config import check
from envs.types import Action, Box2D, Episode, Observation, Pose
from models.types import ImaginedVideo, VideoContext

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


def resize_context(ctx: VideoContext, height: int, width: int) -> VideoContext:
    """The memory keeps frames at the sensor resolution; the imagination wants its own."""
    if ctx.frames.shape[1:3] == (height, width):
        return ctx
    frames = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in ctx.frames])
    return VideoContext(frames=frames, indices=ctx.indices, poses=ctx.poses)


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


def scale_box(box: Box2D, sx: float, sy: float) -> Box2D:
    """Box from imagination pixels to observation pixels."""
    return Box2D(box.x0 * sx, box.y0 * sy, box.x1 * sx, box.y1 * sy, box.score, box.label, box.instance_id)


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
    """Distance (m) to the nearest part of the object inside `box`; nan when unknown.

    min(read-back's target_distance (near-cluster centroid), 10th percentile of the box's depth).
    Why both: ObjectNav's "within 1 m" is to the object's extent, and a wide object (a TV, a sofa)
    seen from 1 m has its centroid further than its nearest part."""
    if depth is None:
        return float("nan")
    H, W = depth.shape
    x0, x1 = int(np.clip(box.x0, 0, W - 1)), int(np.clip(np.ceil(box.x1), 1, W))
    y0, y1 = int(np.clip(box.y0, 0, H - 1)), int(np.clip(np.ceil(box.y1), 1, H))
    d = depth[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]
    d = d[np.isfinite(d) & (d > 0)]
    near = float(np.percentile(d, 10)) if d.size else float("nan")
    if K is not None:
        try:
            from planners.readback.target import target_distance

            c = target_distance(box, depth, K)
            if c is not None:
                return float(np.nanmin([c, near]))
        except ImportError:  # pragma: no cover - read-back module not there
            pass
    return near if np.isfinite(near) else box_depth(box, depth)


def should_stop(box: Box2D | None, depth: np.ndarray | None, width: int, height: int, gamma: float, stop_distance: float,
                K: np.ndarray | None = None) -> bool:
    """Stop rule (issue 5): the target is centred and within `stop_distance` by depth."""
    if box is None:
        return False
    d = target_range(box, depth, K)
    return bool(np.isfinite(d) and d <= stop_distance and is_centred(box, width, height, gamma))


def start_pose(obs: Observation) -> Pose:
    """Where a plan starts: the agent's pose (the origin when the backend gives none)."""
    return obs.pose if obs.pose is not None else Pose((0.0, 0.0, 0.0), 0.0)


def world_path(start: Pose, poses_rel: np.ndarray) -> list[Pose]:
    """A path relative to the current camera, (F, 4, 4), as world poses (for the viewer)."""
    from envs.geometry import matrix_to_pose, pose_to_matrix

    T0 = pose_to_matrix(start)
    return [matrix_to_pose(T0 @ T) for T in poses_rel]


def path_length_xz(poses_rel: np.ndarray) -> float:
    """Floor-plane length (m) of a (F, 4, 4) relative path."""
    p = np.asarray(poses_rel)[:, [0, 2], 3]
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum()) if len(p) > 1 else 0.0


# ------------------------------------------------------------------------ controller bridge
# The controller is planners/control.py; planners call it only through these few functions so its
# signatures are adapted in one place.
@dataclass(frozen=True)
class Motion:
    """The env's discrete action sizes."""

    step_m: float = 0.25
    turn_deg: float = 30.0


def motion_of(env: Any) -> Motion:
    cfg = getattr(env, "cfg", None) or getattr(env, "config", None)
    step = getattr(cfg, "forward_step", None) or getattr(cfg, "forward_step_size", None) or 0.25
    turn = getattr(cfg, "turn_angle_deg", None) or getattr(cfg, "turn_angle", None) or 30.0
    return Motion(float(step), float(turn))


def path_actions(start: Pose, poses_rel: np.ndarray, motion: Motion) -> list[Action]:
    """Discrete actions that follow a (F, 4, 4) path given relative to the current camera."""
    from planners import control

    return list(control.path_to_actions(np.asarray(poses_rel), forward_step=motion.step_m, turn_deg=motion.turn_deg))


def goto_xz_actions(start: Pose, goal_xz: np.ndarray, motion: Motion) -> list[Action]:
    """Straight-line actions from `start` towards a floor point (x, z)."""
    from planners import control

    return list(control.goto_actions(start, goal_xz, forward_step=motion.step_m, turn_deg=motion.turn_deg))


def free_prefix(depth: np.ndarray | None, K: np.ndarray, poses_rel: np.ndarray, radius: float) -> tuple[np.ndarray | None, str]:
    """The part of a path that keeps `radius` clear of what the depth sees: (poses, '') when all of
    it is free, (prefix, message) when it is cut, (None, message) when even the first step collides."""
    if depth is None:
        return poses_rel, ""
    from planners import control

    chk = control.check_path(depth, K, poses_rel, effective_radius(depth, K, radius))
    if chk.free:
        return poses_rel, ""
    if chk.first_blocked is None or chk.first_blocked <= 1:
        return None, "read-back path would collide at its first step (checked against depth)"
    return poses_rel[: chk.first_blocked], chk.message


def path_free(depth: np.ndarray, K: np.ndarray, poses_rel: np.ndarray, radius: float) -> bool:
    """True when the whole path keeps `radius` clear of what the current depth sees."""
    from planners import control

    return bool(control.path_is_free(depth, K, poses_rel, effective_radius(depth, K, radius)))


def effective_radius(depth: np.ndarray, K: np.ndarray, radius: float) -> float:
    """`radius`, shrunk below the clearance the agent already has. Why: an agent that starts (or
    bumped) next to a wall is already closer than its radius to it; every path, even turning away,
    would count as colliding and it could never move again."""
    from planners import control

    pts = control.obstacle_points_xz(depth, K)
    if len(pts) == 0:
        return radius
    here = float(np.min(np.hypot(pts[:, 0], pts[:, 1])))
    return float(max(0.02, min(radius, 0.9 * here)))


def clearance_ahead(depth: np.ndarray | None, frac: float = 0.34) -> float:
    """Free distance (m) straight ahead: a low percentile of the central columns' depth."""
    if depth is None:
        return float("inf")
    H, W = depth.shape
    c = depth[int(H * 0.3) : int(H * 0.95), int(W * (0.5 - frac / 2)) : int(W * (0.5 + frac / 2))]
    c = c[np.isfinite(c) & (c > 0)]
    return float(np.percentile(c, 5)) if c.size else 0.0


def step_is_free(depth: np.ndarray | None, K: np.ndarray, motion: Motion, radius: float, turns: int = 0) -> bool:
    """Would `turns` turns (left positive) then one MOVE_FORWARD keep `radius` clear of what the
    depth sees? (The body is wider than a central strip of pixels, so this checks the swept disc.)"""
    if depth is None:
        return True
    from envs.geometry import apply_relative, pose_to_matrix

    origin = Pose((0.0, 0.0, 0.0), 0.0)
    turned = apply_relative(origin, np.zeros(3), np.array([np.deg2rad(motion.turn_deg) * turns, 0.0, 0.0]))
    stepped = apply_relative(turned, np.array([0.0, 0.0, -motion.step_m]), np.zeros(3))
    rel = np.stack([pose_to_matrix(origin), pose_to_matrix(turned), pose_to_matrix(stepped)])
    return path_free(depth, K, rel, radius)


def approach_box_actions(box: Box2D, depth: np.ndarray | None, width: int, motion: Motion, K: np.ndarray,
                         radius: float, gamma: float) -> list[Action]:
    """One move towards a box in the current view: turn if it is not centred (the same frame
    criterion as the stop rule, so turning and stopping never disagree), else step forward if the
    swept disc is free, else turn away."""
    off = (box.center[0] - width / 2) / (width / 2)  # -1 left .. +1 right
    if abs(off) > gamma:
        return [Action.TURN_RIGHT if off > 0 else Action.TURN_LEFT]
    if step_is_free(depth, K, motion, radius):
        return [Action.MOVE_FORWARD]
    return [Action.TURN_LEFT]
