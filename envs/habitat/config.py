"""`env=habitat` configuration (becomes the Hydra config group; defaults = habitat-lab ObjectNav HM3D).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envs.base import ObjectNavSpec
from envs.config import coerce_config  # noqa: F401  (re-exported for make_habitat_env)

RENDERERS = ("auto", "habitat_sim", "mujoco")
SCENE_SUFFIXES = (".glb", ".gltf", ".ply", ".obj", ".house")


def _positive(obj: Any, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"env.{n} must be a positive number, got {v!r}")


@dataclass
class HabitatConfig(ObjectNavSpec):
    """habitat_sim Simulator + agent settings. Scene paths are checked for existence at env build."""

    renderer: str = "auto"  # auto (habitat_sim when it imports, else mujoco) | habitat_sim | mujoco (pip-only)
    scene: str = ""  # .glb / HM3D *.basis.glb / MP3D .glb path, or a scene id inside scene_dataset_config
    episodes_file: str = ""  # habitat-lab ObjectNav *.json.gz ({split} is replaced); "" = sample on env.scene
    scenes_dir: str = ""  # joined to the episodes' scene_id (habitat-lab's scenes_dir); "" = beside the file
    scene_dataset_config: str = ""  # e.g. hm3d_annotated_basis.scene_dataset_config.json (HM3D semantics)
    semantic_sidecar: str = ""  # our exporter's JSON; "" = <scene stem>.json next to the .glb when present
    navmesh: str = ""  # .navmesh file; "" = <scene stem>.navmesh when present, else recomputed
    # the action steps, camera, agent radius, step budget and success rule: ObjectNavSpec
    rgb: bool = True
    depth: bool = True
    semantic: bool = False  # needs a semantic mesh (HM3D/MP3D); sidecar scenes have none
    min_depth: float = 0.5
    max_depth: float = 5.0
    agent_height: float = 0.88
    allow_sliding: bool = False
    view_point_grid: float = 0.25  # spacing of candidate view points
    target_categories: list[str] = field(default_factory=list)  # [] = any category in the scene
    min_start_distance: float = 1.0
    max_start_distance: float = 30.0
    gpu_device_id: int = 0
    enable_physics: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.renderer not in RENDERERS:
            raise ValueError(f"env.renderer={self.renderer!r} is not one of {list(RENDERERS)}")
        self.target_categories = [str(c) for c in (self.target_categories or [])]
        _positive(self, "width", "height", "sensor_height", "max_depth", "agent_radius", "agent_height",
                  "forward_step", "turn_angle_deg", "tilt_angle_deg", "max_episode_steps",
                  "success_distance", "view_point_radius", "view_point_grid", "max_start_distance")
        if not (1.0 < self.hfov_deg < 179.0):
            raise ValueError(f"env.hfov_deg must be in (1, 179), got {self.hfov_deg}; Habitat ObjectNav uses 79")
        if not (0.0 <= self.min_depth < self.max_depth):
            raise ValueError(f"env.min_depth must be in [0, max_depth={self.max_depth}), got {self.min_depth}")
        if not (0.0 <= self.min_start_distance < self.max_start_distance):
            raise ValueError("env.min_start_distance must be >= 0 and below env.max_start_distance")
        if not (self.rgb or self.depth or self.semantic):
            raise ValueError("env: enable at least one sensor (rgb, depth or semantic)")
        if self.scene and not self.scene_dataset_config and not self.scene.lower().endswith(SCENE_SUFFIXES):
            raise ValueError(f"env.scene={self.scene!r} is not a scene file {SCENE_SUFFIXES}; "
                             "pass a .glb path, or a scene id together with env.scene_dataset_config")

    def resolved_sidecar(self) -> Path | None:
        """The semantic sidecar to use: explicit, else `<scene stem>.json` next to the scene if it exists."""
        if self.semantic_sidecar:
            return Path(self.semantic_sidecar)
        return _sibling(self.scene, ".semantic.json") or _sibling(self.scene, ".json")

    def resolved_navmesh(self) -> Path | None:
        if self.navmesh:
            return Path(self.navmesh)
        return _sibling(self.scene, ".navmesh")


def _sibling(scene: str, suffix: str) -> Path | None:
    if not scene:
        return None
    p = Path(scene)
    name = p.name
    for s in (".basis.glb", ".glb", ".gltf", ".ply", ".obj"):
        if name.lower().endswith(s):
            name = name[: -len(s)]
            break
    cand = p.with_name(name + suffix)
    return cand if cand.is_file() else None
