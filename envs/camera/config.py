"""`env=camera` configuration (becomes the Hydra config group)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from envs.camera.motion import MotionSpec
from envs.config import coerce_config  # noqa: F401  (re-exported for make_camera_env)

SOURCES = ("opencv", "realsense")
MODES = ("auto", "live", "replay")
BASES = ("manual", "http", "ros2", "none")
HTTP_MODES = ("discrete", "velocity")
ODOMETRY = ("none", "dead_reckoning", "base")


def _choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"env.config.{name}={value!r} is not one of {list(options)}")


@dataclass
class CameraConfig(MotionSpec):
    """Frames from `source`, motion through `base`. Field names are the Hydra keys (env.config.<field>)."""

    # --- frames ---
    source: str = "opencv"  # opencv | realsense
    device: str = "0"  # opencv: camera index, rtsp:// or http:// URL, or a video file (replay)
    mode: str = "auto"  # auto (file -> replay, index/URL -> live) | live | replay
    width: int = 0  # output size; 0 = the source's native size (realsense: 640x480)
    height: int = 0
    fps: int = 30  # realsense stream rate
    realsense_serial: str = ""  # pick one RealSense among several
    depth: bool = True  # realsense: aligned depth in metres
    hfov_deg: float = 79.0  # used when there is no calibration file
    calibration_file: str = ""  # OpenCV YAML/XML (camera_matrix, image_width/height) or JSON (fx, fy, cx, cy, width, height)
    frame_timeout_s: float = 2.0  # no new frame for this long -> CameraError (never a hang)
    max_dropped_frames: int = 5  # consecutive failed reads tolerated before CameraError
    frames_per_step: int = 1  # replay: video frames consumed per action
    loop: bool = False  # replay: restart the video at its end instead of raising StreamEnded
    settle_s: float = 0.0  # wait after a motion before grabbing the frame (motion blur, latency)
    # --- motion ---
    base: str = "manual"  # manual | http | ros2 | none (replay without a robot)
    # forward_step, turn_angle_deg, tilt_angle_deg (ActionSteps), linear_speed, angular_speed_deg: from MotionSpec
    http_url: str = ""  # e.g. http://robot.local:8080/cmd
    http_mode: str = "discrete"  # discrete: {"type":"discrete","action":...}; velocity: twist + duration
    http_timeout_s: float = 1.0
    http_retries: int = 2  # on connection errors and 502/503/504 (motion commands are never re-sent after a read timeout)
    http_backoff_s: float = 0.1
    ros2_topic: str = "/cmd_vel"
    ros2_rate_hz: float = 10.0
    # --- episode ---
    odometry: str = "none"  # none (pose=None) | dead_reckoning (approximate) | base (the driver reports poses)
    sensor_height: float = 0.88  # camera height above the floor: dead-reckoning start pose (metres)
    target_category: str = ""
    instruction: str = ""  # overrides the template built from target_category
    scene_description: str = "the room"
    max_episode_steps: int = 500

    def __post_init__(self) -> None:
        self.device = str(self.device)
        _choice("source", self.source, SOURCES)
        _choice("mode", self.mode, MODES)
        _choice("base", self.base, BASES)
        _choice("http_mode", self.http_mode, HTTP_MODES)
        _choice("odometry", self.odometry, ODOMETRY)
        for n in ("width", "height", "http_retries"):
            if int(getattr(self, n)) < 0:
                raise ValueError(f"env.config.{n} must be >= 0, got {getattr(self, n)}")
        if (self.width == 0) != (self.height == 0):
            raise ValueError(f"set both env.config.width and env.config.height or neither, got {self.width}x{self.height}")
        for n in ("fps", "frame_timeout_s", "forward_step", "turn_angle_deg", "tilt_angle_deg", "linear_speed",
                  "angular_speed_deg", "http_timeout_s", "ros2_rate_hz", "max_episode_steps", "frames_per_step"):
            v = getattr(self, n)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"env.config.{n} must be a positive number, got {v!r}")
        for n in ("max_dropped_frames", "settle_s", "http_backoff_s", "sensor_height"):
            if not getattr(self, n) >= 0:
                raise ValueError(f"env.config.{n} must be >= 0, got {getattr(self, n)!r}")
        if not (1.0 < self.hfov_deg < 179.0):
            raise ValueError(f"env.config.hfov_deg must be in (1, 179), got {self.hfov_deg}")
        if self.base == "http" and not self.http_url.startswith(("http://", "https://")):
            raise ValueError(f"env.config.base=http needs env.config.http_url=http://host:port/path, got {self.http_url!r}")
        if self.source == "opencv" and not self.device:
            raise ValueError("env.config.device is empty; pass a camera index (0), a stream URL, or a video file")
