"""One typed registry per kind of part: env (envs.base.ENVS), model (models.factory.MODELS), read-back
(planners.readback.READBACKS), detector (planners.detect.DETECTORS) and planner (planners.factory.PLANNERS).

An entry is a name, the part's config dataclass and the part itself (a class or a factory function).
Both may be given as import paths ("pkg.module.Name"), resolved with `hydra.utils.get_object` on first
use, so that a part's heavy dependencies (habitat_sim, torch) load only when it is picked; this is the
one import mechanism used for every kind of part. The run config's Hydra ConfigStore is fed from these
registries (v4s_agent/config.py). Third-party parts register from a module named `v4s_plugin_*`
anywhere on the Python path (`discover_plugins`, LeRobot's plugin convention).
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from envs.config import ConfigError

PLUGIN_PREFIX = "v4s_plugin_"


def _path(obj: Any) -> str:
    return obj if isinstance(obj, str) else f"{obj.__module__}.{obj.__qualname__}"


def import_object(path: str) -> Any:
    """The object at "pkg.module.Name" (hydra.utils.get_object, which names the path on failure)."""
    from hydra.utils import get_object

    try:
        return get_object(path)
    except ImportError as e:  # Hydra wraps the import error; keep the module's own one-line message
        if isinstance(e.__cause__, ImportError):
            raise e.__cause__ from None
        raise


@dataclass(frozen=True)
class Entry:
    """One registered part: `target` is the class/factory, `config` its config dataclass."""

    name: str
    target: str
    config: str | None = None

    def load(self) -> Any:
        return import_object(self.target)

    def config_class(self) -> type | None:
        return None if self.config is None else import_object(self.config)


class Registry:
    """name -> Entry for one kind of part. `key` is the override that picks one (e.g. `planner`)."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind, self.key = kind, key
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: Any, config: Any = None) -> Entry:
        """Add (or replace) `name`; `target` and `config` are objects or "pkg.module.Name" paths."""
        entry = Entry(name, _path(target), None if config is None else _path(config))
        self._entries[name] = entry
        return entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def get(self, name: str) -> Entry:
        """The entry, or ConfigError with one line listing the choices."""
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of {self.names()} ({self.key}=NAME)")
        return self._entries[name]


def discover_plugins() -> list[str]:
    """Import every top-level module named `v4s_plugin_*` on the Python path (each registers its
    parts when imported); returns their names. Idempotent: Python imports a module once."""
    names = sorted(m.name for m in pkgutil.iter_modules() if m.name.startswith(PLUGIN_PREFIX))
    for name in names:
        importlib.import_module(name)
    return names
