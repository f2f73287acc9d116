"""Typed configs for `run` and `eval agent`, registered in Hydra's ConfigStore.

Why structured configs: Hydra then rejects unknown keys and wrongly typed values at load time, and
`__post_init__` (run by `OmegaConf.to_object`) rejects out-of-range values — each with one line that
names the key. Per-planner schemas live in the `schema/planner` group so every
`conf/planner/<name>.yaml` is checked against its own dataclass (habitat-lab style config groups).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from envs.config import ConfigError, check
from envs.splits import SPLITS
from planners.base import PlannerConfig
from planners.cem import CEMPlannerConfig
from planners.explore import ExplorePlannerConfig
from planners.grounding import GroundingPlannerConfig
from planners.oracle import OraclePlannerConfig
from planners.pose_following import PoseFollowingPlannerConfig

# ----------------------------------------------------------------------------------------- env
# Backend config classes, imported lazily so `env=habitat` works only when that backend exists.
ENV_CONFIG_CLASSES: dict[str, str] = {
    "embedded": "envs.embedded.config:WorldConfig",
    "habitat": "envs.habitat.config:HabitatConfig",
    "camera": "envs.camera.config:CameraConfig",
}


@dataclass
class EnvConfig:
    """Which world to build. `config` holds the backend's own dataclass fields (e.g. WorldConfig);
    it stays a free-form mapping here because each backend owns and validates its schema."""

    name: str = "embedded"
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from envs.base import ENV_REGISTRY

        check(self.name in ENV_REGISTRY, f"unknown env {self.name!r}; choose one of {sorted(ENV_REGISTRY)} (env=NAME)")

    def backend_config(self) -> Any:
        """The backend's typed config built from `config` (unknown key -> one clear line)."""
        target = ENV_CONFIG_CLASSES.get(self.name)
        if target is None:
            return dict(self.config)
        module, _, attr = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except ImportError as e:
            raise ConfigError(f"env {self.name!r} is not available here ({e}); use env=embedded or install that backend") from None
        if not is_dataclass(cls):
            return cls(**self.config)
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(self.config) - valid)
        check(not unknown, f"unknown key(s) {unknown} in env.config for {self.name!r}; valid keys: {sorted(valid)}")
        try:
            return cls(**self.config)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad env.config for {self.name!r}: {e}") from None


# --------------------------------------------------------------------------------------- model
@dataclass
class ModelConfig:
    """Which imagination to load. `tiny`: the shipped checkpoint; `random`: a random-init tiny
    pipeline (tests, wiring checks); `none`: planners that never imagine (explore, oracle)."""

    name: str = "tiny"
    checkpoint: str = "models/checkpoints/v4s-tiny"
    num_inference_steps: int | None = None  # None: the checkpoint's default
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.name in ("tiny", "random", "none"), f"unknown model {self.name!r}; choose one of ['none', 'random', 'tiny'] (model=NAME)")
        check(self.num_inference_steps is None or self.num_inference_steps >= 1, "model.num_inference_steps must be >= 1 (or null for the default)")


# ------------------------------------------------------------------------------------ planners
PLANNER_CONFIGS: dict[str, type[PlannerConfig]] = {
    "grounding": GroundingPlannerConfig,
    "oracle": OraclePlannerConfig,
    "pose_following": PoseFollowingPlannerConfig,
    "cem": CEMPlannerConfig,
    "explore": ExplorePlannerConfig,
}


# ------------------------------------------------------------------------------------------ run
@dataclass
class RunConfig:
    """One run: `episodes` episodes of `split`, results in `outputs/<run_name>/`."""

    env: EnvConfig = field(default_factory=EnvConfig)
    planner: Any = MISSING  # one of PLANNER_CONFIGS, picked by the `planner=` group
    model: ModelConfig = field(default_factory=ModelConfig)
    run_name: str = "default"
    output_dir: str = "outputs/${run_name}"
    seed: int = 0
    split: str = "test"
    episodes: int = 1
    max_steps: int = 120  # agent actions per episode, look-around included
    look_around: bool = True
    rerun: bool = True  # write episode_<id>.rrd (needs rerun-sdk; skipped with a warning otherwise)
    gif: bool = True  # write episode_<id>.gif for people without Rerun
    resume: bool = True  # skip episode_ids already in results.jsonl
    progress: bool = True

    def __post_init__(self) -> None:
        check(self.split in SPLITS, f"unknown split {self.split!r}; choose one of {sorted(SPLITS)} (split=NAME)")
        check(self.episodes >= 1, f"episodes must be >= 1, got {self.episodes}")
        check(self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        check(bool(self.run_name) and "/" not in self.run_name, f"run_name must be a non-empty name without '/', got {self.run_name!r}")
        check(isinstance(self.planner, PlannerConfig), "planner must be picked from the planner group: planner=" + "|".join(PLANNER_CONFIGS))


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    # Schemas sit in their own `schema/*` groups so they never show up as `planner=` choices.
    cs.store(group="schema/model", name="model", node=ModelConfig)
    cs.store(group="schema/env", name="env", node=EnvConfig)
    for name, cls in PLANNER_CONFIGS.items():
        cs.store(group="schema/planner", name=name, node=cls)


register_configs()
