"""`imagine` on the real embedded world: with a perfect dial setting (model=oracle_noisy, p_wrong=0)
it reaches the goal; with no imagination it is frontier exploration action for action. Plus the
dial's knobs and the detectors."""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest

from planners.base import PlannerError
from planners.explore import ExplorePlannerConfig
from planners.factory import make_planner
from planners.imagine import ImaginePlannerConfig

world_mod = pytest.importorskip("envs.embedded.world")
task_mod = pytest.importorskip("envs.embedded.task")
from envs.embedded.config import WorldConfig  # noqa: E402
from models.memory import Memory  # noqa: E402
from v4s_agent.agent import run_episode  # noqa: E402


@pytest.fixture(scope="module")
def env():
    e = world_mod.make_embedded_env(WorldConfig())  # the agent's default 128x128 (64x64 stops short here)
    yield e
    e.close()


@pytest.fixture(scope="module")
def episode():
    # a fixed episode whose target is not in view from the start: the agent must search for it
    return task_mod.make_episodes("val", 1, 0)[0]


@pytest.fixture(scope="module")
def explored(env, episode):
    """Frontier exploration's first 45 steps on the episode (it sees the target and stops at step 44)."""
    return run_episode(env, make_planner(ExplorePlannerConfig(), env, seed=0), episode, max_steps=45)


def _noisy(env, **knobs):
    from planners.oracle import NoisyOracleImagination

    return NoisyOracleImagination(env, **knobs)


def test_imagine_with_a_perfect_imagination_reaches_the_goal(env, episode):
    planner = make_planner(ImaginePlannerConfig(), env, _noisy(env, p_wrong=0.0), seed=0)
    res = run_episode(env, planner, episode, max_steps=90, look_around=True)
    assert res.stopped and res.metrics.success == 1.0, (res.metrics, res.trace.notes[-8:])
    assert res.planner_errors == 0, [n for n in res.trace.notes if "planner error" in n][:2]
    assert any(p.imagined for _, p in res.trace.plans)
    assert any("imagined target" in n for n in res.trace.notes)  # the belief, not luck, led it there


def test_imagine_without_imagination_is_frontier_exploration(env, episode, explored):
    a = explored
    b = run_episode(env, make_planner(ImaginePlannerConfig(), env, None, seed=0), episode, max_steps=45)
    assert len(a.trace.actions) >= 40  # a real search (it sees the target and stops at step 44)
    assert b.trace.actions == a.trace.actions
    assert [p.note for _, p in b.trace.plans] == [p.note for _, p in a.trace.plans]


def test_dial_knobs(env, episode):
    from models.red_box import detect_red_box

    obs = env.reset(episode)
    mem = Memory()
    mem.add(obs)
    ctx = mem.select_context(1, size=(48, 48))
    clean = _noisy(env, resolution=48).ground(ctx, "", num_samples=2, seed=3)
    assert clean.frames.shape == (2, 12, 48, 48, 3) and clean.meta["poses_rel"].shape == (2, 12, 4, 4)
    assert detect_red_box(clean.frames[0]) is not None
    again = _noisy(env, resolution=48).ground(ctx, "", num_samples=2, seed=3)
    np.testing.assert_array_equal(clean.frames, again.frames)  # seeded
    no_box = _noisy(env, resolution=48, p_no_box=1.0).ground(ctx, "", num_samples=2, seed=3)
    assert all(detect_red_box(f) is None for f in no_box.frames)
    np.testing.assert_array_equal(no_box.frames[:, :8], clean.frames[:, :8])  # only the box is gone
    drift = _noisy(env, resolution=48, pose_noise_m=0.5, pose_noise_deg=20).ground(ctx, "", num_samples=2, seed=3)
    moved = np.linalg.norm(drift.meta["poses_rel"][:, -1, :3, 3] - clean.meta["poses_rel"][:, -1, :3, 3], axis=1)
    assert moved.max() > 0.05
    wrong = _noisy(env, resolution=48, p_wrong=1.0).ground(ctx, "", num_samples=4, seed=3)
    ends = wrong.meta["poses_rel"][:, 7, :3, 3]
    assert not np.allclose(ends, clean.meta["poses_rel"][0, 7, :3, 3], atol=1e-3)
    blurred = _noisy(env, resolution=48, blur=1.5).ground(ctx, "", num_samples=1, seed=3)
    assert np.abs(np.diff(blurred.frames[0, 1].astype(float), axis=1)).mean() < np.abs(np.diff(clean.frames[0, 1].astype(float), axis=1)).mean()


def test_semantic_detector_refuses_a_backend_without_semantics():
    e = world_mod.make_embedded_env(WorldConfig(width=32, height=32, render_semantic=False))
    try:
        with pytest.raises(PlannerError, match="detector=imagination"):
            make_planner(ExplorePlannerConfig(), e, seed=0)
    finally:
        e.close()


def test_imagination_detector_fires_on_a_box_at_the_current_view(env, episode):
    """A video that stays at the current view and ends with a red box: the model says "it is here"."""
    from models.red_box import draw_red_box
    from models.types import ImaginedVideo
    from planners.detect import make_detector

    obs = env.reset(episode)
    frame = obs.rgb
    still = np.repeat(frame[None, None], 12, axis=1)
    boxed = still.copy()
    boxed[0, 8:] = draw_red_box(frame, (20, 20, 44, 44))
    det = make_detector("imagination", env=env, imagination=_noisy(env))
    det.reset(episode, obs)
    box = det(obs, video=ImaginedVideo(frames=boxed, mode="grounding"))
    assert box is not None and abs(box.center[0] - 64) < 6
    assert det(obs, video=ImaginedVideo(frames=still, mode="grounding")) is None


