"""Transitions (anchor view, action program, max-displacement endpoint view) from the simulator or
from the imagination, with everything the task builders need to write answers.

simulated: the endpoint image is a MuJoCo render at the commanded endpoint pose; answers are
ground truth. imagined: the endpoint image is a frame of `ImaginationPipeline.navigate` along the
commanded waypoints; answers come from the read-back: the camera path read from the imagined video
(planners.readback.flow_path, with the anchor's real depth for scale) and object boxes obtained by
projecting the scene's objects into the view at the read-back pose (an instance render there, so
occlusion and leaving the view are handled). Template matching (cv2.matchTemplate) of the source crop
was not used: at 64 px and under the large viewpoint changes of max-displacement pairing the object
changes scale and often leaves the view, which a fixed template cannot follow.
Ground truth (boxes and motion at the commanded pose) is kept next to the read-back for flagging.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np

from envs.config import check_at_least
from envs.geometry import intrinsics_from_hfov, matrix_to_pose, pose_to_matrix
from envs.types import Pose
from v4s_agent.qa.actions import (
    ActionSpace,
    Motion,
    Program,
    compose,
    frame_poses,
    max_displacement_index,
    prefix_at,
    waypoints,
)
from v4s_agent.qa.boxes import BoxFilter, NormBox, normalise

log = logging.getLogger(__name__)
Source = Literal["simulated", "imagined"]


@dataclass(frozen=True)
class ObjectView:
    """One object instance as seen in a view: normalised box, visible pixel share, filter verdict."""

    instance_id: int
    category: str
    box: NormBox
    pixel_share: float
    filter_reason: str | None  # None = passes the paper's filter


@dataclass
class Transition:
    """One anchor -> endpoint pair with its answers (from ground truth or from the read-back)."""

    traj_index: int
    scene_seed: int
    source: Source
    commanded: Program  # the sampled program
    program: Program  # the grid prefix actually reached at the paired endpoint (== commanded unless truncated)
    endpoint_frame: int
    num_frames: int
    truncated: bool
    anchor_rgb: np.ndarray
    target_rgb: np.ndarray
    motion_gt: Motion  # commanded anchor -> endpoint motion
    motion_answer: Motion  # == motion_gt (simulated) or the read-back motion (imagined)
    anchor_objects: dict[int, ObjectView]
    target_objects_gt: dict[int, ObjectView]
    target_objects_answer: dict[int, ObjectView]
    readback: dict[str, Any] | None = None  # method, confidence (imagined only)
    anchor_pose: Pose | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceConfig:
    """How transitions are produced. `num_frames` is the trajectory length for the simulated source
    (the imagined one uses the pipeline's); `start_yaw_tries` renders that many headings at the start
    and keeps the one with the most filter-passing objects (D tasks need objects in view)."""

    num_frames: int = 20
    start_yaw_tries: int = 4
    context_views: int = 12
    readback: Literal["flow", "idm"] = "flow"
    action_space: ActionSpace = field(default_factory=ActionSpace)
    box_filter: BoxFilter = field(default_factory=BoxFilter)

    def __post_init__(self) -> None:
        if self.num_frames < 8:
            raise ValueError(f"num_frames must be >= 8 (paper: trajectories have at least 8 frames), got {self.num_frames}")
        check_at_least(self, start_yaw_tries=1, context_views=1)
        if self.readback not in ("flow", "idm"):
            raise ValueError(f"readback must be 'flow' or 'idm', got {self.readback!r}")


class SkipTrajectory(Exception):
    """This trajectory yields no pair (reason in args[0]); the exporter counts it and moves on."""


def object_views(world, semantic: np.ndarray, box_filter: BoxFilter) -> dict[int, ObjectView]:
    """Per visible instance: normalised box, pixel share and filter verdict."""
    H, W = semantic.shape
    counts = np.bincount(semantic.ravel())
    out = {}
    for b in world.gt_boxes(semantic):
        nb = normalise(b, W, H)
        out[b.instance_id] = ObjectView(b.instance_id, b.label, nb, float(counts[b.instance_id]) / (H * W),
                                        box_filter.reason(nb, b.score))
    return out


def _frames_valid(world, anchor: Pose, poses_rel: np.ndarray) -> np.ndarray:
    """A frame is valid if its camera stands on the navigable grid and the move from the previous
    frame is collision-free (cameras inside walls or furniture see nothing meaningful)."""
    T0 = pose_to_matrix(anchor)
    xz = [(T0 @ T)[[0, 2], 3] for T in poses_rel]
    ok = np.zeros(len(xz), dtype=bool)
    ok[0] = world.navgrid.is_navigable(xz[0])
    for i in range(1, len(xz)):
        ok[i] = ok[i - 1] and world.navgrid.is_navigable(xz[i]) and world.navgrid.segment_free(xz[i - 1], xz[i])
    return ok


def _program_group(tasks_needed: list[str], traj_index: int) -> str:
    """Which program family this trajectory samples: cycle through the families whose A-task still
    needs records (D tasks take any family)."""
    fams = [g for g, t in (("translation", "A1"), ("rotation", "A2"), ("multi", "A3")) if t in tasks_needed]
    if not fams:
        fams = ["translation", "rotation", "multi2"]  # D3 wants 1-2 steps
    return fams[traj_index % len(fams)]


class SimulatedSource:
    """Endpoint = a MuJoCo render at the commanded pose; answers are ground truth."""

    source: Source = "simulated"

    def __init__(self, world, cfg: SourceConfig | None = None) -> None:
        self.world = world
        self.cfg = cfg or SourceConfig()

    @property
    def num_frames(self) -> int:
        return self.cfg.num_frames

    def _start(self, rng: np.random.Generator) -> tuple[Pose, Any]:
        w = self.world
        xz = w.navgrid.sample_navigable(rng)
        best = None
        for _ in range(self.cfg.start_yaw_tries):
            yaw = math.radians(10.0 * int(rng.integers(36)))
            pose = Pose((float(xz[0]), float(w.cfg.sensor_height), float(xz[1])), float(np.arctan2(np.sin(yaw), np.cos(yaw))))
            obs = w.render_at(pose)
            n = sum(v.filter_reason is None for v in object_views(w, obs.semantic, self.cfg.box_filter).values())
            if best is None or n > best[0]:
                best = (n, pose, obs)
        return best[1], best[2]

    def _pair(self, traj_index: int, scene_seed: int, rng: np.random.Generator, tasks_needed: list[str]):
        w = self.world
        w.load_scene(scene_seed)
        anchor, anchor_obs = self._start(rng)
        commanded = self.cfg.action_space.sample(_program_group(tasks_needed, traj_index), rng)
        poses_rel, where = frame_poses(commanded, self.num_frames)
        valid = _frames_valid(w, anchor, poses_rel)
        k = max_displacement_index(poses_rel, valid)
        if k == 0:
            raise SkipTrajectory("no_valid_motion")
        program = commanded if k == self.num_frames - 1 else prefix_at(commanded, where[k])
        if not program:
            raise SkipTrajectory("no_valid_motion")
        return anchor, anchor_obs, commanded, program, poses_rel, k

    def make(self, traj_index: int, scene_seed: int, rng: np.random.Generator, tasks_needed: list[str]) -> Transition:
        w, bf = self.world, self.cfg.box_filter
        anchor, anchor_obs, commanded, program, _, k = self._pair(traj_index, scene_seed, rng, tasks_needed)
        T = compose(program)
        end = matrix_to_pose(pose_to_matrix(anchor) @ T)
        end_obs = w.render_at(end)
        mot = Motion.from_matrix(T)
        a_obj = object_views(w, anchor_obs.semantic, bf)
        t_obj = object_views(w, end_obs.semantic, bf)
        return Transition(traj_index, scene_seed, "simulated", commanded, program, k, self.num_frames,
                          program != commanded, anchor_obs.rgb, end_obs.rgb, mot, mot, a_obj, t_obj, t_obj,
                          None, anchor)


class ImaginedSource(SimulatedSource):
    """Endpoint = a frame imagined along the commanded waypoints; answers from the read-back."""

    source: Source = "imagined"

    def __init__(self, world, pipeline, cfg: SourceConfig | None = None) -> None:
        super().__init__(world, cfg)
        self.pipeline = pipeline

    @property
    def num_frames(self) -> int:
        return int(self.pipeline.num_frames)

    def _context(self, anchor: Pose):
        from models.types import VideoContext

        n = self.cfg.context_views
        poses = [Pose(anchor.position, float(anchor.yaw + 2 * math.pi * (i + 1) / n)) for i in range(n)]
        poses[-1] = anchor  # a look-around ending on the current view
        frames = [self.world.render_at(p, semantic=False).rgb for p in poses]
        return VideoContext(np.stack(frames), np.arange(n), np.stack([pose_to_matrix(p) for p in poses]))

    def _readback(self, frames: np.ndarray, depth: np.ndarray):
        from planners.readback import read_back

        H, W = frames.shape[1:3]
        return read_back(self.cfg.readback, frames, depth, intrinsics_from_hfov(self.world.hfov_deg, W, H))

    def make(self, traj_index: int, scene_seed: int, rng: np.random.Generator, tasks_needed: list[str]) -> Transition:
        w, bf = self.world, self.cfg.box_filter
        anchor, anchor_obs, commanded, program, poses_rel, k = self._pair(traj_index, scene_seed, rng, tasks_needed)
        video = self.pipeline.navigate(self._context(anchor), waypoints(poses_rel), num_samples=1,
                                       seed=int(rng.integers(2**31 - 1)))
        frames = video.frames[0]
        H, W = frames.shape[1:3]
        path = self._readback(frames[: k + 1], anchor_obs.depth)
        T_rb = path.poses_rel[k]
        rb_pose = matrix_to_pose(pose_to_matrix(anchor) @ T_rb)
        rb_pose = Pose(rb_pose.position, rb_pose.yaw, 0.0)  # planar read-back; no pitch drift into boxes
        T_gt = poses_rel[k]
        gt_obs = w.render_at(matrix_to_pose(pose_to_matrix(anchor) @ T_gt))
        rb_obs = w.render_at(rb_pose)
        anchor_small = cv2.resize(anchor_obs.rgb, (W, H), interpolation=cv2.INTER_AREA)
        return Transition(
            traj_index, scene_seed, "imagined", commanded, program, k, self.num_frames, program != commanded,
            anchor_small, frames[k].copy(), Motion.from_matrix(T_gt), Motion.from_matrix(T_rb),
            object_views(w, anchor_obs.semantic, bf), object_views(w, gt_obs.semantic, bf),
            object_views(w, rb_obs.semantic, bf),
            {"method": path.method, "confidence": round(float(path.confidence), 4), "box": "instance render at read-back pose"},
            anchor, {"imagine_seconds": round(float(video.seconds), 3)})
