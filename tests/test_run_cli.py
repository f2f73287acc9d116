"""Subprocess smoke tests of `python -m v4s_agent.run` and `python -m v4s_agent.eval agent`:
results.jsonl lines + .rrd + .gif per episode, resume, one-line errors for bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["env.config.width=64", "env.config.height=64", "max_steps=30", "seed=0", "split=test"]


def run(module: str, *args: str, timeout: int = 100) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": "egl", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


needs_world = pytest.mark.skipif(not (ROOT / "envs/embedded/world.py").exists(), reason="embedded world not built yet")


@needs_world
def test_oracle_run_writes_results_recordings_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["planner=oracle", "episodes=2", f"output_dir={out}", "run_name=smoke", *SMALL]
    p = run("v4s_agent.run", *args)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2
    recs = [json.loads(line) for line in lines]
    for r in recs:
        for k in ("episode_id", "success", "spl", "soft_spl", "distance_to_goal", "seconds_per_plan", "num_steps"):
            assert k in r
        assert r["num_steps"] <= 30
        stem = "episode_" + "".join(c if c.isalnum() or c in "-_." else "_" for c in r["episode_id"])
        rrd, gif = out / f"{stem}.rrd", out / f"{stem}.gif"
        assert rrd.stat().st_size > 1000 and gif.stat().st_size > 1000
        assert gif.read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["episodes"] == 2

    # resume: nothing left to do, nothing appended, same summary
    p2 = run("v4s_agent.run", *args)
    assert p2.returncode == 0, p2.stderr[-2000:]
    assert (out / "results.jsonl").read_text().splitlines() == lines
    assert json.loads(p2.stdout.strip().splitlines()[-1])["success"] == summary["success"]


@needs_world
def test_eval_agent_prints_one_json_line(tmp_path):
    p = run("v4s_agent.eval", "agent", "planner=explore", "episodes=1", f"output_dir={tmp_path}", *SMALL)
    assert p.returncode == 0, p.stderr[-2000:]
    out = [line for line in p.stdout.splitlines() if line.strip()]
    assert len(out) == 1
    res = json.loads(out[0])
    for k in ("success", "spl", "soft_spl", "distance_to_goal", "seconds_per_plan", "episodes"):
        assert k in res
    assert res["episodes"] == 1 and res["planner"] == "explore"


@pytest.mark.parametrize(
    "module, args, needle",
    [
        ("v4s_agent.run", ["planner=bogus"], "unknown planner 'bogus'; choose one of ['cem', 'explore', 'grounding'"),
        ("v4s_agent.eval", ["agent", "planner=bogus"], "unknown planner 'bogus'; choose one of ['cem', 'explore', 'grounding'"),
        ("v4s_agent.eval", ["agent", "env=mars"], "unknown env 'mars'; choose one of"),
        ("v4s_agent.run", ["episdes=3"], "unknown key 'episdes'"),
        ("v4s_agent.run", ["episodes=many"], "bad value episodes='many'"),
        ("v4s_agent.eval", ["agent", "planner.gamma=5"], "planner.gamma must be in (0, 1]"),
        ("v4s_agent.eval", ["agent", "env.config.wdith=64"], "wdith"),
        ("v4s_agent.eval", ["agent", "planner=grounding", "model.checkpoint=/nonexistent/ckpt"], "/nonexistent/ckpt"),
        ("v4s_agent.eval", ["nonsense"], "unknown subcommand"),
    ],
)
def test_bad_input_is_one_clear_line(module, args, needle):
    p = run(module, *args)
    assert p.returncode == 2
    assert needle in p.stderr, p.stderr
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr
