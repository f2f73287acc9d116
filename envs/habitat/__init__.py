"""Habitat-sim backend (`env=habitat`).

habitat_sim is conda-only, so nothing here imports it at module level: the pure parts (config,
coordinate/quaternion conversion, action mapping, goals and view points, metrics) work and are
tested without it; only `envs.habitat.sim` touches the real API, lazily.
"""
from envs.errors import BackendUnavailableError
from envs.habitat.config import HabitatConfig

__all__ = ["HabitatConfig", "BackendUnavailableError"]
