"""Per-episode recordings people can watch: a Rerun `.rrd` and an MP4 (or GIF) episode video.

Both are `EpisodeObserver`s of the agent loop (they watch, never drive) built on `EpisodeTrack`,
which keeps what both draw: the executed path, the latest plan's imagined clip with its read-back
box and path, the agent's goal and per-step metrics. Files are named by the same episode id as the
results line, with a numeric suffix rather than overwriting an existing file.

- Rerun: a blueprint (egocentric RGB | depth, the imagined clip, the 3D world with the scene mesh,
  the top-down map, metric plots), overlays cleared once they no longer apply, per-step scalars,
  depth as uint16 millimetres and colour images as JPEG (the `.rrd` is a few MB, not tens).
  rerun-sdk is optional: without it a warning is printed once and no `.rrd` is written.
- Video: habitat-lab style frames, egocentric | imagined clip | top-down map over a text strip
  (step, target, planner note, running metrics); success and SPL go in the file name.
"""
from __future__ import annotations

import logging
import math
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from envs.base import NavEnv, intrinsics_of
from envs.geometry import pose_rotation
from envs.types import Episode, Observation, Pose
from planners.base import Plan

log = logging.getLogger(__name__)
_WARNED_NO_RERUN = False

# RGB colours shared by the map legend, the 3D view and the video
TARGET_COLOUR = (255, 60, 60)
EXEC_COLOUR = (60, 160, 255)
PLAN_COLOUR = (255, 200, 0)
GOAL_COLOUR = (40, 220, 90)
BOX_COLOUR = (0, 255, 0)
PATH_COLOURS = {"true": (60, 220, 90), "estimate": (230, 80, 230)}  # world/paths/<name>
RERUN_MODES = ("save", "spawn", "connect", "none")
VIDEO_FORMATS = ("mp4", "gif", "none")
VIEWER_PORT = 9876
DEFAULT_RERUN_URL = f"rerun+http://127.0.0.1:{VIEWER_PORT}/proxy"


def _rerun() -> Any | None:
    global _WARNED_NO_RERUN
    try:
        import rerun as rr

        return rr
    except ImportError:
        if not _WARNED_NO_RERUN:
            _WARNED_NO_RERUN = True
            warnings.warn("rerun-sdk is not installed: skipping .rrd recordings (pip install 'v4s-agent[viz]')", stacklevel=2)
        return None


def viewer_executable() -> str:
    """The viewer rerun-sdk installs: on PATH, else beside this Python (the environment not activated:
    `.venv/bin/python -m v4s_agent.run rerun=spawn`)."""
    beside = Path(sys.executable).with_name("rerun")
    return shutil.which("rerun") or str(beside)


def viewer_command(port: int = VIEWER_PORT) -> list[str]:
    """The local viewer, listening on loopback only. `rr.spawn` cannot pass `--bind`, and the viewer's
    default (0.0.0.0) would let anyone on the network stream into it, so `spawn_viewer` starts it itself."""
    return [viewer_executable(), "--port", str(port), "--bind", "127.0.0.1", "--expect-data-soon"]


def spawn_viewer(port: int = VIEWER_PORT) -> None:
    """Start the local viewer unless one already listens on the port (as `rr.spawn` does), detached so that
    it outlives the run."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return
    subprocess.Popen(viewer_command(port), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


def safe_name(s: str) -> str:
    """A file-name-safe spelling of an episode id (the id itself stays in results.jsonl)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(s))


def unused_path(path: Path) -> Path:
    """`path`, or `stem-2.ext`, `stem-3.ext`, ... : recordings are never overwritten."""
    k = 2
    out = path
    while out.exists():
        out = path.with_name(f"{path.stem}-{k}{path.suffix}")
        k += 1
    return out


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


