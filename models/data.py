"""The clip dataset from simulator ground truth (paper §6.2 curation, with the embedded world in place
of ScanNet++ + Qwen3-VL).

Every clip starts at a *station*: what an agent would have in memory when it asks the model to
imagine. The source stream is a look-around at a pose P0 (initial view + 12 × 30° left turns, as
`models.memory.look_around_actions` does, source indices 0..12) and, half of the time, the frames
of a walk from P0 toward the target (one per 0.25 m / 30°, like the controller's actions), as in the
receding-horizon loop where memory holds the way so far. The context is a sparse subset of that
stream with its source indices — the agent's farthest-point pose-coverage pick
(`Memory.select_indices`) most of the time, a random sparse subset otherwise — and always ends with
the current view, which is also the first target frame (paper §3.3). `out_of_view_prob` > 0 draws that
share of grounding stations again until the current view shows no instance of the target category while an
older frame of the agent's pick shows the target (`target_out_of_view`): clips that ask for context use, which
natural draws give about 1 time in 8.

- grounding clip: the path from the current pose to the target's centring pose
  (`world.centring_pose`: the nearest view point, looking at the object's centre, pitched to centre
  it vertically): turn to face the route, walk the navgrid shortest path, turn and tilt to the
  object; `path_frames` frames evenly spaced in (metres + turning), at most `max_step_m` (0.25 m)
  or `max_turn_deg` (20°) per frame so that the camera path can be read back from the video (dense
  flow fails beyond that at 64²: measured in the model card). Stations are therefore drawn within one
  clip's reach of the target. The last path frame has the target centred by the IF criterion
  (γ = 0.6) on its ground-truth segmentation box with ≥ `min_target_pixels` visible, else the draw
  is rejected. Then `box_frames` copies of the final view with `draw_red_box` on that box. The
  instruction is the paper's template with the scene phrase and the category phrase; the target
  instance is the one of that category nearest to the current pose (geodesically), which is what
  "focuses on a sofa" asks for.
- navigation clip: a smooth random egocentric path from the same current view (forward ≤ 0.3 m and
  yaw ≤ 15° per frame, each an AR(1) process; a step that would leave the navigable floor becomes a
  turn in place), with its camera-to-world poses. `nav_min_turn_deg` > 0 makes rotation-heavy paths
  that turn one way through at least that angle (held-out sets for large turns, e.g. 180° in 12
  frames with `nav_max_yaw_deg=20`).

Frames are rendered at `render_size` (the agent's 128²) and INTER_AREA-resized to `size` (64²), so
the model trains on exactly what `Memory.select_context(size=...)` feeds it. Every clip is a pure
function of (seed, scene seed, station index): shards are reproducible whatever the worker count.

CLI: `python -m models.data out=DIR split=train scenes=N clips_per_scene=K num_workers=2 seed=0`; add
`executor=ray [ray_address=auto]` for one Ray task per shard (models/executor.py): the same shard files,
byte for byte, whatever the executor or worker count.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from envs.config import parse_overrides
from envs.geometry import pose_to_matrix, wrap_angle, yaw_towards
from envs.instructions import grounding_instruction
from envs.splits import split_seeds
from envs.types import Box2D, Pose
from models.red_box import draw_red_box
from models.types import Clip

TURN_COST_M_PER_RAD = 0.3  # a turn in place gets frames too: 1 rad of turning "costs" 0.3 m of walking
WALK_STEP_M = 0.25  # agent frames while walking: one per Habitat MOVE_FORWARD (0.25 m) ...
WALK_TURN_RAD = math.radians(30.0)  # ... or TURN (30°)
LOOKAROUND_TURNS = 12  # 12 × 30° = a full turn (models.memory.look_around_actions)


@dataclass
class ClipGenConfig:
    """Settings of the clip generator (CLI keys are these field names)."""

    out: str = ""
    split: str = "train"
    scenes: int = 8  # number of scene seeds, the first `scenes` of the split after `scene_offset`
    scene_offset: int = 0
    clips_per_scene: int = 16
    modes: str = "both"  # both (grounding and navigation alternate, sharing stations) | grounding | navigation
    num_workers: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    executor: str = "local"  # local (process pool) | ray (one Ray task per shard; pip install "v4s-agent[ray]")
    ray_address: str = ""  # executor=ray: "" starts a local Ray with num_workers CPUs; "auto" joins a running cluster
    seed: int = 0
    size: int = 64  # model resolution
    render_size: int = 128  # the agent's camera resolution; frames are INTER_AREA-resized to `size`
    context_frames: int = 16  # max context frames per clip (the agent's MemoryConfig.max_context)
    min_context_frames: int = 4  # random-subset contexts draw their size from [min, max]
    fps_context_prob: float = 0.75  # share of clips whose context is the agent's pose-coverage pick
    # share of grounding stations drawn with the target *out of view*: no instance of the category visible in
    # the current view, the target seen in an older frame of the agent's context pick (which these clips then
    # use as context), so only the context can say where it is. Natural draws have it for about 1 in 8 stations.
    # 0 keeps every draw (and the clips of existing seeds) as before
    out_of_view_prob: float = 0.0
    out_of_view_tries: int = 60  # station draws before an out-of-view station gives up (about 1 in 8 qualifies)
    walk_prob: float = 0.5  # share of stations whose current pose is reached by a walk after the look-around
    max_walk_frames: int = 12
    path_frames: int = 16  # grounding: frames from the current view to the centred view
    max_step_m: float = 0.25  # grounding paths: at most this far per frame (Habitat's forward step) ...
    max_turn_deg: float = 20.0  # ... or this much turning; a mix costs in proportion (read-back must follow)
    approach_m: float = 2.5  # stations without a walk start within this geodesic distance of the target
    box_frames: int = 4  # grounding: trailing frames with the red box
    nav_frames: int = 20  # navigation: target frames (same count as grounding: one model, one length)
    nav_max_forward: float = 0.3  # metres per frame
    nav_max_yaw_deg: float = 15.0  # degrees per frame
    nav_min_turn_deg: float = 0.0  # > 0: rotation-heavy paths, turning one way through at least this angle
    min_target_pixels: int = 30  # at render_size: the target must be this visible in the final view
    gamma: float = 0.6  # IF tolerance the final view must meet
    max_tries: int = 6  # redraws of a grounding target / navigation path before giving up on a station
    shard_clips: int = 64  # clips per shard (scenes are grouped into shards of about this many clips)
    hfov_deg: float = 79.0

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"ClipGenConfig.{name}={getattr(self, name)!r} is invalid: {why}")

        from models.executor import check_executor

        split_seeds(self.split)  # raises a clear error for an unknown split
        check_executor(self.executor, self.num_workers)
        for name in ("scenes", "clips_per_scene", "num_workers", "path_frames", "nav_frames", "shard_clips",
                     "context_frames", "min_context_frames", "max_tries", "out_of_view_tries", "size",
                     "render_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(name, "must be a positive int")
        if self.scene_offset < 0:
            raise bad("scene_offset", "must be >= 0")
        if self.scene_offset + self.scenes > len(split_seeds(self.split)):
            raise bad("scenes", f"split {self.split!r} has {len(split_seeds(self.split))} scenes, asked for "
                                f"{self.scenes} from offset {self.scene_offset}")
        if self.modes not in ("both", "grounding", "navigation"):
            raise bad("modes", "must be 'both', 'grounding' or 'navigation'")
        if self.path_frames < 2:
            raise bad("path_frames", "a path needs at least 2 frames")
        if self.box_frames < 0:
            raise bad("box_frames", "must be >= 0")
        if self.modes == "both" and self.path_frames + self.box_frames != self.nav_frames:
            raise bad("nav_frames", f"must equal path_frames + box_frames = {self.path_frames + self.box_frames} so "
                                    f"both modes share one target length (the model generates one length)")
        if self.min_context_frames > self.context_frames:
            raise bad("min_context_frames", f"must be <= context_frames={self.context_frames}")
        if self.render_size < self.size:
            raise bad("render_size", f"must be >= size={self.size} (frames are downsampled, never upsampled)")
        for name in ("fps_context_prob", "walk_prob", "out_of_view_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "must be a probability in [0, 1]")
        if not 0.0 < self.max_step_m <= 1.0:
            raise bad("max_step_m", "must be in (0, 1] metres per frame")
        if not 0.0 < self.max_turn_deg <= 90.0:
            raise bad("max_turn_deg", "must be in (0, 90] degrees per frame")
        if self.approach_m <= 0:
            raise bad("approach_m", "must be > 0 metres")
        if not 0.0 < self.nav_max_forward <= 1.0:
            raise bad("nav_max_forward", "must be in (0, 1] metres per frame")
        if not 0.0 < self.nav_max_yaw_deg <= 90.0:
            raise bad("nav_max_yaw_deg", "must be in (0, 90] degrees per frame")
        if not 0.0 <= self.nav_min_turn_deg <= self.nav_max_yaw_deg * (self.nav_frames - 1):
            raise bad("nav_min_turn_deg", f"must be in [0, nav_max_yaw_deg × (nav_frames − 1) = "
                                          f"{self.nav_max_yaw_deg * (self.nav_frames - 1):g}]: raise nav_max_yaw_deg")
        if not 0.0 < self.gamma <= 2.0:
            raise bad("gamma", "must be in (0, 2]; the paper uses 0.6")

    @property
    def turn_cost(self) -> float:
        """Metres of walking that one radian of turning is worth on a grounding path."""
        return self.max_step_m / math.radians(self.max_turn_deg)

    @classmethod
    def from_argv(cls, argv: list[str]) -> ClipGenConfig:
        """key=value arguments → config; unknown keys and malformed values are one clear error."""
        cfg = parse_overrides(cls, argv)
        if not cfg.out:
            raise ValueError("out=DIR is required (where the shards go)")
        return cfg


# ------------------------------------------------------------------------------------ geometry
def _xz(p: Pose | np.ndarray) -> np.ndarray:
    if isinstance(p, Pose):
        return np.array([p.position[0], p.position[2]], dtype=np.float64)
    return np.asarray(p, dtype=np.float64).reshape(-1)[:2]


def _keyframes(start: Pose, route_xz: np.ndarray, end: Pose, turn_cost: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Key states of a turn-walk-turn route: (xz (K, 2), unwrapped yaw (K,), pitch (K,), cumulative cost (K,))."""
    pts = [_xz(start)] + [np.asarray(p, dtype=np.float64) for p in np.asarray(route_xz).reshape(-1, 2)] + [_xz(end)]
    keys: list[tuple[np.ndarray, float, float]] = [(pts[0], start.yaw, start.pitch)]
    for a, b in pairwise(pts):
        d = b - a
        if np.hypot(*d) < 1e-6:
            continue
        heading = yaw_towards(d[0], d[1])
        keys.append((a, heading, 0.0))
        keys.append((b, heading, 0.0))
    keys.append((pts[-1], end.yaw, end.pitch))
    yaws = [keys[0][1]]
    for _, yw, _ in keys[1:]:
        yaws.append(yaws[-1] + float(wrap_angle(yw - yaws[-1])))  # turn the short way
    xz = np.stack([k[0] for k in keys])
    yaw = np.asarray(yaws)
    pit = np.array([k[2] for k in keys])
    step = np.linalg.norm(np.diff(xz, axis=0), axis=1) + turn_cost * (np.abs(np.diff(yaw)) + np.abs(np.diff(pit)))
    return xz, yaw, pit, np.concatenate([[0.0], np.cumsum(step)])


