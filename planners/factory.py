"""Planner registry + factory: `make_planner(cfg, env, imagination)` builds the planner named `cfg.name`.

Every planner class takes `(cfg, env, imagination=None, seed=0)`; its config dataclass sits beside it
in the same module. Adding a planner is one module plus one YAML file: the module defines the config
(a `planners.base.PlannerConfig` subclass) and the class and calls `PLANNERS.register(name, cls, cfg_cls)`;
the YAML in a `planner/` config folder picks its schema (`defaults: [/schema/planner/<name>@_here_]`).
Outside this repository, name the module `v4s_plugin_<anything>` (it is imported at start-up) and pass
its YAML folder with `hydra.searchpath=[file:///path/to/conf]`. tests/test_planner_plugin.py does both.
"""
from __future__ import annotations

from typing import Any

from envs.base import NavEnv
from envs.registry import Registry
from models.factory import MODELS
from models.types import Imagination
from planners.base import Planner, PlannerError

PLANNERS = Registry("planner", key="planner")
PLANNERS.register("grounding", "planners.grounding.GroundingPlanner", "planners.grounding.GroundingPlannerConfig")
PLANNERS.register("oracle", "planners.oracle.OraclePlanner", "planners.oracle.OraclePlannerConfig")
PLANNERS.register("pose_following", "planners.pose_following.PoseFollowingPlanner",
                  "planners.pose_following.PoseFollowingPlannerConfig")
PLANNERS.register("cem", "planners.cem.CEMPlanner", "planners.cem.CEMPlannerConfig")
PLANNERS.register("explore", "planners.explore.ExplorePlanner", "planners.explore.ExplorePlannerConfig")
PLANNERS.register("imagine", "planners.imagine.ImaginePlanner", "planners.imagine.ImaginePlannerConfig")
# the imagination-quality dial renders with the simulator, so it lives beside the oracle (planners)
MODELS.register("oracle_noisy", "planners.oracle.noisy_oracle", "planners.oracle.NoisyOracleConfig")


# planners that look for the target through a planners.detect detector (`detector=` applies to them)
TAKES_DETECTOR = {"explore", "imagine", "grounding", "oracle"}


def make_planner(cfg: Any, env: NavEnv, imagination: Imagination | None = None, seed: int = 0, detector: Any = None) -> Planner:
    """Build the planner named `cfg.name` (ConfigError listing the choices for an unknown name).
    `detector`: a planners.detect detector, or None for the planner's own."""
    name = getattr(cfg, "name", None)
    cls = PLANNERS.get(name).load()
    if detector is None:
        return cls(cfg, env, imagination, seed=seed)
    if name not in TAKES_DETECTOR:
        raise PlannerError(f"planner {name!r} does not look for a target; drop detector=")
    return cls(cfg, env, imagination, seed=seed, detector=detector)
