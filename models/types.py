"""What goes into and comes out of the imagination (no torch here: planners import it cheaply).

Shapes: frames are uint8 (N, H, W, 3) RGB; poses are camera-to-world 4x4 in the Habitat world frame
(see envs/types.py). Navigation waypoints are egocentric (dt xyz metres, dr yaw/pitch/roll radians)
relative to the current camera, one row per target frame, as in Video4Spatial.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

Mode = Literal["grounding", "navigation"]
# how a grounding video's path is made: by the model end to end, or along the path head's predicted end
# (models.path_head; `ImaginationConfig.grounding_path`)
GROUNDING_PATHS = ("model", "head")


@dataclass
class VideoContext:
    """Frames the agent has seen. The LAST frame is the current view (the paper feeds the first
    target frame as part of the context). `indices` are source frame indices, kept for RoPE."""

    frames: np.ndarray  # (N, H, W, 3) uint8
    indices: np.ndarray  # (N,) int64, strictly increasing
    poses: np.ndarray | None = None  # (N, 4, 4) camera-to-world, optional (context_poses / geometry_prior use it)
    depths: np.ndarray | None = None  # (N, H', W') float metres along the viewing axis, optional (geometry_prior)

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"context frames must be uint8 (N, H, W, 3), got {self.frames.dtype} {self.frames.shape}")
        self.indices = np.asarray(self.indices, dtype=np.int64)
        if self.indices.shape != (len(self.frames),):
            raise ValueError(f"need one source index per context frame: {len(self.frames)} frames, indices {self.indices.shape}")
        if len(self.indices) > 1 and np.any(np.diff(self.indices) <= 0):
            raise ValueError("context indices must be strictly increasing (they are RoPE positions)")
        if self.poses is not None and np.shape(self.poses) != (len(self.frames), 4, 4):
            raise ValueError(f"context poses must be (N, 4, 4) camera-to-world, one per frame; got {np.shape(self.poses)}")
        if self.depths is not None and (np.ndim(self.depths) != 3 or len(self.depths) != len(self.frames)):
            raise ValueError(f"context depths must be (N, H, W) metres, one per frame; got {np.shape(self.depths)}")


@dataclass
class ImaginedVideo:
    """Output of one imagination call: `num_samples` videos of F frames each."""

    frames: np.ndarray  # (S, F, H, W, 3) uint8
    mode: Mode
    instruction: str = ""
    waypoints: np.ndarray | None = None  # (F, 6) for navigation mode
    seconds: float = float("nan")
    meta: dict = field(default_factory=dict)


class Imagination(Protocol):
    """Anything that imagines videos: the diffusion pipeline, or the simulator (oracle planner)."""

    height: int
    width: int
    num_frames: int  # target frames per video (path + box frames in grounding mode)

    def ground(self, context: VideoContext, instruction: str, num_samples: int = 1, seed: int = 0) -> ImaginedVideo: ...

    def navigate(self, context: VideoContext, waypoints: np.ndarray, num_samples: int = 1, seed: int = 0) -> ImaginedVideo: ...


@dataclass
class Clip:
    """One training clip (written to shards by models/data.py, read by the trainer)."""

    mode: Mode
    context_frames: np.ndarray  # (N, H, W, 3) uint8; the last one is the first target frame's view
    context_indices: np.ndarray  # (N,) int64 source indices
    target_frames: np.ndarray  # (F, H, W, 3) uint8; grounding: path frames then box frames
    target_poses: np.ndarray  # (F, 4, 4) float32 camera-to-world
    instruction: str = ""
    num_box_frames: int = 0  # grounding: trailing frames with the red box drawn
    target_box: np.ndarray | None = None  # (4,) x0, y0, x1, y1 pixels on the last frame
    scene_seed: int = -1
    category: str = ""
    instance_id: int = 0
    context_poses: np.ndarray | None = None  # (N, 4, 4) float32 camera-to-world of the context frames
    context_depth: np.ndarray | None = None  # (N, H, W) float16 metres, at the context frames' resolution