def route_cost(start: Pose, route_xz: np.ndarray, end: Pose, turn_cost: float = TURN_COST_M_PER_RAD) -> float:
    """Metres walked + turn_cost × radians turned (yaw and pitch) along the turn-walk-turn route."""
    return float(_keyframes(start, route_xz, end, turn_cost)[3][-1])


def route_poses(start: Pose, route_xz: np.ndarray, end: Pose, n: int, turn_cost: float = TURN_COST_M_PER_RAD) -> list[Pose]:
    """`n` poses from `start` along the polyline `route_xz` to `end`: turn in place to face each
    segment, walk it, then turn (and tilt) to `end`'s yaw and pitch; evenly spaced in metres +
    turn_cost × radians. The first pose is `start`, the last is exactly `end`. Walking happens along
    the viewing axis, so every step is a (forward, turn) step of the read-back (planners/readback/path.py)."""
    if n < 2:
        raise ValueError(f"a route needs n >= 2 poses, got {n}")
    y = start.position[1]
    xz, yaw, pit, cost = _keyframes(start, route_xz, end, turn_cost)
    ts = np.linspace(0.0, cost[-1], n) if cost[-1] > 0 else np.zeros(n)
    out = []
    for t in ts:
        i = int(np.clip(np.searchsorted(cost, t, side="right") - 1, 0, len(cost) - 2))
        span = cost[i + 1] - cost[i]
        f = 0.0 if span <= 0 else (t - cost[i]) / span
        p = (1 - f) * xz[i] + f * xz[i + 1]
        out.append(Pose((float(p[0]), y, float(p[1])), float(wrap_angle((1 - f) * yaw[i] + f * yaw[i + 1])),
                        float((1 - f) * pit[i] + f * pit[i + 1])))
    out[0] = start
    out[-1] = end
    return out


