"""gymnasium 1.x wrapper of the embedded world, registered as `v4s/ObjectNav-v0`.

Observation (Dict): rgb (H, W, 3) uint8, depth (H, W, 1) float32 metres, pose (5,) float32
(x, y, z, yaw, pitch; Habitat frame), goal = category index into envs.embedded.categories.CATEGORIES.
`obs_keys` keeps a subset (RL on pixels: obs_keys=("rgb", "goal") skips the depth read-back).
Reward (habitat-lab ObjectNav style): decrease of geodesic distance to the goal, +2.5 on success,
-0.01 per step. `info` carries the metrics every step; the episode's constants (instruction text,
episode id, scene seed, target category) come with reset only, so vector envs don't ship the
instruction string through their pipes on every step.
Vectorised: gymnasium.make_vec(ENV_ID, num_envs=N, vectorization_mode="async" | "sync"); contexts are
fork-safe (envs.embedded.gl), so AsyncVectorEnv's default fork works after the parent rendered.
`register_envs()` runs at import; envs/__init__.py may import it (registration cannot live there).
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ENV_ID = "v4s/ObjectNav-v0"
SUCCESS_REWARD = 2.5
SLACK_REWARD = -0.01
OBS_KEYS = ("rgb", "depth", "pose", "goal")


class ObjectNavEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        render_mode: str | None = None,
        split: str = "train",
        scene_seeds: list[int] | None = None,
        allow_look: bool = False,
        obs_keys: tuple[str, ...] | list[str] = OBS_KEYS,
        world_cfg: Any = None,
        **world_kwargs: Any,
    ) -> None:
        from envs.embedded.categories import CATEGORIES
        from envs.embedded.config import WorldConfig
        from envs.splits import split_seeds

        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not supported; use None or 'rgb_array'")
        keys = (obs_keys,) if isinstance(obs_keys, str) else tuple(obs_keys)
        if not keys or any(k not in OBS_KEYS for k in keys) or len(set(keys)) != len(keys):
            raise ValueError(f"obs_keys={obs_keys!r} is invalid: pass distinct keys out of {OBS_KEYS}, e.g. ('rgb', 'goal')")
        self.obs_keys = tuple(k for k in OBS_KEYS if k in keys)
        cfg = WorldConfig.from_any(world_cfg) if world_cfg is not None else WorldConfig()
        if world_kwargs:
            cfg = WorldConfig.from_any({**asdict(cfg), **world_kwargs})
        if "depth" in self.obs_keys and not cfg.render_depth:
            raise ValueError("render_depth=False but obs_keys has 'depth': leave 'depth' out of obs_keys instead")
        # instance ids are not part of the observation; depth only when asked for
        cfg = WorldConfig.from_any({**asdict(cfg), "render_semantic": False, "render_depth": "depth" in self.obs_keys})
        self.cfg = cfg
        self.render_mode = render_mode
        self._seeds = list(scene_seeds) if scene_seeds is not None else split_seeds(split)
        if not self._seeds:
            raise ValueError("scene_seeds is empty; pass at least one scene seed or a split name")
        H, W = cfg.height, cfg.width
        spaces_all = {
            "rgb": spaces.Box(0, 255, (H, W, 3), np.uint8),
            "depth": spaces.Box(float(cfg.depth_min), float(cfg.depth_max), (H, W, 1), np.float32),
            "pose": spaces.Box(
                np.array([-1e3, -1e3, -1e3, -np.pi, -np.pi / 2], np.float32),
                np.array([1e3, 1e3, 1e3, np.pi, np.pi / 2], np.float32),
                (5,),
                np.float32,
            ),
            "goal": spaces.Discrete(len(CATEGORIES)),
        }
        self.observation_space = spaces.Dict({k: spaces_all[k] for k in self.obs_keys})
        self.action_space = spaces.Discrete(6 if allow_look else 4)
        self._world = None
        self._last_rgb: np.ndarray | None = None
        self._categories = CATEGORIES
        self._goal = 0

    @property
    def world(self):
        if self._world is None:  # created lazily: AsyncVectorEnv builds envs in the worker processes
            from envs.embedded.world import EmbeddedWorld

            self._world = EmbeddedWorld(self.cfg, scene_seed=self._seeds[0])
        return self._world

    def _obs(self, o) -> dict[str, Any]:
        self._last_rgb = o.rgb
        obs = {"rgb": o.rgb, "depth": None if o.depth is None else o.depth[..., None], "pose": None, "goal": self._goal}
        if "pose" in self.obs_keys:
            obs["pose"] = o.pose.as_array()
        return {k: obs[k] for k in self.obs_keys}

    @staticmethod
    def _metrics_info(m) -> dict[str, Any]:
        return {
            "success": m.success,
            "spl": m.spl,
            "soft_spl": m.soft_spl,
            "distance_to_goal": m.distance_to_goal,
            "collisions": m.collisions,
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        from envs.embedded.errors import NoReachableTargetError
        from envs.embedded.task import make_episode

        options = options or {}
        ep = options.get("episode")
        if ep is None:
            for _ in range(16):  # the rare seed without a reachable target is skipped
                scene_seed = int(options.get("scene_seed", self._seeds[int(self.np_random.integers(len(self._seeds)))]))
                try:
                    ep = make_episode(scene_seed, self.np_random, category=options.get("category"), world=self.world)
                    break
                except NoReachableTargetError:
                    if "scene_seed" in options:
                        raise
        o = self.world.reset(ep)
        ep = self.world.episode
        self._goal = int(self._categories.index(ep.target_category))
        m = self.world.metrics()
        self._prev_d = m.distance_to_goal
        info = {
            "instruction": o.instruction,
            "episode_id": ep.episode_id,
            "scene_seed": ep.scene_seed,
            "target_category": ep.target_category,
            **self._metrics_info(m),
        }
        return self._obs(o), info

    def step(self, action):
        try:
            a = int(action)
        except (TypeError, ValueError):
            a = -1
        if np.ndim(action) != 0 or not 0 <= a < self.action_space.n:
            raise ValueError(
                f"action {action!r} is out of range for {self.action_space}; "
                f"0=STOP 1=MOVE_FORWARD 2=TURN_LEFT 3=TURN_RIGHT (4=LOOK_UP 5=LOOK_DOWN with allow_look=True)"
            )
        action = a
        o = self.world.step(action)
        m = self.world.metrics()
        d = m.distance_to_goal
        reward = (self._prev_d - d) if np.isfinite(d) and np.isfinite(self._prev_d) else 0.0
        reward += SUCCESS_REWARD * m.success + SLACK_REWARD
        self._prev_d = d
        terminated = action == 0
        truncated = self.world.done and not terminated
        return self._obs(o), float(reward), terminated, truncated, self._metrics_info(m)

    def render(self):
        if self.render_mode == "rgb_array":
            return None if self._last_rgb is None else self._last_rgb.copy()
        return None

    def close(self) -> None:
        if self._world is not None:
            self._world.close()
            self._world = None


def register_envs() -> None:
    """Register `v4s/ObjectNav-v0` with gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="envs.gym_env:ObjectNavEnv", max_episode_steps=500)


register_envs()
