"""Errors of the embedded world: one line each, saying what is wrong and how to fix it."""
from __future__ import annotations


class WorldError(RuntimeError):
    """Base class for embedded-world errors."""


class RenderBackendError(WorldError):
    """MuJoCo could not create a headless OpenGL context."""


class NoReachableTargetError(WorldError, ValueError):
    """A scene has no reachable instance of the requested category (or of any ObjectNav category)."""