def walk_poses(start: Pose, route_xz: np.ndarray, end: Pose, max_frames: int) -> list[Pose]:
    """Agent-like frames of a walk (about one per 0.25 m forward or 30° turn, like Habitat actions),
    excluding `start`, at most `max_frames`."""
    tc = WALK_STEP_M / WALK_TURN_RAD
    n = math.ceil(route_cost(start, route_xz, end, tc) / WALK_STEP_M) + 1
    return route_poses(start, route_xz, end, max(2, n), tc)[1:][:max_frames]


def cut_polyline(pts: np.ndarray, length: float) -> tuple[np.ndarray, float]:
    """The first `length` metres of polyline `pts` (K, 2): (points up to and including the cut point,
    heading yaw at the cut)."""
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    out = [pts[0]]
    left = float(length)
    heading = 0.0
    for a, b in pairwise(pts):
        d = b - a
        seg = float(np.hypot(*d))
        if seg < 1e-9:
            continue
        heading = yaw_towards(d[0], d[1])
        if seg >= left:
            out.append(a + d * (left / seg))
            return np.stack(out), heading
        out.append(b)
        left -= seg
    return np.stack(out), heading


def lookaround_poses(start: Pose, turns: int = LOOKAROUND_TURNS) -> list[Pose]:
    """The initial view and `turns` 30° left turns (the last one is back at the start heading)."""
    return [Pose(start.position, float(wrap_angle(start.yaw + k * 2 * math.pi / turns)), start.pitch) for k in range(turns + 1)]


