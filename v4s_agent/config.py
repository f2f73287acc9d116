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

from envs.splits import SPLITS


class ConfigError(ValueError):
    """A bad value in a config: the message is one line naming the key and the fix."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


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

        _check(self.name in ENV_REGISTRY, f"unknown env {self.name!r}; choose one of {sorted(ENV_REGISTRY)} (env=NAME)")

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
        _check(not unknown, f"unknown key(s) {unknown} in env.config for {self.name!r}; valid keys: {sorted(valid)}")
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
        _check(self.name in ("tiny", "random", "none"), f"unknown model {self.name!r}; choose one of ['none', 'random', 'tiny'] (model=NAME)")
        _check(self.num_inference_steps is None or self.num_inference_steps >= 1, "model.num_inference_steps must be >= 1 (or null for the default)")


# ------------------------------------------------------------------------------------ planners
@dataclass
class PlannerConfig:
    """Fields every planner shares."""

    name: str = MISSING
    gamma: float = 0.6  # centring tolerance (paper's IF: |x - x*| <= gamma/2 * W)
    stop_distance: float = 1.0  # metres, by depth inside the target box
    agent_radius: float = 0.18  # metres, for the collision check of read-back paths
    context_frames: int = 8  # frames the memory hands to the imagination
    min_clearance: float = 0.45  # metres of free depth ahead required to step forward

    def __post_init__(self) -> None:
        _check(0.0 < self.gamma <= 1.0, f"planner.gamma must be in (0, 1], got {self.gamma}")
        _check(self.stop_distance > 0, f"planner.stop_distance must be > 0 metres, got {self.stop_distance}")
        _check(self.agent_radius >= 0, f"planner.agent_radius must be >= 0, got {self.agent_radius}")
        _check(self.context_frames >= 1, f"planner.context_frames must be >= 1, got {self.context_frames}")
        _check(self.min_clearance > 0, f"planner.min_clearance must be > 0 metres, got {self.min_clearance}")


@dataclass
class GroundingPlannerConfig(PlannerConfig):
    """Best-of-N grounding videos, receding horizon (issue 5 item 3)."""

    name: str = "grounding"
    num_samples: int = 2  # videos per plan; keep those with a confident box
    min_box_score: float = 0.3
    execute_steps: int = 6  # actions executed before re-imagining
    readback: str = "flow"  # flow | idm | true (true: poses the imagination reports; oracle only)
    max_failures: int = 3  # consecutive failed plans before an exploration move
    near_translation: float = 0.3  # a read-back path shorter than this (m) means "already there"
    # no sample has a confident box: "turn" in place after max_failures plans, or follow the imagined
    # path of the sample with the most confident read-back ("path": imagination still drives the search)
    no_box: str = "turn"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.num_samples >= 1, f"planner.num_samples must be >= 1, got {self.num_samples}")
        _check(self.no_box in ("turn", "path"), f"planner.no_box must be turn | path, got {self.no_box!r}")
        _check(0.0 <= self.min_box_score <= 1.0, f"planner.min_box_score must be in [0, 1], got {self.min_box_score}")
        _check(self.execute_steps >= 1, f"planner.execute_steps must be >= 1, got {self.execute_steps}")
        _check(self.readback in ("flow", "idm", "true"), f"planner.readback must be flow | idm | true, got {self.readback!r}")
        _check(self.max_failures >= 1, f"planner.max_failures must be >= 1, got {self.max_failures}")


@dataclass
class OraclePlannerConfig(GroundingPlannerConfig):
    """Grounding loop with simulator renders as the imagination: the upper bound."""

    name: str = "oracle"
    num_samples: int = 1
    readback: str = "true"
    height: int = 64  # render at the imagination's resolution
    width: int = 64
    num_frames: int = 20
    num_box_frames: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.height >= 16 and self.width >= 16, f"planner.height/width must be >= 16, got {self.height}x{self.width}")
        _check(0 <= self.num_box_frames < self.num_frames, "planner.num_box_frames must be in [0, num_frames)")


@dataclass
class PoseFollowingPlannerConfig(PlannerConfig):
    """Navigation mode along given egocentric waypoints (F, 6); stops when they are done."""

    name: str = "pose_following"
    waypoints: list[list[float]] = field(default_factory=list)  # rows (dx, dy, dz, dyaw, dpitch, droll)
    imagine: bool = True  # imagine the route first (for the viewer); the controller follows the poses

    def __post_init__(self) -> None:
        super().__post_init__()
        for i, w in enumerate(self.waypoints):
            _check(len(w) == 6, f"planner.waypoints[{i}] must have 6 numbers (dx, dy, dz, dyaw, dpitch, droll), got {len(w)}")


@dataclass
class CEMPlannerConfig(PlannerConfig):
    """NWM-style cross-entropy search over pose paths imagined in navigation mode."""

    name: str = "cem"
    num_candidates: int = 4
    num_elites: int = 2
    iterations: int = 2
    horizon_m: float = 1.5  # total forward motion of a candidate path, at most
    max_turn_deg: float = 90.0
    ground_samples: int = 1  # grounding videos that give the goal view and box
    execute_steps: int = 6
    min_box_score: float = 0.3
    max_failures: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.num_candidates >= 2, f"planner.num_candidates must be >= 2, got {self.num_candidates}")
        _check(1 <= self.num_elites <= self.num_candidates, "planner.num_elites must be in [1, num_candidates]")
        _check(self.iterations >= 1, f"planner.iterations must be >= 1, got {self.iterations}")
        _check(self.horizon_m > 0, f"planner.horizon_m must be > 0, got {self.horizon_m}")
        _check(self.execute_steps >= 1, f"planner.execute_steps must be >= 1, got {self.execute_steps}")


@dataclass
class ExplorePlannerConfig(PlannerConfig):
    """No imagination: frontier/random exploration; go to the target once it is seen."""

    name: str = "explore"
    strategy: str = "frontier"  # frontier | random
    scan_every: int = 24  # steps between 360-degree scans

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.strategy in ("frontier", "random"), f"planner.strategy must be frontier | random, got {self.strategy!r}")


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
        _check(self.split in SPLITS, f"unknown split {self.split!r}; choose one of {sorted(SPLITS)} (split=NAME)")
        _check(self.episodes >= 1, f"episodes must be >= 1, got {self.episodes}")
        _check(self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        _check(bool(self.run_name) and "/" not in self.run_name, f"run_name must be a non-empty name without '/', got {self.run_name!r}")
        _check(isinstance(self.planner, PlannerConfig), "planner must be picked from the planner group: planner=" + "|".join(PLANNER_CONFIGS))


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
