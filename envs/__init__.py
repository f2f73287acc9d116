"""Worlds that produce observations and execute actions (embedded MuJoCo, Habitat, camera rig).

Importing `envs` registers the gymnasium id `v4s/ObjectNav-v0` (gymnasium only; MuJoCo loads on first use).
"""
from envs.gym_env import register_envs  # noqa: F401  (registration side effect)
