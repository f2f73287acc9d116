"""Per-episode recordings: a Rerun `.rrd` (egocentric RGB/depth, each imagined video with its
read-back box and path, the executed path and target in 3D, a top-down map, metrics as scalars)
and a short GIF for people without Rerun.

Both are `EpisodeObserver`s of the agent loop: they watch, never drive. rerun-sdk is optional:
without it a warning is printed once and only the GIF is written.
"""
from __future__ import annotations

import logging
import math
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

TARGET_COLOUR = (255, 60, 60)
EXEC_COLOUR = (60, 160, 255)
PLAN_COLOUR = (255, 200, 0)


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


def contact_sheet(videos: np.ndarray, max_cols: int = 8) -> np.ndarray:
    """(S, F, H, W, 3) -> one image: a row per sample, up to `max_cols` evenly spaced frames (last kept)."""
    S, F = videos.shape[:2]
    cols = np.unique(np.linspace(0, F - 1, min(F, max_cols)).round().astype(int))
    rows = [np.concatenate([videos[s, c] for c in cols], axis=1) for s in range(S)]
    return np.concatenate(rows, axis=0)


class RerunRecorder:
    """Writes one `.rrd` per episode (rerun-sdk 0.41 API: RecordingStream + save)."""

    def __init__(self, path: Path, app_id: str = "v4s-agent", recording_id: str | None = None) -> None:
        self.path = Path(path)
        self.rr = _rerun()
        self.rec = None
        self.app_id, self.recording_id = app_id, recording_id
        self._executed: list[list[float]] = []
        self._map_xform: Any = None

    @property
    def enabled(self) -> bool:
        return self.rec is not None

    # ----------------------------------------------------------------------------- observer
    def on_start(self, env: NavEnv, episode: Episode) -> None:
        if self.rr is None:
            return
        rr = self.rr
        self.rec = rr.RecordingStream(self.app_id, recording_id=self.recording_id)
        self.rec.save(self.path)
        self.K = intrinsics_of(env)
        self.W, self.H = env.width, env.height
        self._executed = []
        self._map_path: list[list[float]] = []
        rec = self.rec
        rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Y_UP, static=True)
        rec.log("episode", rr.TextDocument(f"episode {episode.episode_id}: find {episode.target_category} "
                                            f"(scene seed {episode.scene_seed}, geodesic start distance "
                                            f"{episode.geodesic_start_distance:.2f} m)"), static=True)
        self._log_targets(env, episode)
        self._log_map(env)

    def _log_targets(self, env: NavEnv, episode: Episode) -> None:
        scene = getattr(env, "scene", None)
        objs = getattr(scene, "objects", None) or []
        tgt = [o for o in objs if getattr(o, "instance_id", None) in set(episode.target_instance_ids)]
        if not tgt:
            return
        rr = self.rr
        mins = np.array([o.aabb_min for o in tgt], dtype=np.float32)
        maxs = np.array([o.aabb_max for o in tgt], dtype=np.float32)
        self.rec.log("world/target", rr.Boxes3D(mins=mins, sizes=maxs - mins, colors=[TARGET_COLOUR], labels=[episode.target_category] * len(tgt)), static=True)

    def _log_map(self, env: NavEnv) -> None:
        grid = getattr(env, "navgrid", None)
        if grid is None or not hasattr(grid, "to_image"):
            return
        try:
            img = np.asarray(grid.to_image())
        except Exception as e:  # the map is a nice-to-have
            log.info("no top-down map: %s", e)
            return
        if img.ndim == 2:
            img = np.repeat((img.astype(np.float32) / max(float(img.max()), 1.0) * 255).astype(np.uint8)[..., None], 3, axis=2)
        self.rec.log("map/topdown", self.rr.Image(img), static=True)
        if hasattr(grid, "cell_of"):  # (row, col) of a world (x, z): the map image's (v, u)
            self._map_xform = grid.cell_of

    def _log_pose(self, pose: Pose) -> None:
        rr = self.rr
        q = pose_rotation(pose).as_quat()  # x, y, z, w
        self.rec.log("world/camera", rr.Transform3D(translation=pose.xyz, quaternion=rr.Quaternion(xyzw=q)))
        self.rec.log("world/camera/image", rr.Pinhole(image_from_camera=self.K, resolution=[self.W, self.H], camera_xyz=rr.ViewCoordinates.RUB))
        self._executed.append([float(v) for v in pose.xyz])
        if len(self._executed) > 1:
            self.rec.log("world/executed_path", rr.LineStrips3D([self._executed], colors=[EXEC_COLOUR]))
        if self._map_xform is not None:
            try:
                iz, ix = self._map_xform(np.array([pose.position[0], pose.position[2]]))
                self._map_path.append([ix + 0.5, iz + 0.5])
                self.rec.log("map/topdown/agent", rr.Points2D([self._map_path[-1]], radii=3.0, colors=[EXEC_COLOUR]))
                if len(self._map_path) > 1:
                    self.rec.log("map/topdown/path", rr.LineStrips2D([self._map_path], colors=[EXEC_COLOUR]))
            except Exception:
                self._map_xform = None

    def on_observation(self, step: int, obs: Observation) -> None:
        if self.rec is None:
            return
        rr = self.rr
        self.rec.set_time("step", sequence=step)
        if obs.pose is not None:
            self._log_pose(obs.pose)
        self.rec.log("world/camera/image/rgb", rr.Image(obs.rgb))
        if obs.depth is not None:
            self.rec.log("world/camera/image/depth", rr.DepthImage(np.nan_to_num(obs.depth).astype(np.float32), meter=1.0))

    def on_plan(self, step: int, plan: Plan) -> None:
        if self.rec is None:
            return
        rr, rec = self.rr, self.rec
        rec.set_time("step", sequence=step)
        rec.log("metrics/seconds_per_plan", rr.Scalars(plan.seconds))
        rec.log("plan/note", rr.TextLog(plan.note or "(no note)"))
        for vi, video in enumerate(plan.videos[:4]):
            frames = np.asarray(video.frames)
            if frames.dtype != np.uint8 or frames.ndim != 5:
                continue
            base = f"imagination/{video.mode}_{vi}"
            rec.log(f"{base}/sheet", rr.Image(contact_sheet(frames)))
            samples = plan.samples[vi] if vi < len(plan.samples) else []
            s_idx = plan.chosen[1] if plan.chosen and plan.chosen[0] == vi else 0
            last = frames[s_idx, -1]
            rec.log(f"{base}/last", rr.Image(last))
            boxes = [d.box for d in samples if d.box is not None]
            if boxes:
                rec.log(f"{base}/last/boxes", rr.Boxes2D(array=[[b.x0, b.y0, b.x1, b.y1] for b in boxes], array_format=rr.Box2DFormat.XYXY,
                                                         labels=[f"{b.score:.2f}" for b in boxes], colors=[(0, 255, 0)]))
        if plan.path_world:
            rec.log("world/plan/readback_path", rr.LineStrips3D([[list(p.xyz) for p in plan.path_world]], colors=[PLAN_COLOUR]))
        if plan.target_world is not None:
            rec.log("world/plan/target_estimate", rr.Points3D([plan.target_world], radii=0.08, colors=[TARGET_COLOUR]))
        if plan.map_image is not None:
            rec.log("map/agent_map", rr.Image(plan.map_image))
        if plan.belief_image is not None:  # the target belief as a layer over the agent's map
            heat = np.zeros((*plan.belief_image.shape, 4), dtype=np.uint8)
            heat[..., 0], heat[..., 3] = 255, plan.belief_image
            rec.log("map/agent_map/belief", rr.Image(heat))
        if plan.hypotheses is not None and len(plan.hypotheses):
            h = np.asarray(plan.hypotheses, dtype=np.float32)
            rec.log("world/plan/hypotheses", rr.Points3D(h[:, :3], radii=0.05 + 0.1 * np.clip(h[:, 3], 0, 1), colors=[(255, 160, 0)]))

    def on_end(self, result: Any) -> None:
        if self.rec is None:
            return
        rr, rec = self.rr, self.rec
        rec.set_time("step", sequence=max(len(result.trace.actions), 0))
        m = result.metrics
        for k in ("success", "spl", "soft_spl", "distance_to_goal", "path_length"):
            v = getattr(m, k)
            if v is not None and math.isfinite(float(v)):
                rec.log(f"metrics/{k}", rr.Scalars(float(v)))
        rec.flush()
        self.close()

    def close(self) -> None:
        if self.rec is not None:
            try:
                self.rec.flush()
                self.rec.disconnect()
            except Exception:
                pass
            self.rec = None