def nav_path(world: Any, start: Pose, n: int, rng: np.random.Generator, max_forward: float = 0.3,
             max_yaw_deg: float = 15.0, min_turn_deg: float = 0.0) -> list[Pose]:
    """Smooth random egocentric path of `n` poses from `start` on the navigable floor: per frame a
    forward move (AR(1) speed in [0, max_forward]) along the viewing axis, then a turn (AR(1) rate in
    ±max_yaw_deg). A move that would leave the floor becomes a turn in place, away from the wall.
    `min_turn_deg` > 0: every turn goes one way (side drawn per path) by at least
    min_turn_deg / (n − 1), so the path turns through at least `min_turn_deg` in all."""
    wmax = math.radians(max_yaw_deg)
    v = float(rng.uniform(0.0, max_forward))
    w = float(rng.uniform(-wmax, wmax))
    style = rng.random()  # some paths mostly turn, some mostly walk
    least = math.radians(min_turn_deg) / max(1, n - 1)
    side = (1.0 if rng.random() < 0.5 else -1.0) if least > 0 else 0.0  # no extra draw: plain paths unchanged
    poses = [Pose(start.position, start.yaw, 0.0)]
    x, z, yaw = start.position[0], start.position[2], start.yaw
    for _ in range(n - 1):
        v = float(np.clip(0.8 * v + 0.2 * rng.uniform(0, max_forward) + rng.normal(0, 0.05), 0.0, max_forward))
        w = float(np.clip(0.8 * w + rng.normal(0, 0.35 * wmax), -wmax, wmax))
        if least > 0:
            w = side * float(np.clip(abs(w), least, wmax))
        if style < 0.15:
            v *= 0.2
        nx, nz = x - v * math.sin(yaw), z - v * math.cos(yaw)
        if v > 1e-4 and not world.navgrid.segment_free((x, z), (nx, nz)):
            nx, nz, v = x, z, 0.0
            w = math.copysign(wmax, w if abs(w) > 1e-3 else 1.0)  # keep turning one way until free
        x, z = nx, nz
        yaw = float(wrap_angle(yaw + w))
        poses.append(Pose((float(x), start.position[1], float(z)), yaw, 0.0))
    return poses


# ------------------------------------------------------------------------------------ rendering
def render_rgb(world: Any, poses: list[Pose], size: int) -> np.ndarray:
    """(N, size, size, 3) uint8: renders at the world's resolution, INTER_AREA to `size` (as the agent)."""
    return render_rgbd(world, poses, size)[0]


