"""Planner registry + factory: `make_planner(cfg, env, imagination)` builds a planner by name.

Registry values are "module:Class" strings imported lazily, so a planner's heavy dependencies are
only loaded when it is picked. `register_planner` lets a plugin add one without editing this file.
"""
from __future__ import annotations

import importlib
from typing import Any

from envs.base import NavEnv
from models.types import Imagination
from planners.base import Planner, PlannerError

PLANNER_REGISTRY: dict[str, str] = {
    "grounding": "planners.grounding:GroundingPlanner",
    "oracle": "planners.oracle:OraclePlanner",
    "pose_following": "planners.pose_following:PoseFollowingPlanner",
    "cem": "planners.cem:CEMPlanner",
    "explore": "planners.explore:ExplorePlanner",
}

# Planners that need a generative imagination (the others build their own or need none).
NEEDS_IMAGINATION = {"grounding", "cem"}


def register_planner(name: str, target: str) -> None:
    PLANNER_REGISTRY[name] = target


def planner_names() -> list[str]:
    return sorted(PLANNER_REGISTRY)


def check_planner_name(name: str) -> None:
    if name not in PLANNER_REGISTRY:
        raise PlannerError(f"unknown planner {name!r}; choose one of {planner_names()} (planner=NAME)")


def make_planner(cfg: Any, env: NavEnv, imagination: Imagination | None = None, seed: int = 0) -> Planner:
    """Build the planner named `cfg.name`. The oracle builds its imagination from the env."""
    name = getattr(cfg, "name", None)
    check_planner_name(name)
    module, _, attr = PLANNER_REGISTRY[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if name == "oracle":
        from planners.oracle import OracleImagination

        imag = OracleImagination(env, cfg.height, cfg.width, cfg.num_frames, cfg.num_box_frames)
        return cls(cfg, env, imag, seed=seed)
    if name == "explore":
        return cls(cfg, env, seed=seed)
    if name in NEEDS_IMAGINATION and imagination is None:
        raise PlannerError(f"planner {name!r} needs an imagination; pick model=tiny (shipped checkpoint) or model=random, not model=none")
    return cls(cfg, env, imagination, seed=seed)