# ------------------------------------------------------------------------------ shared state
class TopDownMap:
    """The env's navigation grid as an RGB image with world (x, z) -> pixel (u, v)."""

    def __init__(self, grid: Any) -> None:
        img = np.asarray(grid.to_image())
        grey = (img.astype(np.float32) / max(float(img.max()), 1.0) * 200 + 40).astype(np.uint8)
        self.image = np.repeat(grey[..., None], 3, axis=2)
        self.origin, self.res = np.asarray(grid.origin, dtype=np.float64), float(grid.res)

    @classmethod
    def of(cls, env: NavEnv) -> TopDownMap | None:
        grid = getattr(env, "navgrid", None)
        if grid is None or not hasattr(grid, "to_image") or not hasattr(grid, "origin"):
            return None
        return cls(grid)

    def uv(self, xyz: Any) -> tuple[float, float]:
        p = np.asarray(xyz, dtype=np.float64)
        return float((p[0] - self.origin[0]) / self.res), float((p[2] - self.origin[1]) / self.res)


class EpisodeTrack:
    """What the recorders show, updated by the agent loop's observer calls."""

    def __init__(self, out_dir: Path, suffix: str) -> None:
        self.out_dir, self.suffix = Path(out_dir), suffix
        self.path: Path | None = None
        self.seconds = 0.0  # wall time spent recording (the cost this recorder adds to an episode)

    # --- observer ----------------------------------------------------------------------------
    def on_start(self, env: NavEnv, episode: Episode) -> None:
        t0 = time.perf_counter()
        self.env, self.episode = env, episode
        self.path = unused_path(self.out_dir / f"episode_{safe_name(episode.episode_id)}{self.suffix}")
        self.K_env = intrinsics_of(env)
        self.map = TopDownMap.of(env)
        self.executed: list[list[float]] = []
        self.heading: np.ndarray | None = None
        self.targets = self._target_boxes(env, episode)
        self.plan: Plan | None = None
        self.plan_step = 0
        self.clip: np.ndarray | None = None  # (F, H, W, 3) the executed sample's imagined video
        self.box: Any = None  # its read-back box (on the last frame)
        self.path_rel: np.ndarray | None = None  # (F, 4, 4) its read-back path
        self.goal: np.ndarray | None = None  # where the agent is heading (world xyz)
        self.box_score = math.nan
        self.step = 0
        self.metrics: dict[str, float] = {}
        self.start(env, episode)
        self.seconds += time.perf_counter() - t0

    def on_observation(self, step: int, obs: Observation) -> None:
        t0 = time.perf_counter()
        self.step = step
        if obs.pose is not None:
            self.executed.append([float(v) for v in obs.pose.xyz])
            self.heading = np.asarray(obs.pose.forward, dtype=np.float64)
        m = self.env.metrics() if hasattr(self.env, "metrics") else None
        if m is not None:
            self.metrics = {k: _num(getattr(m, k, None)) for k in ("success", "spl", "soft_spl", "distance_to_goal", "path_length")}
        self.observe(step, obs)
        self.seconds += time.perf_counter() - t0

    def on_plan(self, step: int, plan: Plan) -> None:
        t0 = time.perf_counter()
        self.plan, self.plan_step = plan, step
        self.clip, self.box, self.path_rel, self.box_score = None, None, None, math.nan
        if plan.videos:
            vi, si = plan.chosen if plan.chosen else (0, 0)
            vi = min(vi, len(plan.videos) - 1)
            frames = np.asarray(plan.videos[vi].frames)
            if frames.dtype == np.uint8 and frames.ndim == 5:
                self.clip = frames[min(si, len(frames) - 1)]
            samples = plan.samples[vi] if vi < len(plan.samples) else []
            if si < len(samples):
                self.box, self.path_rel = samples[si].box, samples[si].poses_rel
            scores = [d.box.score for s in plan.samples for d in s if d.box is not None]
            self.box_score = float(self.box.score) if self.box is not None else (max(scores) if scores else math.nan)
        if plan.target_world is not None:
            self.goal = np.asarray(plan.target_world, dtype=np.float64).reshape(3)
        elif plan.path_world:
            self.goal = np.asarray(plan.path_world[-1].xyz, dtype=np.float64)
        self.show_plan(step, plan)
        self.seconds += time.perf_counter() - t0

    def on_end(self, result: Any) -> None:
        t0 = time.perf_counter()
        m = result.metrics
        self.metrics = {k: _num(getattr(m, k, None)) for k in ("success", "spl", "soft_spl", "distance_to_goal", "path_length")}
        try:
            self.finish(result)
        except Exception as e:  # a recording problem never costs the episode its results line
            log.warning("could not finish %s: %s", self.path, e)
        self.seconds += time.perf_counter() - t0
        self.close()

    # --- hooks --------------------------------------------------------------------------------
    def start(self, env: NavEnv, episode: Episode) -> None: ...

    def observe(self, step: int, obs: Observation) -> None: ...

    def show_plan(self, step: int, plan: Plan) -> None: ...

    def finish(self, result: Any) -> None: ...

    def close(self) -> None: ...

    # --- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _target_boxes(env: NavEnv, episode: Episode) -> list[tuple[np.ndarray, np.ndarray]]:
        objs = getattr(getattr(env, "scene", None), "objects", None) or []
        ids = set(episode.target_instance_ids)
        return [(np.asarray(o.aabb_min, dtype=np.float64), np.asarray(o.aabb_max, dtype=np.float64))
                for o in objs if getattr(o, "instance_id", None) in ids]

    def clip_frame(self, step: int) -> tuple[np.ndarray | None, int]:
        """The imagined frame to show at `step`: the clip plays over the plan's actions, so it reaches
        its last frame (the one with the box) as the plan's last action is taken."""
        if self.clip is None:
            return None, -1
        n = max(1, len(self.plan.actions) if self.plan is not None else 1)
        k = min(len(self.clip) - 1, round(max(step - self.plan_step, 0) * (len(self.clip) - 1) / n))
        return self.clip[k], k

    def readback_uv(self, k: int, height: int, width: int) -> np.ndarray | None:
        """The read-back path's floor points seen from imagined frame k, in that frame's pixels."""
        if self.path_rel is None or self.clip is None or len(self.path_rel) < 2:
            return None
        T = np.asarray(self.path_rel, dtype=np.float64)
        k = min(k, len(T) - 1)
        h = self.executed[-1][1] if self.executed else 0.88
        pts = T[:, :3, 3] - np.array([0.0, h, 0.0])  # on the floor, in the plan's camera
        Tk = np.linalg.inv(T[k])
        pc = pts @ Tk[:3, :3].T + Tk[:3, 3]
        z = -pc[:, 2]
        K = self.K_env * np.array([[width / self.env.width], [height / self.env.height], [1.0]])
        keep = z > 0.05
        if keep.sum() < 2:
            return None
        u = K[0, 0] * pc[keep, 0] / z[keep] + K[0, 2]
        v = -K[1, 1] * pc[keep, 1] / z[keep] + K[1, 2]
        # points below the frame (the floor under the camera) are clamped to its edge: the overlay never
        # grows the view beyond the image
        return np.stack([np.clip(u, 0, width), np.clip(v, 0, height)], axis=1)


# ------------------------------------------------------------------------------------- Rerun
def contact_sheet(videos: np.ndarray, max_cols: int = 8) -> np.ndarray:
    """(S, F, H, W, 3) -> one image: a row per sample, up to `max_cols` evenly spaced frames (last kept)."""
    S, F = videos.shape[:2]
    cols = np.unique(np.linspace(0, F - 1, min(F, max_cols)).round().astype(int))
    rows = [np.concatenate([videos[s, c] for c in cols], axis=1) for s in range(S)]
    return np.concatenate(rows, axis=0)


def episode_blueprint(has_depth: bool = True, bounds: tuple[float, float, float, float] | None = None) -> Any:
    """Egocentric RGB and depth side by side first, then the imagined clip, the 3D world (looking
    down into the scene's floor-plane `bounds` when known), the map, the plots."""
    import rerun.blueprint as rrb

    top = [rrb.Spatial2DView(name="egocentric RGB", origin="world/camera/image", contents=["$origin/rgb"])]
    if has_depth:
        top.append(rrb.Spatial2DView(name="depth", origin="world/camera/image", contents=["$origin/depth"]))
    top.append(rrb.Tabs(rrb.Spatial2DView(name="imagined clip", origin="imagination"),
                        rrb.Spatial2DView(name="all samples", origin="imagination_samples")))
    plots = rrb.Vertical(
        rrb.TimeSeriesView(name="distance to goal, path length (m)", origin="metrics", contents=["$origin/distance_to_goal", "$origin/path_length"]),
        rrb.TimeSeriesView(name="success, SPL, Soft-SPL, box score", origin="metrics", contents=["$origin/success", "$origin/spl", "$origin/soft_spl", "$origin/box_score"]),
    )
    maps = rrb.Tabs(rrb.Spatial2DView(name="map: path (blue), target (red), goal (green)", origin="map"),
                    rrb.Spatial2DView(name="agent's map", origin="agent_map"))
    bottom = rrb.Horizontal(
        rrb.Spatial3DView(name="3D world", origin="world", eye_controls=_eye(bounds)),
        maps,
        plots,
        column_shares=[3, 2, 2],
    )
    return rrb.Blueprint(rrb.Vertical(rrb.Horizontal(*top), bottom, row_shares=[1, 1]), rrb.SelectionPanel(state="collapsed"),
                         rrb.BlueprintPanel(state="collapsed"), rrb.TimePanel(state="collapsed"), auto_views=False)


