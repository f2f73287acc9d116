"""The code passes the project's ruff rules (pyproject.toml [tool.ruff]): unused names, import order,
bugbear. Runs the real linter so CI catches what review would."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed: pip install -e '.[dev]'")
    r = subprocess.run([ruff, "check", "--output-format", "concise", "."], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"ruff found problems (fix them, or `ruff check --fix .`):\n{r.stdout}{r.stderr}"
