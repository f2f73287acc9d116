"""Turning whatever a caller holds into a validated backend config dataclass.

Every backend config (WorldConfig, HabitatConfig, CameraConfig) is built through `coerce_config`, so a
dataclass, a plain dict, a Hydra/omegaconf DictConfig or None all work, and an unknown key is one clear
error line listing the valid keys.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad value in a config: the message is one line naming the key and the fix."""


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def check_at_least(obj: Any, **minimums: float) -> None:
    """Each named field of `obj` is at least its minimum (checked in the order given), else one line:
    ValueError `NAME must be >= MIN, got VALUE`."""
    for name, low in minimums.items():
        value = getattr(obj, name)
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    """`value` (of the option or argument `name`) is one of `allowed`, else one line:
    ValueError `NAME must be one of CHOICES, got VALUE`."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def check_one_of(obj: Any, **choices: Iterable[Any]) -> None:
    """Each named field of `obj` is one of its choices (checked in the order given), see `check_choice`."""
    for name, allowed in choices.items():
        check_choice(name, getattr(obj, name), allowed)

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


def parse_overrides(cls: type[T], argv: Iterable[str]) -> T:
    """`key=value` command-line overrides (OmegaConf dot-list syntax, as Hydra takes them) -> a `cls`
    instance: OmegaConf checks every key and value against the dataclass, then `__post_init__` checks
    ranges. Any problem is one ConfigError line (`config_error_line`), the same for every CLI."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    items = []
    for arg in argv:
        key, eq, raw = arg.partition("=")
        if not eq:
            raise ConfigError(f"arguments are key=value, got {arg!r}; valid keys: {sorted(types)}")
        key = key.lstrip("+")  # Hydra's "+key=value" spelling
        if raw.lower() == "none" and "None" in types.get(key, ""):
            raw = "null"
        items.append(f"{key}={raw}")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.from_dotlist(items)))
    except OmegaConfBaseException as e:
        raise ConfigError(config_error_line(e, sorted(types))) from None


def cli_config(cls: type[T], argv: Iterable[str]) -> T:
    """`parse_overrides` for a command's main(): bad input is one `error: ...` line on stderr, exit code 2."""
    try:
        return parse_overrides(cls, argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def json_command(run: Callable[[], Any], errors: tuple[type[BaseException], ...] = (ValueError,)) -> int:
    """A command's body: its result as one JSON line on stdout (exit 0), or, for `errors`, one
    `error: ...` line on stderr (exit 2)."""
    try:
        result = run()
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


def config_error_line(e: BaseException, valid_keys: Iterable[str] | None = None) -> str:
    """One line for a Hydra/OmegaConf composition error: an unknown group choice lists the choices, an
    unknown key names it (and the valid keys when known), a bad value names key, value and the type."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    chain, x = [], e
    while x is not None and x not in chain:
        chain.append(x)
        x = x.__cause__ or x.__context__
    for x in chain:
        options = getattr(x, "options", None)
        missing = getattr(x, "missing_cfg_file", None)
        if options and missing and "/" in missing:  # hydra.errors.MissingConfigException of a config group
            group, _, name = missing.rpartition("/")
            return f"unknown {group} {name!r}; choose one of {sorted(options)} ({group}=NAME)"
        if isinstance(x, OmegaConfBaseException) and getattr(x, "full_key", None):
            if isinstance(x, ConfigKeyError | ConfigAttributeError):
                valid = f"; valid keys: {sorted(valid_keys)}" if valid_keys else ""
                return f"unknown key {x.full_key!r}{valid}"
            if getattr(x, "value", None) is not None:
                return f"bad value {x.full_key}={x.value!r}: {str(x.msg).splitlines()[0]}"
            return f"bad value for {x.full_key}: {str(x.msg).splitlines()[0]}"
    for x in chain:
        if isinstance(x, ConfigError):
            return str(x)
    text = " ".join(" ".join(str(x).strip() for x in chain[:2]).split())
    cut = text.find("Config search path")
    return text[:cut].strip() if cut > 0 else text
