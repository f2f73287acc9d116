"""The agent loop: observe -> memory.add -> planner -> controller actions -> env.step.

One episode: reset, look around (a full turn, so the first imagination has context), then plan and
execute until the planner says STOP, the env ends the episode, or `max_steps` actions were taken.
Observers (the Rerun/GIF recorder) watch the loop; they never change it. A planner exception is
recorded and answered with a turn in place (never a crashed episode); KeyboardInterrupt passes
through so the caller can keep the finished episodes.
"""
from __future__ import annotations

import logging
import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from envs.base import NavEnv
from envs.types import Action, Episode, EpisodeMetrics, Observation, Pose
from planners.base import Plan, Planner

log = logging.getLogger(__name__)

MAX_EMPTY_PLANS = 3  # plans in a row without actions before the agent turns on its own


class EpisodeObserver(Protocol):
    def on_start(self, env: NavEnv, episode: Episode) -> None: ...

    def on_observation(self, step: int, obs: Observation) -> None: ...

    def on_plan(self, step: int, plan: Plan) -> None: ...

    def on_end(self, result: EpisodeResult) -> None: ...


@dataclass
class EpisodeTrace:
    """What happened: every pose and action, and every plan with the step it was made at."""

    poses: list[Pose] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    plans: list[tuple[int, Plan]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class EpisodeResult:
    episode: Episode
    metrics: EpisodeMetrics
    trace: EpisodeTrace
    seconds: float
    planner: str
    stopped: bool  # the agent called STOP (vs. ran out of steps / the env ended it)
    planner_errors: int = 0
    replans_after_collision: int = 0

    @property
    def plan_seconds(self) -> list[float]:
        return [p.seconds for _, p in self.trace.plans]

    def record(self) -> dict[str, Any]:
        """One results.jsonl line (plain JSON types; NaN becomes null)."""
        m = self.metrics

        def num(v: float) -> float | None:
            return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)

        ps = self.plan_seconds
        return {
            "episode_id": self.episode.episode_id,
            "scene_seed": int(self.episode.scene_seed),
            "target_category": self.episode.target_category,
            "planner": self.planner,
            "success": num(m.success),
            "spl": num(m.spl),
            "soft_spl": num(m.soft_spl),
            "distance_to_goal": num(m.distance_to_goal),
            "path_length": num(m.path_length),
            "num_steps": int(m.num_steps),
            "collisions": int(m.collisions),
            "stopped": bool(self.stopped),
            "num_plans": len(ps),
            "seconds_per_plan": num(float(np.mean(ps))) if ps else None,
            "episode_seconds": num(self.seconds),
            "planner_errors": int(self.planner_errors),
            "replans_after_collision": int(self.replans_after_collision),
            "extra": {k: num(v) for k, v in (m.extra or {}).items()},
        }


def _look_around(turn_deg: float) -> list[Action]:
    try:
        from models.memory import look_around_actions

        return list(look_around_actions(turn_deg))
    except ImportError:  # pragma: no cover - memory module always ships with the agent
        return [Action.TURN_LEFT] * int(math.ceil(360.0 / turn_deg - 1e-6))


def run_episode(
    env: NavEnv,
    planner: Planner,
    episode: Episode | None,
    max_steps: int,
    *,
    look_around: bool = True,
    observers: list[EpisodeObserver] | None = None,
    memory_cfg: Any = None,
    seed: int | None = None,
) -> EpisodeResult:
    """Run one episode to STOP / env done / `max_steps` actions; returns metrics and the trace."""
    from models.memory import Memory

    observers = observers or []
    t0 = time.perf_counter()
    obs = env.reset(episode, seed=seed) if episode is not None else env.reset(seed=seed)
    episode = env.episode or episode
    if episode is None:
        raise ValueError("the env returned no episode after reset; pass an Episode to run_episode")
    memory = Memory(memory_cfg) if memory_cfg is not None else Memory()
    trace = EpisodeTrace()
    for o in observers:
        o.on_start(env, episode)

    steps = 0
    stopped = False

    def observe(o: Observation) -> None:
        memory.add(o)
        if o.pose is not None:
            trace.poses.append(o.pose)
        for ob in observers:
            ob.on_observation(steps, o)

    def act(a: Action) -> Observation:
        nonlocal steps
        o = env.step(a)
        steps += 1
        trace.actions.append(int(a))
        return o

    observe(obs)
    if look_around:
        for a in _look_around(env.turn_degrees):
            if env.done or steps >= max_steps:
                break
            obs = act(a)
            observe(obs)
    planner.reset(episode, obs, memory)

    empty, errors, collisions = 0, 0, 0
    while not env.done and steps < max_steps and not stopped:
        try:
            plan = planner.plan(obs, memory)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # a planner bug must not kill the run: record it, turn, go on
            errors += 1
            msg = f"planner error at step {steps}: {type(e).__name__}: {e}"
            if errors == 1:
                log.warning("%s\n%s", msg, traceback.format_exc())
            plan = Plan(actions=[Action.TURN_LEFT], note=msg)
        trace.plans.append((steps, plan))
        if plan.note:
            trace.notes.append(f"{steps}: {plan.note}")
        for ob in observers:
            ob.on_plan(steps, plan)
        actions = list(plan.actions)
        if not actions:
            empty += 1
            if empty < MAX_EMPTY_PLANS:
                continue
            actions, empty = [Action.TURN_LEFT], 0
        else:
            empty = 0
        for a in actions:
            if env.done or steps >= max_steps:
                break
            before = obs.pose
            obs = act(Action(a))
            observe(obs)
            if a == Action.STOP:
                stopped = True
                break
            if a == Action.MOVE_FORWARD and before is not None and obs.pose is not None and obs.pose.position == before.position:
                collisions += 1  # bumped into something: the rest of this plan assumed the move
                break

    result = EpisodeResult(
        episode=episode,
        metrics=env.metrics(),
        trace=trace,
        seconds=time.perf_counter() - t0,
        planner=getattr(planner, "name", type(planner).__name__),
        stopped=stopped,
        planner_errors=errors,
        replans_after_collision=collisions,
    )
    for o in observers:
        o.on_end(result)
    return result
