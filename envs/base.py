"""The one interface every world implements, and the registry that builds them by name.

The agent only talks to a `NavEnv`; `make_env("embedded" | "habitat" | "camera", cfg)` picks the
backend. Backends are imported lazily so optional extras (habitat_sim, pyrealsense2) are only
needed by the users who choose them.
"""
from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

import numpy as np

from envs.types import Action, Episode, EpisodeMetrics, Observation, Pose


@runtime_checkable
class NavEnv(Protocol):
    """ObjectNav-style world. `render_at` may raise NotImplementedError on a real rig."""

    hfov_deg: float
    width: int
    height: int

    def reset(self, episode: Episode | None = None, seed: int | None = None) -> Observation: ...

    def step(self, action: Action | int) -> Observation: ...

    def render_at(self, pose: Pose) -> Observation: ...

    @property
    def episode(self) -> Episode | None: ...

    @property
    def done(self) -> bool: ...

    def metrics(self) -> EpisodeMetrics: ...

    def close(self) -> None: ...


# name -> "module:factory"; factory(cfg) -> NavEnv. Extend with register_env().
ENV_REGISTRY: dict[str, str] = {
    "embedded": "envs.embedded.world:make_embedded_env",
    "habitat": "envs.habitat.env:make_habitat_env",
    "camera": "envs.camera.env:make_camera_env",
}


def register_env(name: str, target: str) -> None:
    ENV_REGISTRY[name] = target


def make_env(name: str, cfg: Any = None) -> NavEnv:
    if name not in ENV_REGISTRY:
        raise ValueError(f"unknown env {name!r}; choose one of {sorted(ENV_REGISTRY)}")
    module, _, attr = ENV_REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)(cfg)


def intrinsics_of(env: NavEnv) -> np.ndarray:
    from envs.geometry import intrinsics_from_hfov

    return intrinsics_from_hfov(env.hfov_deg, env.width, env.height)