def render_rgbd(world: Any, poses: list[Pose], size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """`render_rgb` and the depth maps (N, size, size) float16 metres, or None when the world renders
    no depth. Depth is resized with the nearest neighbour: averaging depths across an edge would put
    points in mid-air."""
    out, depths = [], []
    for p in poses:
        obs = world.render_at(p, semantic=False)
        rgb, depth = obs.rgb, obs.depth
        if rgb.shape[:2] != (size, size):
            rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
        if depth is not None and depth.shape[:2] != (size, size):
            depth = cv2.resize(depth, (size, size), interpolation=cv2.INTER_NEAREST)
        out.append(rgb)
        depths.append(depth)
    has_depth = all(d is not None for d in depths)
    return np.stack(out), (np.stack(depths).astype(np.float16) if has_depth else None)


def target_box(world: Any, pose: Pose, instance_id: int, min_pixels: int = 1) -> tuple[Box2D | None, np.ndarray]:
    """Ground-truth box of `instance_id` at `pose` (render resolution) and the RGB render there."""
    obs = world.render_at(pose, semantic=True)
    for b in world.gt_boxes(obs, min_pixels=min_pixels):
        if b.instance_id == int(instance_id):
            return b, obs.rgb
    return None, obs.rgb


def centred(box: Box2D, width: int, height: int, gamma: float = 0.6) -> bool:
    """The paper's IF criterion (one definition: envs.geometry.target_centred)."""
    from envs.geometry import target_centred

    return target_centred(box, width, height, gamma)


def category_boxes(world: Any, pose: Pose, category: str, min_pixels: int, size: int | None = None) -> list[Box2D]:
    """The boxes of the instances of `category` visible from `pose` (≥ min_pixels of each at render
    resolution), scaled to `size` pixels wide when given."""
    obs = world.render_at(pose, semantic=True)
    f = 1.0 if size is None else size / obs.rgb.shape[1]
    return [b.scaled(f) if size is not None else b for b in world.gt_boxes(obs, min_pixels=min_pixels)
            if b.label == category]


def category_in_view(world: Any, pose: Pose, category: str, min_pixels: int) -> bool:
    """An instance of `category` is visible from `pose` (≥ min_pixels of it at render resolution)."""
    return bool(category_boxes(world, pose, category, min_pixels))


def instance_seen(world: Any, poses: list[Pose], instance_id: int, min_pixels: int) -> bool:
    """`instance_id` is visible (≥ min_pixels at render resolution) from at least one of `poses`."""
    return any(np.count_nonzero(world.render_at(p, semantic=True).semantic == instance_id) >= min_pixels
               for p in poses)


# ------------------------------------------------------------------------------------ stations
@dataclass
class Station:
    """What the agent has seen when it asks the model: stream poses/frames (source order); the
    current pose is the last one."""

    poses: list[Pose]
    frames: np.ndarray  # (N, size, size, 3) uint8
    depths: np.ndarray | None = None  # (N, size, size) float16 metres (when the world renders depth)

    @property
    def current(self) -> Pose:
        return self.poses[-1]


@dataclass
class GroundingTarget:
    """A target reachable from a station's current pose within one clip, centred at `end`."""

    category: str
    instance_id: int
    end: Pose
    route_xz: np.ndarray  # intermediate route points between the current pose and `end`
    box: Box2D  # ground-truth box at `end`, model resolution
    end_rgb: np.ndarray  # (size, size, 3) render at `end`


_REACHABLE: dict[tuple[int, int], dict[str, list[int]]] = {}


def reachable_instances(world: Any) -> dict[str, list[int]]:
    """category → instance ids with view points in the largest navigable component (cached per scene)."""
    key = (int(world.assets.seed), id(world.assets))
    if key not in _REACHABLE:
        out: dict[str, list[int]] = {}
        for o in world.scene.objects:
            if len(world.assets.reachable_view_points(o.instance_id)):
                out.setdefault(o.category, []).append(o.instance_id)
        _REACHABLE.clear()  # one scene at a time
        _REACHABLE[key] = out
    return _REACHABLE[key]


def _resize(rgb: np.ndarray, size: int) -> np.ndarray:
    return rgb if rgb.shape[0] == size else cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)


def find_target(world: Any, start: Pose, category: str, cfg: ClipGenConfig) -> GroundingTarget | None:
    """The nearest (geodesic) instance of `category` from `start`, if one clip can reach its
    centring pose (≤ max_step_m / max_turn_deg per frame) and it is centred there (IF, γ) with at
    least min_target_pixels visible."""
    from envs.embedded.errors import NoReachableTargetError

    ids = reachable_instances(world).get(category, [])
    if not ids:
        return None
    s_xz = _xz(start)
    dists = [world.navgrid.geodesic_distance(s_xz, world.view_points(i)) for i in ids]
    iid = int(ids[int(np.argmin(dists))])
    try:
        end = world.centring_pose(iid, from_xz=s_xz, pitch=True)
    except NoReachableTargetError:
        return None
    route = world.navgrid.shortest_path(s_xz, _xz(end))
    inner = route[1:-1] if len(route) > 2 else np.zeros((0, 2))
    if route_cost(start, inner, end, cfg.turn_cost) > (cfg.path_frames - 1) * cfg.max_step_m + 1e-6:
        return None
    box, rgb = target_box(world, end, iid, min_pixels=cfg.min_target_pixels)
    if box is None:
        return None
    box = box.scaled(cfg.size / world.width)
    if not centred(box, cfg.size, cfg.size, cfg.gamma):
        return None
    return GroundingTarget(category, iid, end, inner, box, _resize(rgb, cfg.size))


