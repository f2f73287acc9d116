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


class BackendUnavailableError(ImportError):
    """An optional backend's dependency is missing. `str(err)` is one actionable line."""


def habitat_unavailable_message(reason: str = "") -> str:
    why = f" ({reason})" if reason else ""
    return (
        f"env=habitat needs habitat_sim, which is not importable in Python "
        f"{sys.version_info.major}.{sys.version_info.minor}{why}; install it with "
        f"`{HABITAT_CONDA_CMD}` in a conda env with Python {HABITAT_PYTHONS} (habitat-sim's conda "
        f"builds target Python {HABITAT_PYTHONS} only: `conda create -n habitat python=3.9 cmake=3.14.0`), "
        f"or use env=embedded"
    )


def require_habitat_sim() -> ModuleType:
    """Import habitat_sim or raise BackendUnavailableError with the install command."""
    try:
        return importlib.import_module("habitat_sim")
    except ImportError as e:  # missing package, or a broken build (libEGL, numpy ABI)
        reason = "not installed" if getattr(e, "name", None) == "habitat_sim" else f"import failed: {e}"
        raise BackendUnavailableError(habitat_unavailable_message(reason)) from e
