"""`env=habitat`: pick the renderer (`env.config.renderer=auto|habitat_sim|mujoco`) and build the env.

`auto` takes habitat_sim when it imports and otherwise the pip-only MuJoCo renderer, saying so in one
notice line on stderr (habitat_sim has no usable Linux wheel on PyPI).
"""
from __future__ import annotations

import importlib
import sys
from typing import Any

from envs.config import coerce_config
from envs.habitat.config import HabitatConfig


def habitat_sim_importable() -> bool:
    try:
        importlib.import_module("habitat_sim")
    except ImportError:  # not installed, or a broken build (libEGL, numpy ABI): the pip renderer works
        return False
    return True


def make_habitat_env(cfg: Any = None) -> Any:
    """Registry factory (`envs.base.make_env("habitat", cfg)`); cfg: HabitatConfig | dict | DictConfig."""
    cfg = coerce_config(HabitatConfig, cfg, "env=habitat")
    renderer = cfg.renderer
    if renderer == "auto":
        renderer = "habitat_sim" if habitat_sim_importable() else "mujoco"
        if renderer == "mujoco":
            print("notice: habitat_sim is not importable, env=habitat renders with MuJoCo (pip-only); "
                  "env.config.renderer=habitat_sim requires habitat_sim", file=sys.stderr)
    if renderer == "habitat_sim":
        from envs.habitat.env import HabitatEnv

        return HabitatEnv(cfg)
    from envs.habitat.mesh_world import MeshWorld

    return MeshWorld(cfg)
