"""Real camera rig backend (`env=camera`): OpenCV / RealSense frames + a pluggable motion `Base`.

A rig has no ground truth: `render_at` is unavailable, poses exist only with odometry, and
metrics are limited to what the rig can measure (steps, commanded / odometry path length).
"""
from envs.camera.config import CameraConfig
from envs.camera.errors import BaseCommandError, CameraError, StreamEnded

__all__ = ["CameraConfig", "CameraError", "StreamEnded", "BaseCommandError"]
