"""Planners on the real embedded MuJoCo world (64x64 for speed): oracle succeeds on an easy
episode, explore runs within budget, and imagination faults (NaN video, no box) end in a replan."""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest

from envs.types import Action
from models.types import ImaginedVideo
from planners.base import Plan
from planners.explore import ExplorePlannerConfig
from planners.factory import make_planner
from planners.grounding import GroundingPlannerConfig
from planners.oracle import OraclePlannerConfig

world_mod = pytest.importorskip("envs.embedded.world")
task_mod = pytest.importorskip("envs.embedded.task")
from envs.embedded.config import WorldConfig  # noqa: E402
from models.memory import Memory  # noqa: E402
from v4s_agent.agent import run_episode  # noqa: E402


@pytest.fixture(scope="module")
def env():
    e = world_mod.make_embedded_env(WorldConfig(width=64, height=64))
    yield e
    e.close()


@pytest.fixture(scope="module")
def easy_episode():
    eps = task_mod.make_episodes("test", 6, 0)
    return min(eps, key=lambda e: e.geodesic_start_distance)


class BrokenImagination:
    """Returns what a diverged sampler gives: float frames full of NaN, or plain copies (no box)."""

    height = width = 64
    num_frames = 8

    def __init__(self, kind: str) -> None:
        self.kind, self.calls = kind, 0

    def ground(self, context, instruction, num_samples=1, seed=0):
        self.calls += 1
        if self.kind == "raise":
            raise FloatingPointError("sampler produced NaN latents")
        if self.kind == "nan":
            return ImaginedVideo(frames=np.full((num_samples, 8, 64, 64, 3), np.nan, np.float32), mode="grounding")
        last = context.frames[-1]
        return ImaginedVideo(frames=np.repeat(last[None, None], 8, axis=1).repeat(num_samples, axis=0), mode="grounding")

    navigate = ground


def test_oracle_imagination_renders_a_readable_box(env, easy_episode):
    from models.red_box import detect_red_box
    from planners.oracle import OracleImagination

    obs = env.reset(easy_episode)
    mem = Memory()
    mem.add(obs)
    oi = OracleImagination(env, 64, 64, num_frames=12, num_box_frames=3)
    v = oi.ground(mem.select_context(1, size=(64, 64)), "find it", num_samples=2)
    assert v.frames.shape == (2, 12, 64, 64, 3) and v.frames.dtype == np.uint8
    assert v.meta["poses_rel"].shape == (2, 12, 4, 4)
    np.testing.assert_allclose(v.meta["poses_rel"][0, 0], np.eye(4), atol=1e-6)  # starts at the agent
    assert detect_red_box(v.frames[0]) is not None
    assert detect_red_box(v.frames[0, :-3]) is None  # only the trailing frames carry the box


def test_oracle_succeeds_on_an_easy_episode(env, easy_episode):
    planner = make_planner(OraclePlannerConfig(), env, seed=0)
    res = run_episode(env, planner, easy_episode, max_steps=80, look_around=False)
    assert res.stopped, res.trace.notes
    assert res.metrics.success == 1.0, (res.metrics, res.trace.notes)
    assert res.metrics.spl > 0.0
    assert all(isinstance(p, Plan) for _, p in res.trace.plans)


def test_explore_respects_the_step_budget(env, easy_episode):
    planner = make_planner(ExplorePlannerConfig(), env, seed=0)
    res = run_episode(env, planner, easy_episode, max_steps=25, look_around=True)
    assert len(res.trace.actions) <= 25
    assert res.metrics.num_steps == len(res.trace.actions)
    assert len(res.trace.poses) == len(res.trace.actions) + 1
    rec = res.record()
    for k in ("success", "spl", "soft_spl", "distance_to_goal", "seconds_per_plan", "num_plans"):
        assert k in rec


@pytest.mark.parametrize("kind, needle", [("nan", "NaN"), ("raise", "imagination failed"), ("copy", "no usable sample")])
def test_imagination_faults_replan_never_crash(env, easy_episode, kind, needle):
    from planners.grounding import GroundingPlanner

    imag = BrokenImagination(kind)
    planner = GroundingPlanner(GroundingPlannerConfig(max_failures=2), env, imag)
    res = run_episode(env, planner, easy_episode, max_steps=12, look_around=False)
    notes = " | ".join(res.trace.notes)
    assert needle in notes and "replanning with a new seed" in notes
    assert "turning to change the view" in notes  # after max_failures the agent moves on
    assert res.planner_errors == 0 and not res.stopped
    assert len(res.trace.actions) > 0  # it kept acting
    assert imag.calls >= 2