def test_imagination_detector_votes_need_samples_that_agree(env, episode):
    """With min_votes=2 it fires only when two samples draw the same box: a weak model's box that
    follows its noise seed, not the view, lands elsewhere in each sample."""
    from models.red_box import draw_red_box
    from models.types import ImaginedVideo
    from planners.detect import ImaginationDetectorConfig, make_detector

    obs = env.reset(episode)
    still = np.repeat(obs.rgb[None, None], 12, axis=1)
    here, there = still.copy(), still.copy()
    here[0, 8:] = draw_red_box(obs.rgb, (20, 20, 44, 44))
    there[0, 8:] = draw_red_box(obs.rgb, (70, 8, 120, 40))
    det = make_detector("imagination", ImaginationDetectorConfig(num_samples=2, min_votes=2), env=env, imagination=_noisy(env))
    det.reset(episode, obs)
    assert det(obs, video=ImaginedVideo(frames=np.concatenate([here, there]), mode="grounding")) is None
    box = det(obs, video=ImaginedVideo(frames=np.concatenate([here, here]), mode="grounding"))
    assert box is not None and abs(box.center[0] - 64) < 6
    with pytest.raises(ValueError, match="min_votes"):
        ImaginationDetectorConfig(num_samples=2, min_votes=3)


def test_imagine_with_an_imagination_that_adds_no_belief_is_exploration(env, episode, explored):
    """Imagined videos that add nothing to the belief (no box, hints weighted 0) leave the search
    frontier exploration action for action: a rollout re-picks the frontier only when belief is
    worth `switch_margin` metres more (before, every rollout re-picked the nearest one, and the agent
    dithered between frontiers)."""
    a = explored
    planner = make_planner(ImaginePlannerConfig(hint_weight=0.0), env, _noisy(env, p_no_box=1.0), seed=0)
    b = run_episode(env, planner, episode, max_steps=45)
    assert any(p.imagined for _, p in b.trace.plans)
    assert [p.note for _, p in b.trace.plans] == [p.note for _, p in a.trace.plans]
    assert b.trace.actions == a.trace.actions


@pytest.mark.parametrize("p_wrong", [0.0, 1.0])
def test_trust_in_the_imagination_is_measured_per_episode(env, episode, p_wrong):
    """Hypotheses the agent sees near and in plain sight without a detection are misses, those the
    detector confirms are hits: a right imagination gains trust (its belief counts more), one that
    always sends the agent elsewhere loses it (its belief counts less)."""
    planner = make_planner(ImaginePlannerConfig(readback="true"), env, _noisy(env, p_wrong=p_wrong), seed=0)
    run_episode(env, planner, episode, max_steps=60, look_around=True)
    t = planner.trust
    assert planner.hypotheses
    if p_wrong == 0.0:
        assert t.hits >= 2 and t.misses == 0 and t.weight > 1.0, (t.hits, t.misses)
    else:
        assert t.misses >= 2 and t.hits < t.misses and t.weight < 1.0, (t.hits, t.misses)
        assert float(planner.trusted_belief().max()) < float(planner.belief.max())


def test_imagination_detector_keeps_the_box_pixels_above_the_floor(env, episode):
    """The depth at the model's box tells object from floor: the stop rule measures the range to the
    pixels standing above the floor, and a box on bare floor (min_object_share) does not fire."""
    from envs.types import Box2D
    from planners.detect import ImaginationDetectorConfig, make_detector

    obs = env.reset(episode)
    det = make_detector("imagination", ImaginationDetectorConfig(min_object_share=0.5), env=env, imagination=_noisy(env))
    floor = Box2D(0, 112, 128, 128, 0.9)  # the bottom rows: floor about 1.3 m ahead of a 0.88 m high camera
    assert det.object_pixels(floor, obs) is None
    upper = det.object_pixels(Box2D(40, 16, 88, 56, 0.9), obs)  # above the horizon: everything stands above the floor
    assert upper is not None and upper.mask[16:56, 40:88].all() and upper.mask.sum() == 48 * 40
    tall = det.object_pixels(Box2D(40, 16, 88, 128, 0.9), obs)  # down to the floor in front of the agent
    assert tall is not None and tall.mask[16:56, 40:88].all() and not tall.mask[120:, 40:88].any()


def test_a_model_detector_must_pass_the_stop_rule_twice_on_one_spot(env, episode):
    """With a model as the detector, one pass of the stop rule is not a STOP: the next check (a fresh
    rollout) must pass on the same spot; a check without a fire starts over. Oracle detection stops at once."""
    from envs.types import Box2D
    from planners.detect import make_detector, semantic_box

    env.reset(episode)
    obs = env.render_at(env.centring_pose(episode.target_instance_ids[0], pitch=False))
    box = semantic_box(obs.semantic, tuple(episode.target_instance_ids))
    imag = _noisy(env)
    model = make_planner(ImaginePlannerConfig(), env, imag, seed=0, detector=make_detector("imagination", env=env, imagination=imag))
    oracle = make_planner(ImaginePlannerConfig(), env, imag, seed=0)
    for p in (model, oracle):
        p.reset(episode, obs, Memory())
    assert oracle._stop_here(box, obs)
    assert not model._stop_here(box, obs) and model._stop_here(box, obs)
    model._passes = []
    assert not model._stop_here(box, obs)
    off_centre = Box2D(0.0, box.y0, 6.0, box.y1, 1.0)  # fails the rule: the run of passes starts over
    assert not model._stop_here(off_centre, obs) and not model._stop_here(box, obs)