def _eye(bounds: tuple[float, float, float, float] | None) -> Any:
    """A 3D eye above the scene, looking down at its centre from the +z side."""
    if bounds is None:
        return None
    import rerun.blueprint as rrb

    x0, z0, x1, z1 = bounds
    cx, cz, r = (x0 + x1) / 2, (z0 + z1) / 2, max(x1 - x0, z1 - z0)
    return rrb.EyeControls3D(position=[cx, 1.1 * r, cz + 0.55 * r], look_target=[cx, 0.0, cz], eye_up=[0.0, 1.0, 0.0])


class RerunRecorder(EpisodeTrack):
    """One `.rrd` per episode; `mode` save | spawn (also a local viewer) | connect (also `url`)."""

    def __init__(self, out_dir: Path, mode: str = "save", url: str = "", app_id: str = "v4s-agent",
                 run_name: str = "", jpeg_quality: int = 90) -> None:
        super().__init__(out_dir, ".rrd")
        self.rr = _rerun()
        self.rec = None
        self.mode, self.url, self.app_id, self.run_name = mode, url or DEFAULT_RERUN_URL, app_id, run_name
        self.jpeg_quality = jpeg_quality
        self._clip_counter = 0
        self._overlays: set[str] = set()

    @property
    def enabled(self) -> bool:
        return self.rec is not None

    def _image(self, img: np.ndarray) -> Any:
        return self.rr.Image(np.ascontiguousarray(img)).compress(jpeg_quality=self.jpeg_quality)

    def start(self, env: NavEnv, episode: Episode) -> None:
        self._paths: dict[str, list[list[float]]] = {}
        if self.rr is None:
            return
        rr = self.rr
        rec = rr.RecordingStream(self.app_id, recording_id=f"{self.run_name}-{episode.episode_id}")
        sinks: list[Any] = [rr.FileSink(str(self.path))]
        if self.mode == "spawn":
            spawn_viewer()
            sinks.append(rr.GrpcSink(DEFAULT_RERUN_URL))
        elif self.mode == "connect":
            sinks.append(rr.GrpcSink(self.url))
        rec.set_sinks(*sinks)
        bounds = getattr(getattr(env, "scene", None), "bounds", None)
        rec.send_blueprint(episode_blueprint(getattr(env, "has_depth", True), bounds))
        self.rec = rec
        rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Y_UP, static=True)
        rec.log("episode", rr.TextDocument(f"episode {episode.episode_id}: find {episode.target_category} "
                                            f"(scene seed {episode.scene_seed}, geodesic start distance "
                                            f"{episode.geodesic_start_distance:.2f} m)"), static=True)
        if self.targets:
            mins = np.array([a for a, _ in self.targets], dtype=np.float32)
            maxs = np.array([b for _, b in self.targets], dtype=np.float32)
            rec.log("world/target", rr.Boxes3D(mins=mins, sizes=maxs - mins, colors=[TARGET_COLOUR],
                                               labels=[episode.target_category] * len(mins)), static=True)
        self._log_scene(env, episode)
        self._log_map(episode)
        rec.log("world/camera/image", rr.Pinhole(image_from_camera=self.K_env, resolution=[env.width, env.height],
                                                 camera_xyz=rr.ViewCoordinates.RUB, image_plane_distance=0.3), static=True)

    def _log_scene(self, env: NavEnv, episode: Episode) -> None:
        """The embedded world's geometry through the glb exporter, ceilings left out so the 3D view
        looks into the rooms (other backends have no mesh here)."""
        scene = getattr(env, "scene", None)
        if scene is None or not hasattr(scene, "parts"):
            return
        try:
            from envs.embedded.export import scene_glb

            self.rec.log("world/scene", self.rr.Asset3D(contents=scene_glb(scene, ceilings=False), media_type="model/gltf-binary"), static=True)
        except Exception as e:  # the mesh is a nice-to-have: never fail an episode over it
            log.info("no scene mesh in the recording: %s", e)

    def _log_map(self, episode: Episode) -> None:
        if self.map is None:
            return
        rr = self.rr
        self.rec.log("map/image", self._image(self.map.image), static=True)
        self.rec.log("map/legend", rr.TextDocument(
            "blue line: executed path · blue dot: agent · red boxes: target · green dot: agent's goal · white dot: start"), static=True)
        if self.targets:
            boxes = [[*self.map.uv(a), *self.map.uv(b)] for a, b in self.targets]
            self.rec.log("map/target", rr.Boxes2D(array=boxes, array_format=rr.Box2DFormat.XYXY, colors=[TARGET_COLOUR], radii=0.6), static=True)
        self.rec.log("map/start", rr.Points2D([self.map.uv(episode.start.xyz)], radii=2.5, colors=[(255, 255, 255)]), static=True)

    def _log_pose(self, pose: Pose) -> None:
        rr = self.rr
        q = pose_rotation(pose).as_quat()  # x, y, z, w
        self.rec.log("world/camera", rr.Transform3D(translation=pose.xyz, quaternion=rr.Quaternion(xyzw=q)))
        if len(self.executed) > 1:
            self.rec.log("world/executed_path", rr.LineStrips3D([self.executed], colors=[EXEC_COLOUR]))
        if self.map is not None:
            uv = [self.map.uv(p) for p in self.executed]
            self.rec.log("map/agent", rr.Points2D([uv[-1]], radii=3.0, colors=[EXEC_COLOUR]))
            if len(uv) > 1:
                self.rec.log("map/path", rr.LineStrips2D([uv], colors=[EXEC_COLOUR], radii=0.6))

    def observe(self, step: int, obs: Observation) -> None:
        if self.rec is None:
            return
        rr, rec = self.rr, self.rec
        rec.set_time("step", sequence=step)
        if obs.pose is not None:
            self._log_pose(obs.pose)
        true = getattr(self.env, "agent_pose", None)  # simulators: the true pose beside the reported one
        if isinstance(true, Pose):
            self._log_path("true", true)
        rec.log("world/camera/image/rgb", self._image(obs.rgb))
        if obs.depth is not None:  # uint16 millimetres: lossless at 1 mm up to 65 m, half of float32
            mm = np.clip(np.nan_to_num(obs.depth, nan=0.0, posinf=0.0) * 1000.0, 0, 65535).astype(np.uint16)
            rec.log("world/camera/image/depth", rr.DepthImage(mm, meter=1000.0))
        for k, v in self.metrics.items():
            if math.isfinite(v):
                rec.log(f"metrics/{k}", rr.Scalars(v))
        if math.isfinite(self.box_score):
            rec.log("metrics/box_score", rr.Scalars(self.box_score))

    def _log_path(self, name: str, pose: Pose) -> None:
        """world/paths/<name>: the true path, and the planner's own pose estimates (pose following:
        the visually corrected one), beside world/executed_path (the pose the env reports)."""
        path = self._paths.setdefault(name, [])
        path.append([float(v) for v in pose.xyz])
        self.rec.log(f"world/paths/{name}", self.rr.LineStrips3D([path], colors=[PATH_COLOURS.get(name, PLAN_COLOUR)]))

    def _overlay(self, path: str, archetype: Any | None) -> None:
        """Log an overlay, or clear it when this plan has none (no stale boxes over a new frame)."""
        if archetype is not None:
            self.rec.log(path, archetype)
            self._overlays.add(path)
        elif path in self._overlays:
            self.rec.log(path, self.rr.Clear(recursive=False))
            self._overlays.discard(path)

    def show_plan(self, step: int, plan: Plan) -> None:
        if self.rec is None:
            return
        rr, rec = self.rr, self.rec
        rec.set_time("step", sequence=step)
        rec.log("metrics/seconds_per_plan", rr.Scalars(plan.seconds))
        rec.log("plan/note", rr.TextLog(plan.note or "(no note)"))
        for name, pose in plan.pose_estimates.items():
            self._log_path(name, pose)
        box = path2d = None
        sheets = [np.asarray(v.frames) for v in plan.videos]
        sheets = [contact_sheet(f) for f in sheets if f.dtype == np.uint8 and f.ndim == 5]
        # every sample of the plan (a row each, up to 8 frames): what the executed clip was chosen from
        if sheets:  # videos of one plan may differ in length or size: pad to one width
            w = max(x.shape[1] for x in sheets)
            sheets = [np.pad(x, ((0, 0), (0, w - x.shape[1]), (0, 0))) for x in sheets]
        self._overlay("imagination_samples/sheet", self._image(np.concatenate(sheets, axis=0)) if sheets else None)
        if self.clip is not None:
            F, H, W = self.clip.shape[:3]
            # every frame of the executed sample, on its own timeline too: the clip plays in the viewer
            for k in range(F):
                rec.set_time("imagined_frame", sequence=self._clip_counter + k)
                rec.log("imagination/clip", self._image(self.clip[k]))
            self._clip_counter += F
            rec.disable_timeline("imagined_frame")
            self._overlays.add("imagination/clip")  # so a plan without a clip clears it
            if self.box is not None:
                b = self.box
                box = rr.Boxes2D(array=[[b.x0, b.y0, b.x1, b.y1]], array_format=rr.Box2DFormat.XYXY,
                                 labels=[f"read-back box {b.score:.2f}"], colors=[BOX_COLOUR])
            uv = self.readback_uv(0, H, W)
            if uv is not None:
                path2d = rr.LineStrips2D([uv], colors=[PLAN_COLOUR], labels=["read-back path"])
        else:
            self._overlay("imagination/clip", None)
        self._overlay("imagination/clip/box", box)
        self._overlay("imagination/clip/path", path2d)
        self._overlay("world/plan/readback_path", rr.LineStrips3D([[list(p.xyz) for p in plan.path_world]], colors=[PLAN_COLOUR])
                      if plan.path_world else None)
        self._overlay("world/plan/target_estimate", rr.Points3D([plan.target_world], radii=0.08, colors=[TARGET_COLOUR])
                      if plan.target_world is not None else None)
        goal = None
        if self.map is not None and self.goal is not None:
            goal = rr.Points2D([self.map.uv(self.goal)], radii=4.0, colors=[GOAL_COLOUR])
        self._overlay("map/goal", goal)
        self._overlay("agent_map/image", self._image(plan.map_image) if plan.map_image is not None else None)
        belief = None
        if plan.belief_image is not None:  # the target belief as a red layer over the agent's map
            heat = np.zeros((*plan.belief_image.shape, 4), dtype=np.uint8)
            heat[..., 0], heat[..., 3] = 255, plan.belief_image
            belief = self.rr.Image(heat)
        self._overlay("agent_map/image/belief", belief)
        hyp = None
        if plan.hypotheses is not None and len(plan.hypotheses):
            h = np.asarray(plan.hypotheses, dtype=np.float32)
            hyp = rr.Points3D(h[:, :3], radii=0.05 + 0.1 * np.clip(h[:, 3], 0, 1), colors=[(255, 160, 0)])
        self._overlay("world/plan/hypotheses", hyp)

    def finish(self, result: Any) -> None:
        if self.rec is None:
            return
        self.rec.set_time("step", sequence=max(len(result.trace.actions), 0))
        for k, v in self.metrics.items():
            if math.isfinite(v):
                self.rec.log(f"metrics/{k}", self.rr.Scalars(v))

    def close(self) -> None:
        if self.rec is not None:
            rec, self.rec = self.rec, None
            try:
                rec.flush()
                rec.disconnect()
            except Exception as e:  # a viewer that went away must not fail the run
                log.info("closing the recording: %s", e)