class TurningImagination:
    """Imagines, with the simulator's renders, turning left 10 degrees a frame, and never draws a box."""

    height = width = 64
    num_frames = 8

    def __init__(self, env) -> None:
        self.env = env

    def ground(self, context, instruction, num_samples=1, seed=0):
        from envs.geometry import apply_relative, pose_to_matrix

        start = self.env.agent_pose
        poses = [apply_relative(start, np.zeros(3), np.array([np.radians(10.0 * k), 0.0, 0.0])) for k in range(8)]
        frames = np.stack([self.env.render_at(p, semantic=False).rgb for p in poses])
        rel = np.stack([np.linalg.inv(pose_to_matrix(start)) @ pose_to_matrix(p) for p in poses])  # what readback=true uses
        return ImaginedVideo(frames=np.repeat(frames[None], num_samples, axis=0), mode="grounding",
                             meta={"poses_rel": np.repeat(rel[None], num_samples, axis=0)})

    navigate = ground


@pytest.mark.parametrize("no_box", ["turn", "path"])
def test_no_box_turns_or_follows_the_imagined_path(env, easy_episode, no_box):
    from planners.grounding import GroundingPlanner

    # readback=true reads the imagined poses directly: this test is about the planner's choice
    cfg = GroundingPlannerConfig(no_box=no_box, max_failures=1, readback="true")
    planner = GroundingPlanner(cfg, env, TurningImagination(env))
    obs = env.reset(easy_episode)
    mem = Memory()
    mem.add(obs)
    planner.reset(easy_episode, obs, mem)
    plan = planner.plan(obs, mem)
    assert "no confident red box" in plan.note
    if no_box == "turn":
        assert "turning to change the view" in plan.note and plan.chosen is None
        assert plan.actions == [Action.TURN_LEFT] * 3  # 90 degrees in 30-degree turns
    else:
        # 70 degrees imagined -> two (or three) 30-degree turns left
        assert "following the imagined path" in plan.note and plan.chosen == (0, 0)
        assert plan.actions and set(plan.actions) == {Action.TURN_LEFT} and 2 <= len(plan.actions) <= 3, plan.actions
    with pytest.raises(ValueError, match="no_box"):
        GroundingPlannerConfig(no_box="wander")


def test_grounding_with_tiny_pipeline_runs_a_few_steps(env, easy_episode):
    mp = pytest.importorskip("models.pipeline")
    pipe = mp.tiny_pipeline(0, num_inference_steps=1)
    planner = make_planner(GroundingPlannerConfig(num_samples=2, context_frames=4, max_failures=1), env, pipe, seed=0)
    res = run_episode(env, planner, easy_episode, max_steps=2, look_around=False)
    assert res.trace.plans, "planner never ran"
    plans = [p for _, p in res.trace.plans]
    assert any(p.videos for p in plans), res.trace.notes
    v = next(p.videos[0] for p in plans if p.videos)
    assert v.frames.shape[0] == 2 and v.frames.shape[2:] == (pipe.height, pipe.width, 3)
    assert res.planner_errors == 0, res.trace.notes
    assert all(p.seconds > 0 for p in plans)


def test_cem_searches_navigation_videos(env, easy_episode):
    """CEM over pose paths, imagined (here: rendered) in navigation mode, scored against the goal view."""
    from planners.cem import CEMPlanner, CEMPlannerConfig
    from planners.oracle import OracleImagination

    imag = OracleImagination(env, 64, 64, num_frames=10, num_box_frames=2)
    planner = CEMPlanner(CEMPlannerConfig(num_candidates=3, num_elites=1, iterations=2), env, imag)
    res = run_episode(env, planner, easy_episode, max_steps=12, look_around=False)
    first = res.trace.plans[0][1]
    nav = [v for v in first.videos if v.mode == "navigation"]
    assert first.videos[0].mode == "grounding" and 1 <= len(nav) <= 6
    assert all(v.waypoints.shape == (10, 6) for v in nav)
    scored = [d.score for d in first.samples[-1] if not d.rejected]
    assert scored and all(np.isfinite(scored))
    assert first.actions and first.path_world
    assert res.metrics.distance_to_goal < easy_episode.geodesic_start_distance  # it made progress


def test_pose_following_reaches_its_waypoints_and_stops(env, easy_episode):
    from planners.pose_following import PoseFollowingPlanner, PoseFollowingPlannerConfig

    cfg = PoseFollowingPlannerConfig(waypoints=[[0.0, 0.0, 0.0, 1.5708, 0.0, 0.0]], imagine=False)  # turn 90 deg left
    planner = PoseFollowingPlanner(cfg, env)
    res = run_episode(env, planner, easy_episode, max_steps=10, look_around=False)
    assert res.stopped
    assert res.trace.actions == [Action.TURN_LEFT] * 3 + [Action.STOP]
