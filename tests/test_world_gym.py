"""gymnasium wrapper: registration, env_checker, render_mode (vector envs: test_gym_vector.py)."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs.gym_env  # noqa: F401  (registers v4s/ObjectNav-v0)
from envs.embedded.categories import CATEGORIES


def test_check_env_and_render():
    env = gym.make("v4s/ObjectNav-v0", render_mode="rgb_array", scene_seeds=[0, 1, 2])
    check_env(env.unwrapped, skip_render_check=False)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert CATEGORIES[obs["goal"]] == info["target_category"] and info["instruction"].endswith("centre of the frame.")
    frame = env.render()
    assert frame.shape == (128, 128, 3) and np.array_equal(frame, obs["rgb"])
    obs2, r, term, trunc, info2 = env.step(0)  # STOP ends the episode
    assert term and not trunc and isinstance(r, float) and info2["success"] in (0.0, 1.0)
    with pytest.raises(ValueError, match="out of range"):
        env.unwrapped.step(7)
    env.close()


def test_same_seed_same_observation():
    env = gym.make("v4s/ObjectNav-v0", scene_seeds=[0, 1])
    a, _ = env.reset(seed=11)
    b, _ = env.reset(seed=11)
    assert np.array_equal(a["rgb"], b["rgb"]) and np.array_equal(a["pose"], b["pose"])
    env.close()
