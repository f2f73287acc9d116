"""The controller: camera paths -> Habitat discrete actions (or base velocities for a rig), the
collision check of a path against the current depth, and the stop test.

Paths are followed greedily on the agent's own discrete state (turn towards the next waypoint
until within half a turn, step forward while that brings it closer), which is what the discrete
action space allows; nothing here needs a map. A read-back path that runs into what the depth
sees is reported (`check_path`) and cut (`safe_path_actions`) instead of being executed blindly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from envs.base import NavEnv
from envs.config import check_at_least
from envs.geometry import apply_relative, backproject_depth, pose_to_matrix, target_centred, wrap_angle, yaw_towards
from envs.types import Action, Box2D, Pose
from planners.readback.path import PathEstimate
from planners.readback.target import target_distance


@dataclass(frozen=True)
class ControlConfig:
    """Action sizes (Habitat ObjectNav: 0.25 m, 30 deg) and the tracker's safety cap."""

    forward_step: float = 0.25
    turn_deg: float = 30.0
    max_actions: int = 500

    def __post_init__(self) -> None:
        if not (0.0 < self.forward_step <= 2.0):
            raise ValueError(f"forward_step must be in (0, 2] m, got {self.forward_step}; Habitat uses 0.25")
        if not (0.0 < self.turn_deg <= 180.0):
            raise ValueError(f"turn_deg must be in (0, 180], got {self.turn_deg}; Habitat uses 30")
        check_at_least(self, max_actions=1)


def _track(x: float, z: float, yaw: float, targets: list[tuple[float, float]], final_yaw: float | None,
           cfg: ControlConfig) -> list[Action]:
    """Greedy waypoint tracker on the discrete state; returns the actions (no STOP)."""
    step, turn = cfg.forward_step, math.radians(cfg.turn_deg)
    acts: list[Action] = []

    def turn_towards(goal_yaw: float) -> None:
        nonlocal yaw
        while len(acts) < cfg.max_actions:
            err = float(wrap_angle(goal_yaw - yaw))
            if abs(err) <= turn / 2 + 1e-9:
                return
            acts.append(Action.TURN_LEFT if err > 0 else Action.TURN_RIGHT)
            yaw += turn if err > 0 else -turn

    for tx, tz in targets:
        while len(acts) < cfg.max_actions:
            dist = math.hypot(tx - x, tz - z)
            if dist <= step / 2:
                break
            turn_towards(yaw_towards(tx - x, tz - z))
            nx, nz = x - step * math.sin(yaw), z - step * math.cos(yaw)
            if math.hypot(tx - nx, tz - nz) >= dist:  # a step would not help: close enough
                break
            acts.append(Action.MOVE_FORWARD)
            x, z = nx, nz
    if final_yaw is not None:
        turn_towards(final_yaw)
    return acts[: cfg.max_actions]


