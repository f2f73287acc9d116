"""The agent loop and the runner core on the real embedded world: planner exceptions become a
turn (never a crash), Ctrl-C keeps the finished episodes, resume skips them."""
from __future__ import annotations

import json
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest

from envs.types import Action
from planners.base import Plan

pytest.importorskip("envs.embedded.world")
pytest.importorskip("envs.embedded.task")

from models.factory import ModelConfig  # noqa: E402
from planners.explore import ExplorePlannerConfig  # noqa: E402
from v4s_agent import agent as agent_mod  # noqa: E402
from v4s_agent.config import EnvConfig, RunConfig  # noqa: E402
from v4s_agent.run import read_done, run_episodes  # noqa: E402


def small_cfg(tmp_path, episodes=2, max_steps=10) -> RunConfig:
    return RunConfig(
        env=EnvConfig(name="embedded", config={"width": 64, "height": 64}),
        planner=ExplorePlannerConfig(),
        model=ModelConfig(name="none"),
        run_name="t",
        output_dir=str(tmp_path),
        episodes=episodes,
        max_steps=max_steps,
        rerun="none",
        video="none",
        progress=False,
    )


def test_planner_exception_becomes_a_turn(tmp_path):
    from envs.embedded.config import WorldConfig
    from envs.embedded.task import make_episodes
    from envs.embedded.world import make_embedded_env

    class Flaky:
        name = "flaky"

        def __init__(self):
            self.n = 0

        def reset(self, episode, obs, memory):
            pass

        def plan(self, obs, memory):
            self.n += 1
            if self.n % 2:
                raise RuntimeError("boom")
            return Plan(actions=[Action.MOVE_FORWARD])

    env = make_embedded_env(WorldConfig(width=64, height=64))
    try:
        ep = make_episodes("test", 1, 0)[0]
        res = agent_mod.run_episode(env, Flaky(), ep, max_steps=6, look_around=False)
    finally:
        env.close()
    assert res.planner_errors == 3
    assert res.trace.actions == [Action.TURN_LEFT, Action.MOVE_FORWARD] * 3
    assert any("boom" in n for n in res.trace.notes)


def test_ctrl_c_keeps_finished_episodes_and_resume_skips_them(tmp_path, monkeypatch):
    real = agent_mod.run_episode
    calls = {"n": 0}

    def interrupt_second(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(agent_mod, "run_episode", interrupt_second)
    out = run_episodes(small_cfg(tmp_path))
    assert out.interrupted
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["num_steps"] <= 10

    # a hard crash mid-write leaves a torn last line: it is dropped, nothing is glued onto it
    with (tmp_path / "results.jsonl").open("a") as f:
        f.write(lines[0][: len(lines[0]) // 2])
    monkeypatch.setattr(agent_mod, "run_episode", real)
    calls["n"] = 0
    out2 = run_episodes(small_cfg(tmp_path))
    assert not out2.interrupted and len(out2.records) == 2
    text = (tmp_path / "results.jsonl").read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 2
    assert [json.loads(x)["episode_id"] for x in text.splitlines()] == [r["episode_id"] for r in out2.records]
    done = read_done(tmp_path / "results.jsonl")
    assert len(done) == 2  # only the missing episode was run and appended
    assert json.loads(lines[0])["episode_id"] in done