# ------------------------------------------------------------------------------------- video
def _fit_height(img: np.ndarray, height: int, nearest: bool = True) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def _label(img: np.ndarray, text: str, org: tuple[int, int] = (6, 18), scale: float = 0.5) -> None:
    """Text with a dark outline so it reads on any background (cv2 draws in place)."""
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _fmt(v: float, spec: str = ".2f", missing: str = "n/a") -> str:
    return format(v, spec) if math.isfinite(v) else missing


class VideoRecorder(EpisodeTrack):
    """habitat-lab style episode video: egocentric | imagined clip (box, path) | map, over a text strip.

    Frames are encoded as they come (MP4 through imageio-ffmpeg's bundled ffmpeg, so a fresh
    machine needs no system ffmpeg); the file is renamed at the end to carry success and SPL."""

    def __init__(self, out_dir: Path, fmt: str = "mp4", height: int = 256, fps: float = 8.0, max_frames: int = 2000) -> None:
        super().__init__(out_dir, f".{fmt}")
        self.fmt, self.height, self.fps, self.max_frames = fmt, height, fps, max_frames
        self._writer: Any = None
        self._frames: list[np.ndarray] = []
        self._size: tuple[int, int] | None = None
        self.frames_written = 0
        self.final_path: Path | None = None

    def start(self, env: NavEnv, episode: Episode) -> None:
        self._frames, self._size, self.frames_written, self.final_path = [], None, 0, None
        self._tmp = self.path.with_name(self.path.stem + ".part" + self.path.suffix)
        if self.fmt == "mp4":
            import imageio.v2 as imageio

            self._writer = imageio.get_writer(self._tmp, format="FFMPEG", fps=self.fps, codec="libx264", quality=7,
                                              macro_block_size=2, ffmpeg_log_level="error")

    def _panel_map(self) -> np.ndarray:
        m = self.map
        if m is None:
            return np.full((self.height, self.height, 3), 30, np.uint8)
        s = self.height / m.image.shape[0]
        img = cv2.resize(m.image, (max(1, round(m.image.shape[1] * s)), self.height), interpolation=cv2.INTER_NEAREST)

        def px(xyz: Any) -> tuple[int, int]:
            u, v = m.uv(xyz)
            return round(u * s), round(v * s)

        for a, b in self.targets:
            cv2.rectangle(img, px(a), px(b), TARGET_COLOUR, 2)
        if len(self.executed) > 1:
            cv2.polylines(img, [np.array([px(p) for p in self.executed], np.int32)], False, EXEC_COLOUR, 2, cv2.LINE_AA)
        if self.goal is not None:
            cv2.drawMarker(img, px(self.goal), GOAL_COLOUR, cv2.MARKER_CROSS, 14, 2)
        if self.executed:
            cv2.circle(img, px(self.executed[-1]), 5, EXEC_COLOUR, -1)
            if self.heading is not None:  # a short line where the camera looks
                tip = np.asarray(self.executed[-1]) + 0.6 * self.heading
                cv2.line(img, px(self.executed[-1]), px(tip), EXEC_COLOUR, 2, cv2.LINE_AA)
        _label(img, "map", scale=0.45)
        y = self.height - 8
        for text, col in (("goal", GOAL_COLOUR), ("target", TARGET_COLOUR), ("path", EXEC_COLOUR)):
            cv2.putText(img, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, col, 1, cv2.LINE_AA)
            y -= 14
        return img

    def _panel_imagined(self, step: int, width: int) -> np.ndarray:
        frame, k = self.clip_frame(step)
        if frame is None:
            img = np.full((self.height, width, 3), 30, np.uint8)
            _label(img, "imagined clip: none yet" if self.plan is None else "no imagination in this plan", scale=0.45)
            return img
        H, W = frame.shape[:2]
        s = self.height / H
        img = cv2.resize(frame, (round(W * s), self.height), interpolation=cv2.INTER_NEAREST)
        uv = self.readback_uv(k, H, W)
        if uv is not None:
            cv2.polylines(img, [np.round(uv * s).astype(np.int32)], False, PLAN_COLOUR, 2, cv2.LINE_AA)
        if self.box is not None and k == len(self.clip) - 1:
            b = self.box
            cv2.rectangle(img, (round(b.x0 * s), round(b.y0 * s)), (round(b.x1 * s), round(b.y1 * s)), BOX_COLOUR, 2)
            _label(img, f"box {b.score:.2f}", (round(b.x0 * s), max(12, round(b.y0 * s) - 4)), 0.4)
        if k < len(self.clip) - 1:  # inset: the clip's last frame with its read-back box, always in view
            inset = cv2.resize(self.clip[-1], (img.shape[1] // 3, self.height // 3), interpolation=cv2.INTER_NEAREST)
            if self.box is not None:
                si = inset.shape[0] / H
                b = self.box
                cv2.rectangle(inset, (round(b.x0 * si), round(b.y0 * si)), (round(b.x1 * si), round(b.y1 * si)), BOX_COLOUR, 1)
            img[-inset.shape[0] - 2:-2, -inset.shape[1] - 2:-2] = inset
            cv2.rectangle(img, (img.shape[1] - inset.shape[1] - 3, self.height - inset.shape[0] - 3),
                          (img.shape[1] - 2, self.height - 2), (255, 255, 255), 1)
        _label(img, f"imagined {k + 1}/{len(self.clip)} (plan @ {self.plan_step})", scale=0.45)
        return img

    def _strip(self, step: int, width: int) -> np.ndarray:
        m = self.metrics
        strip = np.full((56, width, 3), 20, np.uint8)
        _label(strip, f"step {step}   find: {self.episode.target_category}   distance {_fmt(m.get('distance_to_goal', math.nan))} m   "
                      f"path {_fmt(m.get('path_length', math.nan))} m   success {_fmt(m.get('success', math.nan), '.0f')}   "
                      f"SPL {_fmt(m.get('spl', math.nan))}   Soft-SPL {_fmt(m.get('soft_spl', math.nan))}", (6, 20), 0.45)
        note = (self.plan.note if self.plan is not None else "looking around") or "(no note)"
        _label(strip, f"plan: {note}"[: max(20, width // 7)], (6, 44), 0.45)
        return strip

    def observe(self, step: int, obs: Observation) -> None:
        if self.frames_written >= self.max_frames:
            return
        ego = _fit_height(obs.rgb, self.height)
        _label(ego, "egocentric", scale=0.45)
        panels = [ego, self._panel_imagined(step, ego.shape[1]), self._panel_map()]
        sep = np.full((self.height, 3, 3), 255, np.uint8)
        top = np.concatenate([panels[0], sep, panels[1], sep, panels[2]], axis=1)
        frame = np.concatenate([top, self._strip(step, top.shape[1])], axis=0)
        if self._size is None:
            self._size = (frame.shape[0] + frame.shape[0] % 2, frame.shape[1] + frame.shape[1] % 2)
        out = np.zeros((*self._size, 3), np.uint8)  # one size for the whole video (the map never changes size)
        h, w = min(frame.shape[0], self._size[0]), min(frame.shape[1], self._size[1])
        out[:h, :w] = frame[:h, :w]
        self.frames_written += 1
        if self._writer is not None:
            self._writer.append_data(out)
        else:
            self._frames.append(out)

    def finish(self, result: Any) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        elif self._frames:
            import imageio.v2 as imageio

            imageio.mimsave(self._tmp, self._frames, duration=1000.0 / self.fps, loop=0)
            self._frames = []
        if self._tmp.exists():
            m = self.metrics
            tag = f"-success={_fmt(m.get('success', math.nan), '.0f', 'na')}-spl={_fmt(m.get('spl', math.nan), '.2f', 'na')}"
            self.final_path = unused_path(self.path.with_name(self.path.stem + tag + self.path.suffix))
            self._tmp.rename(self.final_path)

    def close(self) -> None:
        """Called in every path (also a failed episode): release ffmpeg, keep what was recorded."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception as e:
                log.info("closing the video writer: %s", e)
            self._writer = None
