"""The one interface every world implements, and the registry that builds them by name.

The agent only talks to a `NavEnv`; `make_env("embedded" | "habitat" | "camera", cfg)` picks the
backend. Backends are imported lazily so optional extras (habitat_sim, pyrealsense2) are only
needed by the users who choose them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from envs.registry import Registry
from envs.types import Action, Episode, EpisodeMetrics, Observation, Pose


@runtime_checkable
class NavEnv(Protocol):
    """ObjectNav-style world. `render_at` may raise NotImplementedError on a real rig."""

    hfov_deg: float
    width: int
    height: int
    forward_step: float  # metres one MOVE_FORWARD moves
    turn_degrees: float  # degrees one TURN_LEFT / TURN_RIGHT turns

    def reset(self, episode: Episode | None = None, seed: int | None = None) -> Observation: ...

    def step(self, action: Action | int) -> Observation: ...

    def render_at(self, pose: Pose) -> Observation: ...

    @property
    def episode(self) -> Episode | None: ...

    @property
    def done(self) -> bool: ...

    def metrics(self) -> EpisodeMetrics: ...

    def close(self) -> None: ...


def parse_action(action: Action | int) -> Action:
    """Validate an int/Action; bad ids get one line naming the valid ones."""
    try:
        return Action(int(action))
    except (ValueError, TypeError):
        valid = ", ".join(f"{a.value}={a.name}" for a in Action)
        raise ValueError(f"unknown action {action!r}; valid actions: {valid}") from None


@dataclass
class ActionSteps:
    """How far one discrete action moves, for every backend (habitat-lab ObjectNav: 0.25 m, 30 deg, 30 deg).
    Each backend's config extends it (same keys everywhere) and range-checks the values its own way."""

    forward_step: float = 0.25  # metres one MOVE_FORWARD moves
    turn_angle_deg: float = 30.0  # degrees one TURN_LEFT / TURN_RIGHT turns
    tilt_angle_deg: float = 30.0  # degrees one LOOK_UP / LOOK_DOWN tilts

    def amount(self, action: Action | int) -> tuple[float, str]:
        """(size, unit) of one action: (0.25, "m"), (30.0, "deg"); STOP is (0.0, "")."""
        a = parse_action(action)
        if a is Action.MOVE_FORWARD:
            return self.forward_step, "m"
        if a in (Action.TURN_LEFT, Action.TURN_RIGHT):
            return self.turn_angle_deg, "deg"
        if a in (Action.LOOK_UP, Action.LOOK_DOWN):
            return self.tilt_angle_deg, "deg"
        return 0.0, ""


@dataclass
class ObjectNavSpec(ActionSteps):
    """The agent, its camera and the task rules an ObjectNav world declares (habitat-lab ObjectNav HM3D
    defaults at 128x128). The embedded world and Habitat extend it, so they agree by construction."""

    width: int = 128  # camera pixels
    height: int = 128
    hfov_deg: float = 79.0
    sensor_height: float = 0.88  # camera above the floor (m)
    agent_radius: float = 0.18  # collision radius (m)
    max_episode_steps: int = 500
    view_point_radius: float = 1.0  # view points: navigable, within this distance of the object, object visible
    success_distance: float = 0.1  # STOP within this geodesic distance of a view point succeeds (habitat-lab)


class EpisodeBookkeeping:
    """Episode state for backends whose `step()` shares one prologue and epilogue (camera rig,
    Habitat): validate the action, refuse a step before `reset()` or after the end, count it, and end
    the episode at the step budget. The embedded world shares the state and the properties; its
    `step()` keeps its own prologue (its error lines are part of the gym env's contract)."""

    _episode: Episode | None = None
    _done: bool = False
    _called_stop: bool = False
    _steps: int = 0
    _over_reason: str = "STOP or max_episode_steps reached"
    cfg: ActionSteps  # the backend's config

    @property
    def forward_step(self) -> float:
        return float(self.cfg.forward_step)

    @property
    def turn_degrees(self) -> float:
        return float(self.cfg.turn_angle_deg)

    def _begin_step(self, action: Action | int) -> Action:
        a = parse_action(action)
        if self._episode is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError(f"episode is over ({self._over_reason}); call reset()")
        self._steps += 1
        if a is Action.STOP:
            self._called_stop = self._done = True
        return a

    def _end_step(self, max_episode_steps: int) -> None:
        if self._steps >= max_episode_steps:
            self._done = True

    @property
    def episode(self) -> Episode | None:
        return self._episode

    @property
    def done(self) -> bool:
        return self._done


# Worlds: name -> factory(cfg) -> NavEnv, with the backend's config dataclass. Add one with ENVS.register.
ENVS = Registry("env", key="env")
ENVS.register("embedded", "envs.embedded.world.make_embedded_env", "envs.embedded.config.WorldConfig")
ENVS.register("habitat", "envs.habitat.factory.make_habitat_env", "envs.habitat.config.HabitatConfig")
ENVS.register("camera", "envs.camera.env.make_camera_env", "envs.camera.config.CameraConfig")


def make_env(name: str, cfg: Any = None) -> NavEnv:
    """The world `name` built from `cfg` (its config dataclass, a dict or a DictConfig)."""
    return ENVS.get(name).load()(cfg)


def intrinsics_of(env: NavEnv) -> np.ndarray:
    from envs.geometry import intrinsics_from_hfov

    return intrinsics_from_hfov(env.hfov_deg, env.width, env.height)
