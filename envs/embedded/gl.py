"""Headless OpenGL for MuJoCo: pick EGL before mujoco is imported, and explain failures in one line.

MuJoCo reads MUJOCO_GL once, when `mujoco` is first imported, so this module must be imported
before anything else imports mujoco (envs.embedded.render does so). Headless EGL is the only
supported mode; OSMesa works too (slow software rendering).

Fork safety. On CPU machines EGL renders with Mesa's llvmpipe, which by default starts
rasteriser threads (LP_NUM_THREADS, one per core) beside each GL context. A process forked after
that (gymnasium AsyncVectorEnv and SB3 SubprocVecEnv fork by default) inherits the driver's state
but not its threads, and its first texture upload waits for them forever. So:
- `ensure_backend` sets LP_NUM_THREADS=0 unless the user set it: llvmpipe then rasterises in the
  calling thread (no slower at the world's 128² frames; vector envs parallelise across processes);
- a fork hook notes whether llvmpipe threads existed at fork time; `create_context` in such a child
  raises one RenderBackendError naming the fix instead of hanging;
- contexts belong to the process that made them (render.GLRenderer records its PID and builds a
  fresh context in a forked child).
"""
from __future__ import annotations

import os
import sys

SUPPORTED = ("egl", "osmesa")
EGL_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1"
RASTER_THREADS = "LP_NUM_THREADS"  # llvmpipe's rasteriser thread count, read when its first context is made

# (pid, llvmpipe threads) of the process at its latest fork; a forked child sees its parent's entry
_at_fork: tuple[int, tuple[str, ...]] = (os.getpid(), ())


def gl_worker_threads() -> tuple[str, ...]:
    """Names of this process's llvmpipe rasteriser threads (Mesa names them 'llvmpipe-N')."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:  # no procfs: nothing to report
        return ()
    names = []
    for t in tasks:
        try:
            with open(f"/proc/self/task/{t}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # the thread ended while we listed them
            continue
    return tuple(sorted(n for n in names if n.startswith("llvmpipe")))


def _note_fork() -> None:
    global _at_fork
    _at_fork = (os.getpid(), gl_worker_threads())


os.register_at_fork(before=_note_fork)


def check_not_forked_from_threaded_gl() -> None:
    """RenderBackendError if this process was forked from one whose GL driver had worker threads:
    a context made here would wait for those threads forever on its first draw."""
    from envs.embedded.errors import RenderBackendError

    parent, threads = _at_fork
    if parent != os.getpid() and threads:
        raise RenderBackendError(
            f"this process was forked from pid {parent} after it had started OpenGL with {len(threads)} llvmpipe "
            f"rasteriser threads, which a forked process cannot use (rendering would hang): start workers with "
            f"'spawn' (AsyncVectorEnv(..., context='spawn'), SubprocVecEnv(..., start_method='spawn')) or leave "
            f"{RASTER_THREADS} unset (envs.embedded then sets it to 0) in the parent"
        )


def ensure_backend() -> str:
    """Set MUJOCO_GL=egl if unset and mujoco is not imported yet; return the backend in use.

    Raises RenderBackendError if mujoco was already imported with a backend we cannot use headless."""
    from envs.embedded.errors import RenderBackendError

    os.environ.setdefault(RASTER_THREADS, "0")  # see the module docstring (fork safety)
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
    check_not_forked_from_threaded_gl()
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
