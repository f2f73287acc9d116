"""Headless OpenGL for MuJoCo: pick EGL before mujoco is imported, and explain failures in one line.

MuJoCo reads MUJOCO_GL once, when `mujoco` is first imported, so this module must be imported
before anything else imports mujoco (envs.embedded.render does so). Headless EGL is the only
supported mode; OSMesa works too (slow software rendering).
"""
from __future__ import annotations

import os
import sys

SUPPORTED = ("egl", "osmesa")
EGL_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1"


def ensure_backend() -> str:
    """Set MUJOCO_GL=egl if unset and mujoco is not imported yet; return the backend in use.

    Raises RenderBackendError if mujoco was already imported with a backend we cannot use headless."""
    from envs.embedded.errors import RenderBackendError

    backend = os.environ.get("MUJOCO_GL", "").strip().lower()
    if "mujoco" not in sys.modules:
        if not backend:
            os.environ["MUJOCO_GL"] = backend = "egl"
        elif backend not in SUPPORTED:
            raise RenderBackendError(
                f"MUJOCO_GL={backend!r} is not supported by the embedded world (headless only): "
                f"unset it or set MUJOCO_GL=egl (or MUJOCO_GL=osmesa) before starting Python"
            )
        return backend
    # mujoco already imported: its GLContext class was fixed at import time

    # mujoco imports its GL backend module (mujoco.egl / mujoco.osmesa / mujoco.glfw) at import time
    for name in SUPPORTED:
        if f"mujoco.{name}" in sys.modules:
            return name
    ctx_mod = "mujoco.glfw" if "mujoco.glfw" in sys.modules else "none"
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if not has_display:
        raise RenderBackendError(
            f"mujoco was imported before envs.embedded with MUJOCO_GL={backend or 'unset'} (backend "
            f"{ctx_mod}) and there is no display: export MUJOCO_GL=egl before starting Python, "
            f"or import envs.embedded.world before mujoco"
        )
    return backend or "glfw"


def create_context(width: int, height: int):
    """A current mujoco.GLContext, or RenderBackendError with the packages/env var to fix it."""
    from envs.embedded.errors import RenderBackendError

    backend = ensure_backend()
    import mujoco

    try:
        ctx = mujoco.GLContext(width, height)
        ctx.make_current()
    except Exception as e:  # EGL/OSMesa failures surface as assorted ctypes/OpenGL errors
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if backend == "osmesa":
            raise RenderBackendError(
                f"MuJoCo could not create an OSMesa context ({msg}): install libosmesa6 "
                f"(apt-get install libosmesa6) or use MUJOCO_GL=egl"
            ) from None
        raise RenderBackendError(
            f"MuJoCo could not create a headless EGL context (MUJOCO_GL={backend}: {msg}): install "
            f"{EGL_PACKAGES} (apt-get install {EGL_PACKAGES}), or set MUJOCO_GL=osmesa with libosmesa6"
        ) from None
    return ctx
