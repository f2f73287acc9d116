"""World configuration (LeRobot-style dataclass validated at construction).

Defaults are Habitat's ObjectNav-HM3D agent/sensor settings at 128x128.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from envs.base import ObjectNavSpec
from envs.config import coerce_config
from envs.odometry import ActuationNoise, check_pose_source

AGENT_ONLY_KEYS = frozenset({"actuation_noise", "pose_source"})


@dataclass
class WorldConfig(ObjectNavSpec):
    # the action steps, camera, agent radius, step budget and success rule: ObjectNavSpec
    depth_min: float = 0.0
    depth_max: float = 10.0
    grid_resolution: float = 0.05
    render_depth: bool = True
    render_semantic: bool = True
    max_pitch_deg: float = 60.0  # look_up/look_down clamp (two 30 deg tilts, like habitat)
    # Gaussian noise on executed moves and turns (envs.odometry); off by default (exact motion)
    actuation_noise: ActuationNoise = field(default_factory=ActuationNoise)
    pose_source: str = "gt"  # Observation.pose: gt (true pose) | odometry (dead reckoning; drifts under noise)

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"WorldConfig.{name}={getattr(self, name)!r} is invalid: {why}")

        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not (8 <= v <= 2048):
                raise bad(name, "must be an int in [8, 2048] pixels (default 128)")
        if not (1.0 < float(self.hfov_deg) < 179.0):
            raise bad("hfov_deg", "must be in (1, 179) degrees (Habitat ObjectNav uses 79)")
        if not (0.1 <= float(self.sensor_height) <= 2.3):
            raise bad("sensor_height", "must be in [0.1, 2.3] m, below the 2.5 m ceiling (Habitat: 0.88)")
        if not (0.01 <= float(self.forward_step) <= 1.0):
            raise bad("forward_step", "must be in [0.01, 1.0] m (Habitat: 0.25)")
        for name in ("turn_angle_deg", "tilt_angle_deg"):
            if not (0.0 < float(getattr(self, name)) <= 180.0):
                raise bad(name, "must be in (0, 180] degrees (Habitat: 30)")
        if not (0.05 <= float(self.agent_radius) <= 0.4):
            raise bad("agent_radius", "must be in [0.05, 0.4] m so the agent fits through 1 m doorways (Habitat: 0.18)")
        if not isinstance(self.max_episode_steps, int) or self.max_episode_steps < 1:
            raise bad("max_episode_steps", "must be a positive int (Habitat: 500)")
        if not (0.1 <= float(self.view_point_radius) <= 3.0):
            raise bad("view_point_radius", "must be in [0.1, 3] m (Habitat ObjectNav view points: 1.0)")
        if not (0.0 <= float(self.success_distance) <= 1.0):
            raise bad("success_distance", "must be in [0, 1] m from a view point (habitat-lab ObjectNav: 0.1)")
        if not (0.0 <= float(self.depth_min) < float(self.depth_max)):
            raise bad("depth_max", f"need 0 <= depth_min < depth_max, got [{self.depth_min}, {self.depth_max}]")
        if not (0.01 <= float(self.grid_resolution) <= 0.2):
            raise bad("grid_resolution", "must be in [0.01, 0.2] m per cell (default 0.05)")
        if float(self.grid_resolution) > float(self.forward_step):
            raise bad("grid_resolution", "must not exceed forward_step, or collisions skip cells")
        if not (0.0 <= float(self.max_pitch_deg) < 90.0):
            raise bad("max_pitch_deg", "must be in [0, 90) degrees")
        self.actuation_noise = ActuationNoise.from_any(self.actuation_noise)
        check_pose_source(self.pose_source)

    def scene_key(self) -> tuple:
        """The settings a scene's assets depend on, hashable (cache keys): not how the agent moves
        (actuation_noise) nor which pose it is told (pose_source)."""
        return tuple(sorted((f.name, getattr(self, f.name)) for f in fields(self) if f.name not in AGENT_ONLY_KEYS))

    @classmethod
    def from_any(cls, cfg: Any) -> WorldConfig:
        """WorldConfig | dict | omegaconf DictConfig | None -> WorldConfig; unknown keys are an error.
        `backend` and `scene_seed` may ride along in the Hydra env group; they are not world settings."""
        return coerce_config(cls, cfg, "world config", ignore=("backend", "scene_seed"))
