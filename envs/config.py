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


class ConfigError(ValueError):
    """A bad value in a config: the message is one line naming the key and the fix."""


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)

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


def parse_key_values(cls: type[T], argv: Iterable[str], what: str = "key") -> dict[str, Any]:
    """`key=value` command-line arguments -> {field: value} typed by `cls`'s dataclass annotations
    (int, float, bool, str, and `X | None` with none/null). One clear error line for a malformed
    argument, an unknown key (`unknown {what} [...]`) or a value of the wrong type."""
    fields = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for arg in argv:
        if "=" not in arg:
            raise ValueError(f"arguments are key=value, got {arg!r}; valid keys: {sorted(fields)}")
        key, raw = arg.split("=", 1)
        key = key.lstrip("+")  # Hydra's "+key=value" spelling
        if key not in fields:
            raise ValueError(f"unknown {what} {key!r}; valid keys: {sorted(fields)}")
        out[key] = _typed(key, raw, fields[key])
    return out


def _typed(key: str, raw: str, t: str) -> Any:
    if raw.lower() in ("none", "null") and "None" in t:
        return None
    try:
        if t.startswith("bool"):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if t.startswith("int"):
            return int(raw)
        if t.startswith("float"):
            return float(raw)
    except ValueError:
        raise ValueError(f"{key}={raw!r} is not a valid {t}") from None
    return raw
