"""`env=camera`: a real camera (+ optional robot base) behind the NavEnv interface.

step(action) = base executes the action (blocking; drivers stop safely on failure), optional
settle time, then the first frame captured after the motion. No ground truth: `render_at` raises,
`pose` is None unless odometry is configured, metrics carry steps and path length only.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from envs.base import EpisodeBookkeeping
from envs.camera.calibration import Calibration, load_calibration
from envs.camera.config import CameraConfig, coerce_config
from envs.camera.drivers import Base, make_base, motion_spec
from envs.camera.errors import BaseCommandError
from envs.camera.motion import integrate
from envs.camera.sources import Frame, FrameSource, OpenCVSource, RealSenseSource
from envs.geometry import intrinsics_from_hfov
from envs.types import Action, Episode, EpisodeMetrics, Observation, Pose


def make_camera_env(cfg: Any = None) -> CameraEnv:
    """Registry factory (`envs.base.make_env("camera", cfg)`); cfg: CameraConfig | dict | DictConfig."""
    return CameraEnv(coerce_config(CameraConfig, cfg, "env=camera"))


def open_source(cfg: CameraConfig) -> FrameSource:
    if cfg.source == "realsense":
        w, h = (cfg.width, cfg.height) if cfg.width else (640, 480)
        return RealSenseSource(w, h, cfg.fps, cfg.depth, cfg.realsense_serial, cfg.frame_timeout_s)
    return OpenCVSource(cfg.device, cfg.mode, cfg.frame_timeout_s, cfg.max_dropped_frames, cfg.frames_per_step,
                        cfg.loop)


class CameraEnv(EpisodeBookkeeping):
    """A real camera (RealSense or any OpenCV source) on a mobile base, behind the NavEnv interface."""

    _over_reason = "STOP, max_episode_steps, or a base fault"

    def __init__(self, cfg: CameraConfig, source: FrameSource | None = None, base: Base | None = None):
        self.cfg = cfg
        self.spec = motion_spec(cfg)
        calib = load_calibration(cfg.calibration_file) if cfg.calibration_file else None
        self._source = source if source is not None else open_source(cfg)
        try:
            self.width = cfg.width or self._source.width
            self.height = cfg.height or self._source.height
            if self.width <= 0 or self.height <= 0:
                raise ValueError(f"camera {cfg.device!r} reports no frame size; set env.config.width and env.config.height")
            if calib is None and self._source.K is not None:
                src = Calibration(self._source.K, self._source.width, self._source.height)
                calib = src.scaled(self.width, self.height)
            elif calib is not None:
                calib = calib.scaled(self.width, self.height)
            self.calibration = calib
            self.hfov_deg = calib.hfov_deg if calib is not None else cfg.hfov_deg
            self.K = calib.K if calib is not None else intrinsics_from_hfov(self.hfov_deg, self.width, self.height)
            self._base = base if base is not None else make_base(cfg)
        except BaseException:
            self._source.close()
            raise
        self._episode: Episode | None = None
        self._n_episodes = 0
        self._reset_counters()

    @property
    def has_depth(self) -> bool:
        """Whether observations carry depth (RealSense with env.config.depth=true); planners that read
        paths back by optical flow need it, and `run` refuses that combination at start."""
        return bool(getattr(self._source, "has_depth", False))

    # --- internals ----------------------------------------------------------------------------
    def _reset_counters(self) -> None:
        self._steps, self._commanded, self._odom_path, self._done, self._called_stop = 0, 0.0, 0.0, False, False
        self._dr_pose = Pose((0.0, self.cfg.sensor_height, 0.0), 0.0, 0.0)
        self._last_odom: Pose | None = None

    def _pose(self) -> Pose | None:
        if self.cfg.odometry == "dead_reckoning":
            return self._dr_pose
        if self.cfg.odometry == "base":
            return self._base.odometry()
        return None

    def _frame(self, newer_than: float = 0.0) -> Frame:
        f = self._source.read(newer_than)
        rgb = f.rgb
        if rgb.shape[:2] != (self.height, self.width):
            import cv2

            rgb = cv2.resize(rgb, (self.width, self.height), interpolation=cv2.INTER_AREA)
            depth = None if f.depth is None else cv2.resize(f.depth, (self.width, self.height),
                                                            interpolation=cv2.INTER_NEAREST)
            f = Frame(rgb, depth, f.timestamp)
        return f

    def _observe(self, frame: Frame) -> Observation:
        ep = self._episode
        return Observation(rgb=np.ascontiguousarray(frame.rgb, dtype=np.uint8),
                           depth=None if frame.depth is None else frame.depth.astype(np.float32),
                           pose=self._pose(), instruction=self._instruction(ep), step=self._steps)

    def _instruction(self, ep: Episode | None) -> str:
        if self.cfg.instruction:
            return self.cfg.instruction
        if ep is None or not ep.target_category:
            return ""
        from envs.habitat.goals import normalize_category
        from envs.instructions import grounding_instruction, with_article

        return grounding_instruction(self.cfg.scene_description, with_article(normalize_category(ep.target_category)))

    # --- NavEnv -------------------------------------------------------------------------------
    def reset(self, episode: Episode | None = None, seed: int | None = None) -> Observation:
        """New episode from wherever the rig is now (a rig cannot teleport: `episode.start` is only
        recorded, and seeds have nothing to randomise)."""
        self._base.stop()
        if episode is None:
            # a rig episode is never repeated: ids carry the wall-clock start so resumed runs keep both
            episode = Episode(f"camera-{time.strftime('%Y%m%d-%H%M%S')}-{self._n_episodes}", -1, Pose((0.0, self.cfg.sensor_height, 0.0), 0.0),
                              self.cfg.target_category)
        self._n_episodes += 1
        self._episode = episode
        self._reset_counters()
        self._last_odom = self._base.odometry()
        return self._observe(self._frame())

    def step(self, action: Action | int) -> Observation:
        a = self._begin_step(action)
        if a is Action.STOP:
            self._base.stop()
        else:
            try:
                self._base.execute(a)
            except BaseCommandError:
                self._done = True  # the driver already tried a zero velocity
                raise
            self._dr_pose = integrate(self._dr_pose, a, self.spec)
            if a is Action.MOVE_FORWARD:
                self._commanded += self.spec.forward_step
            odo = self._base.odometry()
            if odo is not None and self._last_odom is not None:
                self._odom_path += float(np.linalg.norm(odo.xyz - self._last_odom.xyz))
            self._last_odom = odo if odo is not None else self._last_odom
        self._end_step(self.cfg.max_episode_steps)
        moved_at = time.monotonic()
        if self.cfg.settle_s > 0 and a is not Action.STOP:
            time.sleep(self.cfg.settle_s)
        return self._observe(self._frame(newer_than=moved_at if a is not Action.STOP else 0.0))

    def render_at(self, pose: Pose) -> Observation:
        raise NotImplementedError("a camera rig cannot render from an arbitrary pose; use env=embedded or "
                                  "env=habitat for checks that need render_at (oracle imagination, SD metric)")

    def metrics(self) -> EpisodeMetrics:
        """What a rig can measure. Success/SPL need ground truth: NaN. path_length is the base's
        odometry when env.config.odometry=base, else the commanded forward distance (dead reckoning)."""
        path = self._odom_path if self.cfg.odometry == "base" else self._commanded
        nan = math.nan
        return EpisodeMetrics(success=nan, spl=nan, soft_spl=nan, distance_to_goal=nan, path_length=path,
                              num_steps=self._steps,
                              extra={"called_stop": float(self._called_stop), "commanded_path_length": self._commanded,
                                     "dropped_frames": float(getattr(self._source, "dropped_frames", 0))})

    def close(self) -> None:
        """Safe stop first, then release the devices; never raises on a dead endpoint."""
        try:
            self._base.stop()
        finally:
            try:
                self._base.close()
            finally:
                self._source.close()

    def __enter__(self) -> CameraEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
