"""The packages import only downward: envs < models < planners < v4s_agent (import-linter "layers"
contract in pyproject.toml; every import counts, lazy ones and TYPE_CHECKING ones included)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
           "--no-cache", "--config", str(root / "pyproject.toml")]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_layers_contract_is_kept():
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The contract can fail: a copy of the packages where envs imports models is rejected."""
    for pkg in ("envs", "models", "planners", "v4s_agent"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "models" / "types.py").write_text("X = 1\n")
    (tmp_path / "envs" / "task.py").write_text("def f():\n    from models.types import X\n    return X\n")  # lazy, upward
    r = lint_imports(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "envs.task -> models.types" in r.stdout and "BROKEN" in r.stdout
