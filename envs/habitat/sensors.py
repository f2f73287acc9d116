"""Sensor layout and raw-observation conversion for habitat_sim (pure: no habitat_sim import).

`sensor_defs` says which CameraSensorSpecs to build (uuid, kind, [H, W], position, hfov) from
`HabitatConfig`; `to_observation` turns `sim.get_sensor_observations()` (RGBA uint8, depth float32,
semantic uint32) into our `Observation` with habitat-lab's depth clipping.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.habitat.config import HabitatConfig
from envs.types import Observation, Pose

RGB, DEPTH, SEMANTIC = "rgb", "depth", "semantic"


@dataclass(frozen=True)
class SensorDef:
    uuid: str
    kind: str  # "color" | "depth" | "semantic" -> habitat_sim.SensorType.COLOR/DEPTH/SEMANTIC
    resolution: tuple[int, int]  # (H, W): habitat_sim's order
    position: tuple[float, float, float]  # relative to the agent body (floor)
    hfov_deg: float


def sensor_defs(cfg: HabitatConfig) -> list[SensorDef]:
    res, pos = (cfg.height, cfg.width), (0.0, cfg.sensor_height, 0.0)
    wanted = [(RGB, "color", cfg.rgb), (DEPTH, "depth", cfg.depth), (SEMANTIC, "semantic", cfg.semantic)]
    return [SensorDef(u, k, res, pos, cfg.hfov_deg) for u, k, on in wanted if on]


def clip_depth(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """habitat-lab's DepthSensor without normalisation: clip to [min, max] metres, float32 (H, W)."""
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim == 3:
        d = d[..., 0]
    return np.clip(np.nan_to_num(d, nan=max_depth, posinf=max_depth), min_depth, max_depth).astype(np.float32)


def to_observation(raw: dict, cfg: HabitatConfig, pose: Pose | None, instruction: str, step: int) -> Observation:
    """Raw sensor dict -> Observation. A depth-only config still yields an RGB (depth as grey) so
    that downstream code can always rely on `rgb`."""
    depth = clip_depth(raw[DEPTH], cfg.min_depth, cfg.max_depth) if DEPTH in raw else None
    if RGB in raw:
        rgb = np.ascontiguousarray(np.asarray(raw[RGB])[..., :3], dtype=np.uint8)
    elif depth is not None:
        g = (255.0 * (depth - cfg.min_depth) / (cfg.max_depth - cfg.min_depth)).astype(np.uint8)
        rgb = np.repeat(g[..., None], 3, axis=-1)
    else:
        rgb = np.zeros((cfg.height, cfg.width, 3), dtype=np.uint8)
    sem = np.asarray(raw[SEMANTIC]).astype(np.int32) if SEMANTIC in raw else None
    if rgb.shape[:2] != (cfg.height, cfg.width):
        raise RuntimeError(f"habitat_sim returned {rgb.shape[:2]} frames, config asks for "
                           f"{(cfg.height, cfg.width)}; sensor resolution is [H, W]")
    return Observation(rgb=rgb, depth=depth, pose=pose, semantic=sem, instruction=instruction, step=step)