class GifRecorder:
    """Egocentric view | latest imagined last frame (with its box), one GIF frame per step."""

    def __init__(self, path: Path, height: int = 128, max_frames: int = 400, fps: float = 8.0) -> None:
        self.path = Path(path)
        self.height, self.max_frames, self.fps = height, max_frames, fps
        self.frames: list[np.ndarray] = []
        self._imagined: np.ndarray | None = None

    def _fit(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        return cv2.resize(img, (max(1, round(w * self.height / h)), self.height), interpolation=cv2.INTER_NEAREST)

    def on_start(self, env: NavEnv, episode: Episode) -> None:
        self.frames, self._imagined = [], None

    def on_observation(self, step: int, obs: Observation) -> None:
        if len(self.frames) >= self.max_frames:
            return
        left = self._fit(obs.rgb)
        right = self._imagined if self._imagined is not None else np.zeros_like(left)
        self.frames.append(np.concatenate([left, np.full((self.height, 2, 3), 255, np.uint8), right], axis=1))

    def on_plan(self, step: int, plan: Plan) -> None:
        if not plan.videos:
            return
        vi, si = plan.chosen if plan.chosen else (0, 0)
        frames = np.asarray(plan.videos[min(vi, len(plan.videos) - 1)].frames)
        if frames.dtype == np.uint8 and frames.ndim == 5:
            self._imagined = self._fit(frames[min(si, len(frames) - 1), -1])

    def on_end(self, result: Any) -> None:
        self.write()

    def write(self) -> None:
        if not self.frames:
            return
        import imageio.v2 as imageio

        w = min(f.shape[1] for f in self.frames)
        imageio.mimsave(self.path, [f[:, :w] for f in self.frames], duration=1000.0 / self.fps, loop=0)
