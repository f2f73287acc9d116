"""Typed configs for `run` and `eval agent`, registered in Hydra's ConfigStore from the registries.

Why structured configs: Hydra then rejects unknown keys and wrongly typed values at load time, and
`__post_init__` (run by `OmegaConf.to_object`) rejects out-of-range values — each with one line that
names the key. Each planner's schema is its own config dataclass (beside the planner class, listed in
planners.factory.PLANNERS), stored in the `schema/planner` group so every `conf/planner/<name>.yaml`
is checked against it (habitat-lab style config groups); models and envs likewise.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from envs.base import ENVS
from envs.config import ConfigError, check, config_error_line
from envs.registry import discover_plugins
from envs.splits import SPLITS
from models.factory import MODELS, ModelConfig
from planners.base import PlannerConfig
from planners.detect import DETECTORS
from planners.factory import PLANNERS

# ----------------------------------------------------------------------------------------- env


@dataclass
class EnvConfig:
    """Which world to build. `config` holds the backend's own dataclass fields (e.g. WorldConfig);
    it stays a free-form mapping here because each backend owns and validates its schema."""

    name: str = "embedded"
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ENVS.get(self.name)  # ConfigError listing the choices

    def backend_config(self) -> Any:
        """The backend's typed config built from `config` (unknown key -> one clear line)."""
        try:
            cls = ENVS.get(self.name).config_class()
        except ImportError as e:
            raise ConfigError(f"env {self.name!r} is not available here ({e}); use env=embedded or install that backend") from None
        if cls is None:
            return dict(self.config)
        if not is_dataclass(cls):
            return cls(**self.config)
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(self.config) - valid)
        check(not unknown, f"unknown key(s) {unknown} in env.config for {self.name!r}; valid keys: {sorted(valid)}")
        try:
            return cls(**self.config)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad env.config for {self.name!r}: {e}") from None


# ------------------------------------------------------------------------------------------ run
@dataclass
class RunConfig:
    """One run: `episodes` episodes of `split`, results in `outputs/<run_name>/`."""

    env: EnvConfig = field(default_factory=EnvConfig)
    planner: Any = MISSING  # a config of planners.factory.PLANNERS, picked by the `planner=` group
    model: ModelConfig = field(default_factory=ModelConfig)
    detector: Any = None  # a config of planners.detect.DETECTORS (detector= group); None: the planner's own
    run_name: str = "default"
    output_dir: str = "outputs/${run_name}"
    seed: int = 0
    split: str = "test"
    episodes: int = 1
    max_steps: int = 120  # agent actions per episode, look-around included
    look_around: bool = True
    # episode_<id>.rrd (needs rerun-sdk): save | spawn (also a local viewer) | connect (also rerun_url) | none
    rerun: str = "save"
    rerun_url: str = ""  # rerun=connect: a running viewer's gRPC URL (default rerun+http://127.0.0.1:9876/proxy)
    video: str = "mp4"  # episode video with the map and metrics: mp4 | gif | none
    gif: bool | None = None  # older spelling: gif=false is video=none, gif=true is video=gif
    resume: bool = True  # skip episode_ids already in results.jsonl
    progress: bool = True
    task: str = "objectnav"  # objectnav | pose (waypoint routes, pose-following measures; embedded world)

    def __post_init__(self) -> None:
        check(self.task in ("objectnav", "pose"), f"unknown task {self.task!r}; choose objectnav | pose (task=NAME)")
        check(self.task != "pose" or getattr(self.planner, "name", "") == "pose_following",
              "task=pose needs planner=pose_following (it follows waypoint routes)")
        check(self.split in SPLITS, f"unknown split {self.split!r}; choose one of {sorted(SPLITS)} (split=NAME)")
        check(self.episodes >= 1, f"episodes must be >= 1, got {self.episodes}")
        check(self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        check(bool(self.run_name) and "/" not in self.run_name, f"run_name must be a non-empty name without '/', got {self.run_name!r}")
        self.rerun = {"true": "save", "false": "none"}.get(str(self.rerun).lower(), str(self.rerun))  # rerun=true|false too
        self.video = {"false": "none"}.get(str(self.video).lower(), str(self.video))
        if self.gif is not None:
            self.video, self.gif = ("gif" if self.gif else "none"), None
        check(self.rerun in ("save", "spawn", "connect", "none"), f"rerun must be save | spawn | connect | none, got {self.rerun!r}")
        check(self.video in ("mp4", "gif", "none"), f"video must be mp4 | gif | none, got {self.video!r}")
        check(isinstance(self.planner, PlannerConfig), "planner must be picked from the planner group: planner=" + "|".join(PLANNERS.names()))


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore, fed from the registries (idempotent). Plugins
    (`v4s_plugin_*` modules) are imported first so their parts are registered too."""
    discover_plugins()
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    # Schemas sit in their own `schema/*` groups so they never show up as `planner=` choices.
    cs.store(group="schema/env", name="env", node=EnvConfig)
    cs.store(group="schema/model", name="model", node=ModelConfig)
    for entry in MODELS:
        cs.store(group="schema/model", name=entry.name, node=entry.config_class())
    for entry in PLANNERS:
        cs.store(group="schema/planner", name=entry.name, node=entry.config_class())
    for entry in DETECTORS:
        cs.store(group="schema/detector", name=entry.name, node=entry.config_class())


register_configs()


CONF_DIR = str(Path(__file__).resolve().parent / "conf")


def compose_run_config(overrides: list[str]) -> RunConfig:
    """Hydra compose of conf/config.yaml with `overrides` -> validated RunConfig. Every problem (unknown
    group choice, unknown key, bad value) is one ConfigError line (envs.config.config_error_line)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    register_configs()
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"arguments must be key=value Hydra overrides, got {bad}")
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
            cfg = compose("config", overrides=overrides)
        return OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(config_error_line(e)) from None
