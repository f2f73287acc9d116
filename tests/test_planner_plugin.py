"""Adding a planner is one module plus one YAML file: a plugin planner written here (into tmp_path,
outside the repository) is registered, configured from its YAML, checked against its config
dataclass and run by the real CLI on the embedded world."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODULE = '''
from dataclasses import dataclass

from envs.config import check
from envs.types import Action
from planners.base import Plan, PlannerConfig
from planners.factory import PLANNERS


@dataclass
class SpinPlannerConfig(PlannerConfig):
    name: str = "spin"
    turns: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.turns >= 1, f"planner.turns must be >= 1, got {self.turns}")


class SpinPlanner:
    """Turns left `turns` times, then stops."""

    name = "spin"

    def __init__(self, cfg, env, imagination=None, seed=0):
        self.cfg = cfg

    def reset(self, episode, obs, memory):
        pass

    def plan(self, obs, memory):
        return Plan(actions=[Action.TURN_LEFT] * self.cfg.turns + [Action.STOP], note=f"spin {self.cfg.turns}")


PLANNERS.register("spin", SpinPlanner, SpinPlannerConfig)
'''

YAML = """defaults:
  - /schema/planner/spin@_here_
  - _self_
turns: 3
"""


def _run(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "MUJOCO_GL": "egl"}
    cmd = [sys.executable, "-m", "v4s_agent.eval", "agent", "planner=spin", f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
           "model=none", "episodes=1", "look_around=false", "env.config.width=32", "env.config.height=32", "progress=false",
           *overrides]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_a_plugin_planner_is_one_module_and_one_yaml(tmp_path):
    (tmp_path / "v4s_plugin_spin.py").write_text(MODULE)
    (tmp_path / "conf" / "planner").mkdir(parents=True)
    (tmp_path / "conf" / "planner" / "spin.yaml").write_text(YAML)

    r = _run(tmp_path, "run_name=spin")
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["planner"] == "spin" and out["episodes"] == 1
    rec = json.loads((tmp_path / "outputs" / "spin" / "results.jsonl").read_text().splitlines()[0])
    assert rec["num_steps"] == 4 and rec["stopped"]  # the YAML's turns=3, then STOP: the config came from the plugin's YAML

    bad = _run(tmp_path, "run_name=spin-bad", "planner.turns=0")  # checked by the plugin's dataclass
    assert bad.returncode == 2 and "planner.turns must be >= 1" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