def _pick_category(world: Any, rng: np.random.Generator) -> str | None:
    from envs.embedded.categories import OBJECTNAV_CATEGORIES

    cats = sorted(reachable_instances(world))
    if not cats:
        return None
    w = np.array([2.0 if c in OBJECTNAV_CATEGORIES else 1.0 for c in cats])
    return cats[int(rng.choice(len(cats), p=w / w.sum()))]


def make_station(world: Any, rng: np.random.Generator, cfg: ClipGenConfig, with_target: bool = True,
                 category: str | None = None, out_of_view: bool = False) -> tuple[Station, GroundingTarget | None]:
    """A station (look-around at P0, maybe a walk) and, if `with_target`, a grounding target the
    current pose can reach in one clip. Stations are drawn near a random instance of a random
    category: without a walk P0 is within approach_m of its view points; with a walk P0 is farther
    and the agent walks the shortest route toward it (so the context holds the way there, as in the
    receding-horizon loop). `category` fixes the target category (else a random reachable one,
    ObjectNav categories twice as likely). (station, None) when no target passes in max_tries draws.
    `out_of_view`: only a station whose current view shows no instance of the category while an older frame
    of the agent's context pick (`agent_context`) shows the target passes (out_of_view_tries draws)."""
    g = world.navgrid
    h = float(world.cfg.sensor_height)
    tries = (cfg.out_of_view_tries if out_of_view else cfg.max_tries) if with_target else 1
    for _ in range(tries):
        cat = (category or _pick_category(world, rng)) if with_target else None
        poses: list[Pose]
        if cat is not None and reachable_instances(world).get(cat):
            ids = reachable_instances(world)[cat]
            vp = world.view_points(int(ids[int(rng.integers(len(ids)))]))
            dist = g.distance_field(vp)[0]
            walk = rng.random() < cfg.walk_prob
            d_s = float(rng.uniform(0.0, cfg.approach_m))
            walk_len = float(rng.uniform(0.5, cfg.max_walk_frames * WALK_STEP_M)) if walk else 0.0
            lo, hi = (d_s + walk_len - 0.3, d_s + walk_len + 0.3) if walk else (0.0, cfg.approach_m)
            cells = np.argwhere(g.navigable & np.isfinite(dist) & (dist >= lo) & (dist <= hi))
            if len(cells) == 0:
                continue
            iz, ix = cells[int(rng.integers(len(cells)))]
            p0_xz = g.cell_centre(int(iz), int(ix))
            p0 = Pose((float(p0_xz[0]), h, float(p0_xz[1])), float(rng.uniform(-math.pi, math.pi)))
            poses = lookaround_poses(p0)
            if walk:
                pts, heading = cut_polyline(g.shortest_path(p0_xz, vp), walk_len)
                if len(pts) >= 2:
                    end = Pose((float(pts[-1][0]), h, float(pts[-1][1])), heading)
                    poses += walk_poses(p0, pts[1:-1], end, cfg.max_walk_frames)
            target = find_target(world, poses[-1], cat, cfg)
            if target is None:
                continue
            if out_of_view and not target_out_of_view(world, poses, target, cfg):
                continue
            return Station(poses, *render_rgbd(world, poses, cfg.size)), target
    # navigation-only station (or no grounding target found): look-around anywhere, maybe a random walk
    p0_xz = g.sample_navigable(rng)
    p0 = Pose((float(p0_xz[0]), h, float(p0_xz[1])), float(rng.uniform(-math.pi, math.pi)))
    poses = lookaround_poses(p0)
    if rng.random() < cfg.walk_prob:
        pts, heading = cut_polyline(g.shortest_path(p0_xz, g.sample_navigable(rng)),
                                    float(rng.uniform(0.5, cfg.max_walk_frames * WALK_STEP_M)))
        if len(pts) >= 2:
            end = Pose((float(pts[-1][0]), h, float(pts[-1][1])), heading)
            poses += walk_poses(p0, pts[1:-1], end, cfg.max_walk_frames)
    return Station(poses, *render_rgbd(world, poses, cfg.size)), None


def agent_context(poses: list[Pose], max_context: int) -> np.ndarray:
    """Source indices the agent's memory picks as context from a stream at `poses` (`Memory.select_indices`,
    pose coverage only: no frame is needed), current view last."""
    from models.memory import Memory, MemoryConfig

    blank = np.zeros((len(poses), 1, 1, 3), np.uint8)
    return Memory.of(blank, poses, MemoryConfig(max_context=max_context)).select_indices(min(max_context, len(poses)))