def _as_relative(path, poses) -> np.ndarray:
    if isinstance(path, PathEstimate):
        return path.poses_rel
    if isinstance(path, Pose):
        if poses is None or len(poses) == 0:
            raise ValueError("path_to_actions(start_pose, world_poses): give the world poses to follow")
        inv = np.linalg.inv(pose_to_matrix(path))
        return np.stack([inv @ (pose_to_matrix(p) if isinstance(p, Pose) else np.asarray(p)) for p in poses])
    arr = np.asarray(path, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (4, 4):
        raise ValueError(f"path must be a PathEstimate, (F, 4, 4) camera-to-first-camera poses, or (start Pose, "
                         f"world poses); got shape {arr.shape}")
    return arr


def path_to_actions(path, poses=None, forward_step: float = 0.25, turn_deg: float = 30.0, *,
                    step_m: float | None = None, max_actions: int = 500) -> list[Action]:
    """Habitat actions that follow a path and end facing the path's final heading.

    `path`: a PathEstimate, (F, 4, 4) poses relative to the current camera, or a start Pose with
    `poses` a list of world Poses (the planners' form). `step_m` is an alias of `forward_step`."""
    if isinstance(poses, (int, float)) and not isinstance(poses, bool):
        raise ValueError("pass the step size by keyword: path_to_actions(path, forward_step=0.25, turn_deg=30)")
    cfg = ControlConfig(forward_step if step_m is None else step_m, turn_deg, max_actions)
    rel = _as_relative(path, poses)
    xz = [(float(T[0, 3]), float(T[2, 3])) for T in rel[1:]]
    final_yaw = float(np.arctan2(rel[-1][0, 2], rel[-1][2, 2]))  # yaw of the last camera (R_y: [0,2]=sin, [2,2]=cos)
    return _track(0.0, 0.0, 0.0, xz, final_yaw, cfg)


def goto_actions(current: Pose, goal_xz, forward_step: float = 0.25, turn_deg: float = 30.0,
                 final_yaw: float | None = None, stop: bool = False, max_actions: int = 500) -> list[Action]:
    """Straight-line actions from `current` to the floor point goal_xz = (x, z) (world, metres);
    optionally turn to `final_yaw` and append STOP. No obstacle avoidance: give navigable waypoints."""
    g = np.asarray(goal_xz, dtype=np.float64).reshape(-1)
    if g.shape != (2,) or not np.all(np.isfinite(g)):
        raise ValueError(f"goal_xz must be two finite numbers (x, z) in metres, got {goal_xz!r}")
    acts = _track(current.position[0], current.position[2], current.yaw, [(g[0], g[1])], final_yaw,
                  ControlConfig(forward_step, turn_deg, max_actions))
    return acts + [Action.STOP] if stop else acts


@dataclass(frozen=True)
class PathCheck:
    """free: no obstacle point within the agent radius of the path. first_blocked: index of the
    first pose whose approach segment is blocked (None when free). clearance: smallest distance (m)
    from the path to an obstacle seen in the depth (inf if none). message: one line for logs."""

    free: bool
    first_blocked: int | None
    clearance: float
    message: str


def obstacle_points_xz(depth: np.ndarray, K: np.ndarray, camera_height: float | None = None,
                       floor_margin: float = 0.1, max_above: float = 0.6) -> np.ndarray:
    """(N, 2) floor-plane (x, z) of depth points that stand above the floor (camera frame: x right,
    -z forward). The camera height is estimated from the lowest points when not given."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W) metres, got shape {depth.shape}")
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or abs(K[0, 2] - depth.shape[1] / 2) > depth.shape[1] / 4:
        raise ValueError(f"K must be the 3x3 intrinsics of this {depth.shape[1]}x{depth.shape[0]} depth image; "
                         "use envs.geometry.intrinsics_from_hfov(hfov, W, H)")
    ok = np.isfinite(depth) & (depth > 0)
    if not ok.any():
        return np.zeros((0, 2))
    P = backproject_depth(np.where(ok, depth, 0.0).astype(np.float32), K)[ok]
    h = float(-np.percentile(P[:, 1], 1)) if camera_height is None else float(camera_height)
    keep = (P[:, 1] > -h + floor_margin) & (P[:, 1] < max_above)
    return P[keep][:, [0, 2]].astype(np.float64)


def check_path(depth: np.ndarray, K: np.ndarray, poses, radius: float = 0.18,
               camera_height: float | None = None) -> PathCheck:
    """Does a path (PathEstimate or (F, 4, 4) relative to the depth's camera) keep `radius` clear
    of everything the depth sees? Space the depth does not see counts as free."""
    if radius <= 0:
        raise ValueError(f"radius must be > 0 m, got {radius}; Habitat's agent radius is 0.18")
    rel = _as_relative(poses, None)
    obs = obstacle_points_xz(depth, K, camera_height)
    if len(obs) == 0 or len(rel) < 2:
        return PathCheck(True, None, float("inf"), "path free: no obstacle in view")
    tree = cKDTree(obs)
    clearance = float("inf")
    first = None
    for i in range(1, len(rel)):
        a, b = rel[i - 1][[0, 2], 3], rel[i][[0, 2], 3]
        n = max(2, int(math.ceil(np.linalg.norm(b - a) / (radius / 2))) + 1)
        pts = a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)
        d, _ = tree.query(pts)
        clearance = min(clearance, float(d.min()))
        if first is None and d.min() < radius:
            first = i
    if first is None:
        return PathCheck(True, None, clearance, f"path free: clearance {clearance:.2f} m >= radius {radius:.2f} m")
    p = rel[first][[0, 2], 3]
    return PathCheck(False, first, clearance,
                     f"path blocked at pose {first} of {len(rel) - 1} ({-p[1]:.2f} m ahead, {p[0]:.2f} m right): "
                     f"an obstacle is {clearance:.2f} m from the path, less than the {radius:.2f} m radius; "
                     "following only the free part")


def path_is_free(depth: np.ndarray, K: np.ndarray, poses, radius: float = 0.18) -> bool:
    return check_path(depth, K, poses, radius).free


def safe_path_actions(path, depth: np.ndarray, K: np.ndarray, radius: float = 0.18, forward_step: float = 0.25,
                      turn_deg: float = 30.0) -> tuple[list[Action], PathCheck]:
    """Actions for the collision-free prefix of a read-back path, and the check that cut it.
    A path blocked at its very first step gives no actions (the caller replans)."""
    rel = _as_relative(path, None)
    chk = check_path(depth, K, rel, radius)
    if not chk.free:
        rel = rel[: chk.first_blocked]
    if len(rel) < 2:
        return [], chk
    return path_to_actions(rel, forward_step=forward_step, turn_deg=turn_deg), chk


def target_reached(box: Box2D | None, depth: np.ndarray, K: np.ndarray, max_distance: float = 1.0,
                   gamma: float = 0.6) -> bool:
    """Stop test: the target's box (depth-image pixels) is centred (paper's IF criterion) and its
    visible surface is within `max_distance` metres by depth."""
    if box is None:
        return False
    H, W = np.asarray(depth).shape[:2]
    if not target_centred(box, W, H, gamma):
        return False
    d = target_distance(box, depth, K)
    return d is not None and d <= max_distance


def actions_to_velocity(action: Action | int, forward_step: float = 0.25, turn_deg: float = 30.0,
                        duration: float = 1.0) -> tuple[float, float]:
    """(linear m/s, angular rad/s, counter-clockwise = left positive) that perform `action` in
    `duration` seconds on a differential-drive base. STOP and LOOK_* give (0, 0)."""
    if duration <= 0:
        raise ValueError(f"duration must be > 0 s, got {duration}")
    a = Action(int(action))
    if a == Action.MOVE_FORWARD:
        return forward_step / duration, 0.0
    if a == Action.TURN_LEFT:
        return 0.0, math.radians(turn_deg) / duration
    if a == Action.TURN_RIGHT:
        return 0.0, -math.radians(turn_deg) / duration
    return 0.0, 0.0


# ------------------------------------------------------------------------------ planners' bridge
# Planners call the controller through these few functions, in the env's action sizes (`Motion`).
@dataclass(frozen=True)
class Motion:
    """The env's discrete action sizes."""

    step_m: float = 0.25
    turn_deg: float = 30.0

    @classmethod
    def of(cls, env: NavEnv) -> Motion:
        """The action sizes the env states (NavEnv.forward_step, NavEnv.turn_degrees)."""
        return cls(float(env.forward_step), float(env.turn_degrees))


def path_actions(start: Pose, poses_rel: np.ndarray, motion: Motion) -> list[Action]:
    """Discrete actions that follow a (F, 4, 4) path given relative to the current camera."""
    return list(path_to_actions(np.asarray(poses_rel), forward_step=motion.step_m, turn_deg=motion.turn_deg))


def free_prefix(depth: np.ndarray | None, K: np.ndarray, poses_rel: np.ndarray, radius: float) -> tuple[np.ndarray | None, str]:
    """The part of a path that keeps `radius` clear of what the depth sees: (poses, '') when all of
    it is free, (prefix, message) when it is cut, (None, message) when even the first step collides."""
    if depth is None:
        return poses_rel, ""
    chk = check_path(depth, K, poses_rel, effective_radius(depth, K, radius))
    if chk.free:
        return poses_rel, ""
    if chk.first_blocked is None or chk.first_blocked <= 1:
        return None, "read-back path would collide at its first step (checked against depth)"
    return poses_rel[: chk.first_blocked], chk.message


def path_free(depth: np.ndarray, K: np.ndarray, poses_rel: np.ndarray, radius: float) -> bool:
    """True when the whole path keeps `radius` clear of what the current depth sees."""
    return bool(path_is_free(depth, K, poses_rel, effective_radius(depth, K, radius)))


def effective_radius(depth: np.ndarray, K: np.ndarray, radius: float) -> float:
    """`radius`, shrunk below the clearance the agent already has. Why: an agent that starts (or
    bumped) next to a wall is already closer than its radius to it; every path, even turning away,
    would count as colliding and it could never move again."""
    pts = obstacle_points_xz(depth, K)
    if len(pts) == 0:
        return radius
    here = float(np.min(np.hypot(pts[:, 0], pts[:, 1])))
    return float(max(0.02, min(radius, 0.9 * here)))


def step_is_free(depth: np.ndarray | None, K: np.ndarray, motion: Motion, radius: float, turns: int = 0) -> bool:
    """Would `turns` turns (left positive) then one MOVE_FORWARD keep `radius` clear of what the
    depth sees? (The body is wider than a central strip of pixels, so this checks the swept disc.)"""
    if depth is None:
        return True
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
