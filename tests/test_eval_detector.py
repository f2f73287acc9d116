"""`python -m v4s_agent.eval detector`: the stop's fire rate at controlled poses, on the real embedded
world (oracle detection fires facing the target and nowhere else), and bad input in one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _eval(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "v4s_agent.eval", "detector", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_semantic_detector_fires_facing_the_target_only():
    p = _eval("detector=semantic", "episodes=1")
    assert p.returncode == 0, p.stderr[-800:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["episodes"] == 1 and r["split"] == "val"
    assert r["fires_facing"] == 1.0
    assert r["fires_away90"] == r["fires_away180"] == r["fires_start"] == 0.0
    assert "facing=1" in p.stderr


def test_bad_detector_setting_is_one_line():
    p = _eval("detector.min_votes=9")
    assert p.returncode == 2
    assert "min_votes" in p.stderr and "Traceback" not in p.stderr