def target_out_of_view(world: Any, poses: list[Pose], target: GroundingTarget, cfg: ClipGenConfig) -> bool:
    """No instance of the target's category in the current view (the last pose), and the target itself seen in
    an older frame of the agent's context pick: a case only context use can solve."""
    if category_in_view(world, poses[-1], target.category, cfg.min_target_pixels):
        return False
    older = [poses[i] for i in agent_context(poses, cfg.context_frames)[:-1]]
    return instance_seen(world, older, target.instance_id, cfg.min_target_pixels)


def select_context(station: Station, rng: np.random.Generator, cfg: ClipGenConfig) -> np.ndarray:
    """Source indices of the context: the agent's pose-coverage pick, or a random sparse subset;
    sorted, always ending with the current view."""
    n_src = len(station.poses)
    if rng.random() < cfg.fps_context_prob:
        return agent_context(station.poses, cfg.context_frames)
    n = int(rng.integers(cfg.min_context_frames, cfg.context_frames + 1))
    if n_src <= n:
        return np.arange(n_src, dtype=np.int64)
    rest = rng.choice(n_src - 1, size=n - 1, replace=False)
    return np.sort(np.concatenate([rest, [n_src - 1]])).astype(np.int64)


def context_geometry(station: Station, ctx_idx: np.ndarray) -> dict[str, np.ndarray | None]:
    """The context frames' camera-to-world poses and depth maps (a Clip's context_poses / context_depth)."""
    poses = np.stack([pose_to_matrix(station.poses[i]) for i in ctx_idx]).astype(np.float32)
    depth = None if station.depths is None else station.depths[ctx_idx]
    return {"context_poses": poses, "context_depth": depth}


def grounding_clip(world: Any, station: Station, target: GroundingTarget, ctx_idx: np.ndarray, cfg: ClipGenConfig,
                   scene_seed: int) -> Clip:
    """Path frames from the current view to the centred view, then the red-box frames."""
    from envs.embedded.categories import category_phrase

    poses = route_poses(station.current, target.route_xz, target.end, cfg.path_frames, cfg.turn_cost)
    frames = render_rgb(world, poses[1:-1], cfg.size)
    b = target.box
    xyxy = np.array([b.x0, b.y0, b.x1, b.y1], dtype=np.float32)
    boxed = [draw_red_box(target.end_rgb, xyxy)] * cfg.box_frames
    return Clip(
        mode="grounding", context_frames=station.frames[ctx_idx], context_indices=ctx_idx,
        target_frames=np.stack([station.frames[-1], *frames, target.end_rgb, *boxed]),
        target_poses=np.stack([pose_to_matrix(p) for p in poses + [target.end] * cfg.box_frames]).astype(np.float32),
        instruction=grounding_instruction(world.scene.scene_phrase(), category_phrase(target.category)),
        num_box_frames=cfg.box_frames, target_box=xyxy, scene_seed=int(scene_seed), category=target.category,
        instance_id=target.instance_id, **context_geometry(station, ctx_idx))


def navigation_clip(world: Any, station: Station, ctx_idx: np.ndarray, rng: np.random.Generator, cfg: ClipGenConfig,
                    scene_seed: int) -> Clip:
    poses = nav_path(world, station.current, cfg.nav_frames, rng, cfg.nav_max_forward, cfg.nav_max_yaw_deg,
                     cfg.nav_min_turn_deg)
    frames = render_rgb(world, poses[1:], cfg.size)
    return Clip(
        mode="navigation", context_frames=station.frames[ctx_idx], context_indices=ctx_idx,
        target_frames=np.concatenate([station.frames[-1:], frames]),
        target_poses=np.stack([pose_to_matrix(p) for p in poses]).astype(np.float32),
        scene_seed=int(scene_seed), **context_geometry(station, ctx_idx))


def clip_modes(cfg: ClipGenConfig) -> list[str]:
    """Mode of each clip index of a scene (both: grounding, navigation, grounding, ...)."""
    if cfg.modes == "both":
        return ["grounding" if k % 2 == 0 else "navigation" for k in range(cfg.clips_per_scene)]
    return [cfg.modes] * cfg.clips_per_scene


