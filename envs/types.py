"""Typed objects that cross the boundary between a world and the agent.

Every backend (embedded MuJoCo world, Habitat, camera rig) produces these and nothing else, so the
agent never sees a backend's native conventions. Poses follow Habitat: world Y-up, the camera looks
along -Z, right-handed; yaw is a rotation about +Y (yaw=0 looks along -Z, turning left increases yaw).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class Action(IntEnum):
    """Habitat ObjectNav discrete actions (same integer ids as habitat-lab's ObjectNav config)."""

    STOP = 0
    MOVE_FORWARD = 1
    TURN_LEFT = 2
    TURN_RIGHT = 3
    LOOK_UP = 4
    LOOK_DOWN = 5


@dataclass(frozen=True)
class Pose:
    """Camera pose in the Habitat world frame.

    position: (3,) metres, Y-up (position[1] is the camera height above the floor for our world).
    yaw: radians about +Y; 0 looks along -Z. pitch: radians, positive looks up.
    """

    position: tuple[float, float, float]
    yaw: float
    pitch: float = 0.0

    @property
    def xyz(self) -> np.ndarray:
        return np.asarray(self.position, dtype=np.float64)

    @property
    def forward(self) -> np.ndarray:
        """Unit viewing direction in the floor plane (ignores pitch)."""
        return np.array([-np.sin(self.yaw), 0.0, -np.cos(self.yaw)])

    def as_array(self) -> np.ndarray:
        """(x, y, z, yaw, pitch) float32 — the gymnasium observation layout."""
        return np.array([*self.position, self.yaw, self.pitch], dtype=np.float32)

    @staticmethod
    def from_array(a: np.ndarray) -> Pose:
        a = np.asarray(a, dtype=np.float64).reshape(-1)
        return Pose((float(a[0]), float(a[1]), float(a[2])), float(a[3]), float(a[4]) if a.size > 4 else 0.0)


@dataclass
class Observation:
    """One egocentric observation.

    rgb: (H, W, 3) uint8. depth: (H, W) float32 metres or None (plain webcam).
    semantic: (H, W) int32 instance ids, 0 = no object (simulators only).
    pose: camera pose or None (a rig without odometry).
    """

    rgb: np.ndarray
    depth: np.ndarray | None = None
    pose: Pose | None = None
    semantic: np.ndarray | None = None
    instruction: str = ""
    step: int = 0


@dataclass(frozen=True)
class Episode:
    """An ObjectNav episode: where the agent starts and which category it must find."""

    episode_id: str
    scene_seed: int
    start: Pose
    target_category: str
    # Filled by the world when the episode is built; empty for a rig.
    target_instance_ids: tuple[int, ...] = ()
    geodesic_start_distance: float = float("nan")
    scene_id: str = ""  # scene file of a loaded scene (habitat-lab's scene_id); "" = the procedural scene_seed


@dataclass(frozen=True)
class RouteEpisode(Episode):
    """A pose-following episode: reach each waypoint (world poses) in order, ending at the last."""

    waypoints: tuple[Pose, ...] = ()
    route_length: float = float("nan")  # metres walked along the waypoints


@dataclass(frozen=True)
class Box2D:
    """Axis-aligned image box in pixels, x right, y down; (x0, y0) inclusive, (x1, y1) exclusive."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0
    label: str = ""
    instance_id: int = 0
    # (H, W) bool: the target's own pixels in the image the box is in, when the detector segments it
    # (a box also frames whatever stands in front of the object); None for a box only
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def center(self) -> tuple[float, float]:
        return (0.5 * (self.x0 + self.x1), 0.5 * (self.y0 + self.y1))

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def pixel_bounds(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, x1, y0, y1): the integer pixel range (x1, y1 exclusive) the box covers in a width x height
        image, its fractional edges rounded outwards, clipped so each start lies inside the image."""
        return (int(np.clip(self.x0, 0, width - 1)), int(np.clip(np.ceil(self.x1), 1, width)),
                int(np.clip(self.y0, 0, height - 1)), int(np.clip(np.ceil(self.y1), 1, height)))

    def scaled(self, sx: float, sy: float | None = None) -> Box2D:
        """The box in an image resized by sx horizontally and sy (default sx) vertically (without its
        mask, which belongs to the original image)."""
        sy = sx if sy is None else sy
        return Box2D(self.x0 * sx, self.y0 * sy, self.x1 * sx, self.y1 * sy, self.score, self.label, self.instance_id)

    def iou(self, other: Box2D) -> float:
        ix = max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0.0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


@dataclass
class EpisodeMetrics:
    """Habitat ObjectNav measures for one finished (or running) episode."""

    success: float = 0.0
    spl: float = 0.0
    soft_spl: float = 0.0
    distance_to_goal: float = float("nan")
    path_length: float = 0.0
    num_steps: int = 0
    collisions: int = 0
    extra: dict[str, float] = field(default_factory=dict)
