"""The gym env under RL workloads: vector envs after the parent rendered (fork and spawn), make_vec
sync/async, obs_keys, and SB3's SubprocVecEnv training PPO.

Scenarios run in a subprocess of their own process group with a timeout, so a hang fails the test
(and its workers are killed) instead of stalling CI.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import envs.gym_env  # noqa: F401  (registers v4s/ObjectNav-v0)

REPO = Path(__file__).resolve().parents[1]
SMALL = {"scene_seeds": [0, 1], "width": 40, "height": 40}  # SB3's NatureCNN needs at least 36 px

# the day-one pattern: an evaluation env made and stepped in the parent, then workers
VECTOR_AFTER_PARENT_RENDERED = f"""
    import sys
    import gymnasium as gym
    import numpy as np
    import envs

    kw = {SMALL!r}
    ev = gym.make("v4s/ObjectNav-v0", **kw)
    ev.reset(seed=0)
    ev.step(1)
    venv = gym.make_vec("v4s/ObjectNav-v0", num_envs=2, vectorization_mode="async",
                        vector_kwargs={{"context": sys.argv[1]}}, obs_keys=("rgb", "goal"), **kw)
    ref = gym.make_vec("v4s/ObjectNav-v0", num_envs=2, vectorization_mode="sync", obs_keys=("rgb", "goal"), **kw)
    obs, _ = venv.reset(seed=0)
    want, _ = ref.reset(seed=0)
    same = [np.array_equal(obs["rgb"], want["rgb"])]
    for a in ([1, 2], [3, 1], [1, 1]):
        obs, *_ = venv.step(np.array(a))
        want, *_ = ref.step(np.array(a))
        same.append(np.array_equal(obs["rgb"], want["rgb"]) and np.array_equal(obs["goal"], want["goal"]))
    ev.step(2)  # the parent's own env still renders after the fork
    print(sorted(obs), obs["rgb"].shape, all(same), float(obs["rgb"].std()) > 1)
    venv.close()
"""


def _run(code: str, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `code` with `env` overrides (None removes a variable); fail, killing its workers, if it hangs.
    The timeout is generous (seconds on an idle machine) so that a loaded CI box does not read as a hang."""
    full = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    full = {k: v for k, v in full.items() if v is not None}
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=full, cwd=REPO, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # the hung workers too
        p.communicate()
        pytest.fail(f"hung: no result within {timeout} s")
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_async_vector_env_after_the_parent_rendered(context):
    r = _run(VECTOR_AFTER_PARENT_RENDERED, context, env={"LP_NUM_THREADS": None})
    assert r.returncode == 0, r.stderr[-3000:]
    # workers render exactly what in-process envs render for the same seeds and actions
    assert r.stdout.strip().splitlines()[-1] == "['goal', 'rgb'] (2, 40, 40, 3) True True", r.stdout


def test_fork_after_threaded_llvmpipe_is_one_clear_error():
    """A parent that chose llvmpipe rasteriser threads itself cannot lend GL to forked workers:
    the workers raise RenderBackendError naming the fix, they never hang."""
    r = _run(VECTOR_AFTER_PARENT_RENDERED, "fork", env={"LP_NUM_THREADS": "2"})
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode != 0 and last.startswith("envs.embedded.errors.RenderBackendError"), r.stderr[-3000:]
    assert "context='spawn'" in last and "LP_NUM_THREADS" in last


def test_check_env_obs_keys_and_step_info():
    env = gym.make("v4s/ObjectNav-v0", obs_keys=("rgb", "goal"), **SMALL)
    check_env(env.unwrapped)
    obs, info = env.reset(seed=1)
    assert set(obs) == {"rgb", "goal"} and env.observation_space.contains(obs)
    assert env.unwrapped.world.cfg.render_depth is False  # depth is not even read back
    assert {"instruction", "episode_id", "target_category", "spl"} <= set(info)
    _, _, _, _, info = env.step(1)
    assert set(info) == {"success", "spl", "soft_spl", "distance_to_goal", "collisions"}
    env.close()
    with pytest.raises(ValueError, match="obs_keys"):
        gym.make("v4s/ObjectNav-v0", obs_keys=("rgb", "semantic"))


def test_sb3_ppo_on_subproc_vec_env_after_an_eval_env():
    pytest.importorskip("stable_baselines3")
    code = f"""
        import gymnasium as gym
        import torch
        import envs
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import SubprocVecEnv

        torch.set_num_threads(1)  # batches of 2 frames: a second intra-op thread only spins (12 s CPU vs 0.3 s)
        kw = dict(obs_keys=("rgb", "goal"), **{SMALL!r})
        ev = gym.make("v4s/ObjectNav-v0", **kw)
        ev.reset(seed=0)
        ev.step(1)
        venv = make_vec_env("v4s/ObjectNav-v0", n_envs=2, seed=0, env_kwargs=kw, vec_env_cls=SubprocVecEnv,
                            vec_env_kwargs={{"start_method": "fork"}})
        model = PPO("MultiInputPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu", verbose=0)
        before = [p.detach().clone() for p in model.policy.parameters()]
        model.learn(total_timesteps=256)
        changed = any(not (a == b.detach()).all() for a, b in zip(before, model.policy.parameters()))
        action, _ = model.predict(ev.reset(seed=3)[0], deterministic=True)
        print(model.num_timesteps, changed, ev.action_space.contains(int(action)))
        venv.close()
    """
    r = _run(code, env={"LP_NUM_THREADS": None})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "256 True True", r.stdout


def test_bench_vector_contract():
    """`bench vector` reports one env and N envs sync/async side by side, headline = async 2 / one env
    (speed targets are measured by the bench, not here); a bad option is one line and exit 2."""
    code = """
        import sys
        from v4s_agent.bench import main
        sys.exit(main(["vector", "num_envs=2", "steps=4", "rounds=2", "width=16", "height=16", "obs_keys=rgb"]))
    """
    r = _run(code, env={"LP_NUM_THREADS": None})
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(out["results"]) == {"single", "sync_2", "async_2"} and out["headline"].startswith("async_2")
    single, async2 = out["results"]["single"], out["results"]["async_2"]
    assert out["ratio"] == pytest.approx(async2["env_steps_per_s"] / single["env_steps_per_s"], abs=2e-3)
    assert async2["cpu_ms_per_env_step"] > async2["parent_cpu_ms_per_env_step"] >= 0  # the workers' CPU is counted
    assert set(out["cpu_bound_ratios"]) == set(out["ratios"]) == {"sync_2", "async_2"}
    assert out["cpu_bound_ratios"]["async_2"] == pytest.approx(  # 2 processes on >= 2 cores at their CPU cost
        min(2, out["cpu_count"]) * single["cpu_ms_per_env_step"] / async2["cpu_ms_per_env_step"], abs=2e-3)
    prof = out["single_step_profile"]
    assert 0 < prof["raw_render_cpu_ms"] and prof["rest_of_step_cpu_ms"] == pytest.approx(
        prof["step_cpu_ms"] - prof["raw_render_cpu_ms"], abs=2e-3)
    assert len(out["load_avg_start"]) == 3 and out["obs_keys"] == ["rgb"]
    bad = subprocess.run([sys.executable, "-m", "v4s_agent.bench", "vector", "num_envs=0"], capture_output=True,
                         text=True, cwd=REPO, timeout=300)
    assert bad.returncode == 2 and bad.stdout == "" and len(bad.stderr.strip().splitlines()) == 1
    assert "num_envs" in bad.stderr
