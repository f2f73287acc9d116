"""The error every optional backend raises when its extra is not installed.

One line that says what is missing and the exact command that fixes it, so `python -m v4s_agent.run
env=habitat` can print it and exit non-zero instead of dumping an ImportError traceback.
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType

# habitat-sim README ("[Recommended] Conda Packages"); conda-build/matrix_builder.py builds py3.9 only.
HABITAT_CONDA_CMD = "conda install habitat-sim withbullet headless -c conda-forge -c aihabitat"
HABITAT_PYTHONS = "3.9"
# habitat-sim BUILD_FROM_SOURCE.md (headless, with Bullet); needs cmake and EGL dev headers.
HABITAT_SOURCE_CMD = (
    "git clone --branch stable https://github.com/facebookresearch/habitat-sim && cd habitat-sim && "
    "pip install -r requirements.txt && python setup.py install --headless --with-bullet"
)


class BackendUnavailableError(ImportError):
    """An optional backend's dependency is missing. `str(err)` is one actionable line."""


def habitat_unavailable_message(reason: str = "") -> str:
    why = f" ({reason})" if reason else ""
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return (
        f"env=habitat needs habitat_sim, which is not importable in Python {py}{why}; its conda package "
        f"(`{HABITAT_CONDA_CMD}`) is built for Python {HABITAT_PYTHONS} only, so for this Python {py} build it "
        f"from source into this venv: `{HABITAT_SOURCE_CMD}` (see README, Habitat backend), or use env=embedded"
    )


def require_habitat_sim() -> ModuleType:
    """Import habitat_sim or raise BackendUnavailableError with the install command."""
    try:
        return importlib.import_module("habitat_sim")
    except ImportError as e:  # missing package, or a broken build (libEGL, numpy ABI)
        reason = "not installed" if getattr(e, "name", None) == "habitat_sim" else f"import failed: {e}"
        raise BackendUnavailableError(habitat_unavailable_message(reason)) from e


class SceneError(ValueError):
    """A scene, semantic annotation or episode file that cannot be used. `str(err)` is one line that
    names the file and the fix; `python -m v4s_agent.run` prints it and exits 2."""
