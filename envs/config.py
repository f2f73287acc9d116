"""Turning whatever a caller holds into a validated backend config dataclass.

Every backend config (WorldConfig, HabitatConfig, CameraConfig) is built through `coerce_config`, so a
dataclass, a plain dict, a Hydra/omegaconf DictConfig or None all work, and an unknown key is one clear
error line listing the valid keys.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

# Keys a Hydra group file may carry besides the dataclass fields (the group's own name).
IGNORED_KEYS = frozenset({"name", "_target_"})


def coerce_config(cls: type[T], cfg: Any, group: str, ignore: Iterable[str] = ()) -> T:
    """Build `cls` from None | cls | other dataclass | Mapping | DictConfig; unknown keys are an error."""
    if cfg is None:
        return cls()
    if isinstance(cfg, cls):
        return cfg
    if type(cfg).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(cfg, resolve=True)
    elif dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = dataclasses.asdict(cfg)
    if not isinstance(cfg, Mapping):
        raise TypeError(f"{group} config must be a dict, dataclass or DictConfig, got {type(cfg).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    skipped = IGNORED_KEYS | frozenset(ignore)
    unknown = sorted(set(cfg) - names - skipped)
    if unknown:
        raise ValueError(f"unknown {group} key(s) {unknown}; valid keys: {sorted(names)}")
    return cls(**{k: v for k, v in cfg.items() if k in names})