def scene_clips(world: Any, scene_seed: int, cfg: ClipGenConfig) -> tuple[list[Clip], int]:
    """All clips of one scene; (clips, rejected grounding clips). Clip k uses station k // 2 with
    `both` (the grounding and the navigation clip of a station share its stream), else station k."""
    world.load_scene(int(scene_seed))
    modes = clip_modes(cfg)
    per_station = 2 if cfg.modes == "both" else 1
    clips: list[Clip] = []
    rejected = 0
    for st in range((len(modes) + per_station - 1) // per_station):
        rng = np.random.default_rng([int(cfg.seed), int(scene_seed), st])
        ks = range(st * per_station, min(len(modes), (st + 1) * per_station))
        grounding = any(modes[k] == "grounding" for k in ks)
        away = grounding and cfg.out_of_view_prob > 0 and rng.random() < cfg.out_of_view_prob  # no draw at 0
        station, target = make_station(world, rng, cfg, with_target=grounding, out_of_view=away)
        for k in ks:
            # an out-of-view station keeps the pick its target was seen in (a random subset might drop it)
            ctx = agent_context(station.poses, cfg.context_frames) if away else select_context(station, rng, cfg)
            if modes[k] == "grounding":
                if target is None:
                    rejected += 1
                    continue
                clips.append(grounding_clip(world, station, target, ctx, cfg, scene_seed))
            else:
                clips.append(navigation_clip(world, station, ctx, rng, cfg, scene_seed))
    return clips, rejected


# ------------------------------------------------------------------------------------ workers
_WORLD: Any = None


def _worker_world(cfg: ClipGenConfig, first_scene: int) -> Any:
    global _WORLD
    if _WORLD is None:
        from envs.embedded.config import WorldConfig
        from envs.embedded.world import EmbeddedWorld

        _WORLD = EmbeddedWorld(WorldConfig(width=cfg.render_size, height=cfg.render_size, hfov_deg=cfg.hfov_deg,
                                           render_depth=True, render_semantic=False), scene_seed=first_scene)
    return _WORLD


def _run_task(args: tuple[dict, list[int], str]) -> dict:
    """One shard: render the clips of its scenes and write them (runs in a worker process or Ray task)."""
    cfg_d, scene_seeds, shard_path = args
    os.environ.setdefault("MUJOCO_GL", "egl")
    cfg = ClipGenConfig(**cfg_d)
    from models.clipstore import write_shard

    world = _worker_world(cfg, scene_seeds[0])
    t0 = time.perf_counter()
    clips: list[Clip] = []
    rejected = 0
    for s in scene_seeds:
        c, r = scene_clips(world, s, cfg)
        clips += c
        rejected += r
    if clips:
        write_shard(clips, shard_path)
    counts = {m: sum(c.mode == m for c in clips) for m in ("grounding", "navigation")}
    return {"shard": Path(shard_path).name, "scenes": scene_seeds, "clips": len(clips), "rejected": rejected,
            "seconds": time.perf_counter() - t0, **counts}


def generate(cfg: ClipGenConfig, progress: bool = True) -> dict:
    """Write the shards of `cfg` (skipping shards already on disk, so an interrupted run resumes) and
    a manifest.json; returns the manifest. A shard whose task fails twice is listed under `failed`
    (by shard name) while the others finish."""
    from models.executor import run_tasks

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = split_seeds(cfg.split)[cfg.scene_offset : cfg.scene_offset + cfg.scenes]
    per_shard = max(1, cfg.shard_clips // cfg.clips_per_scene)
    tasks = {}
    for i in range(0, len(seeds), per_shard):
        group = seeds[i : i + per_shard]
        path = out / f"{cfg.split}-{group[0]:06d}-{group[-1]:06d}"
        if path.with_suffix(".json").exists() and path.with_suffix(".safetensors").exists():
            continue
        tasks[path.name] = (asdict(cfg), group, str(path))
    t0 = time.perf_counter()
    done, failed = run_tasks(_run_task, tasks, executor=cfg.executor, num_workers=cfg.num_workers,
                             ray_address=cfg.ray_address, desc=f"shards {cfg.split}", progress=progress)
    results = list(done.values())
    manifest_path = out / "manifest.json"
    old = json.loads(manifest_path.read_text()).get("shards", []) if manifest_path.exists() else []
    shards = sorted([r for r in old if r["shard"] not in done] + results, key=lambda r: r["shard"])
    manifest = {
        "config": asdict(cfg), "shards": shards,
        "clips": sum(r["clips"] for r in shards), "grounding": sum(r.get("grounding", 0) for r in shards),
        "navigation": sum(r.get("navigation", 0) for r in shards), "rejected": sum(r["rejected"] for r in shards),
        "failed": {f.id: f.error for f in failed}, "seconds_this_run": time.perf_counter() - t0,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = ClipGenConfig.from_argv(argv)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        m = generate(cfg)
    except ValueError as e:  # ExecutorError: Ray missing or unreachable
        print(f"models.data: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: m[k] for k in ("clips", "grounding", "navigation", "rejected", "failed", "seconds_this_run")}))
    return 1 if m["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
