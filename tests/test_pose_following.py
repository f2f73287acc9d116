"""Pose following: the actuation-noise model, odometry drift, routes and their measures, and the
visual correction against simulator renders (real MuJoCo world, 64x64 for speed)."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest

from envs.geometry import apply_relative, wrap_angle
from envs.metrics import distance_to_polyline
from envs.odometry import ActuationNoise, integrate, moved, noisy_motion
from envs.types import Action, Observation, Pose

world_mod = pytest.importorskip("envs.embedded.world")
from envs.embedded.routes import make_routes  # noqa: E402

NOISE = {"forward_std": 0.05, "lateral_std": 0.05, "turn_std_deg": 3.0, "seed": 7}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def routes():
    return make_routes("test", 3, 0)


@pytest.fixture(scope="module")
def noisy_world():
    w = world_mod.EmbeddedWorld({"actuation_noise": NOISE, "pose_source": "odometry"})  # 128 px, the default
    yield w
    w.close()


def test_noise_model_statistics_over_many_steps():
    noise = ActuationNoise(**NOISE)
    rng = noise.rng("episode")
    turn = math.radians(30)
    fwd = np.array([noisy_motion(Action.MOVE_FORWARD, 0.25, turn, noise, rng) for _ in range(4000)])
    left = np.array([noisy_motion(Action.TURN_LEFT, 0.25, turn, noise, rng) for _ in range(4000)])
    np.testing.assert_allclose(fwd.mean(0), [0.25, 0.0, 0.0], atol=0.004)
    np.testing.assert_allclose(fwd.std(0), [0.05, 0.05, math.radians(3)], rtol=0.06)
    np.testing.assert_allclose(left.mean(0), [0.0, 0.0, turn], atol=0.004)
    np.testing.assert_allclose(left.std(0)[2], math.radians(3), rtol=0.06)
    assert not left[:, :2].any()  # a turn in place does not translate
    off = ActuationNoise()
    assert not off.enabled and noisy_motion(Action.MOVE_FORWARD, 0.25, turn, off, off.rng("e")) == (0.25, 0.0, 0.0)


def test_noise_config_errors_are_one_line():
    with pytest.raises(ValueError, match=r"actuation_noise.turn_std_deg=-1 is invalid"):
        ActuationNoise(turn_std_deg=-1)
    with pytest.raises(ValueError, match=r"unknown actuation_noise key\(s\) \['slip'\]"):
        ActuationNoise.from_any({"slip": 0.1})
    with pytest.raises(ValueError, match="pose_source='imu' is invalid"):
        world_mod.WorldConfig(pose_source="imu")


def test_odometry_drift_equals_the_integrated_noise(noisy_world, routes):
    """Replaying the episode's noise stream reproduces the true pose; odometry is the commands alone."""
    ep = routes[0]
    obs = noisy_world.reset(ep)
    assert obs.pose == ep.start == noisy_world.agent_pose
    actions = [Action.TURN_LEFT, Action.TURN_RIGHT, Action.TURN_RIGHT, Action.TURN_LEFT] * 3
    noise = noisy_world.cfg.actuation_noise
    rng = noise.rng(ep.episode_id)
    true, odom = ep.start, ep.start
    for a in actions:
        obs = noisy_world.step(a)
        true = moved(true, *noisy_motion(a, 0.25, math.radians(30), noise, rng))
        odom = integrate(odom, a, 0.25, math.radians(30))
    assert obs.pose == odom == noisy_world.odometry_pose
    assert obs.pose.yaw == pytest.approx(ep.start.yaw)  # the commands cancel: all drift is noise
    assert noisy_world.agent_pose.yaw == pytest.approx(true.yaw, abs=1e-12)
    drift = float(wrap_angle(noisy_world.agent_pose.yaw - obs.pose.yaw))
    assert drift != 0.0 and abs(drift) < math.radians(30)


def test_forward_motion_drift_and_true_pose_collisions(noisy_world, routes):
    ep = routes[1]
    ep = dataclasses.replace(ep, start=Pose(ep.start.position, ep.waypoints[0].yaw))  # facing the first leg
    noisy_world.reset(ep)
    for _ in range(6):
        noisy_world.step(Action.MOVE_FORWARD)
    true, odom = noisy_world.agent_pose, noisy_world.odometry_pose
    assert noisy_world.navgrid.is_navigable(true.xyz[[0, 2]])  # collisions are checked on the true pose
    moves = 6 - noisy_world.metrics().collisions
    assert moves >= 1 and 0.0 < np.hypot(*(true.xyz - odom.xyz)[[0, 2]]) < 1.0
    assert np.hypot(*(odom.xyz - ep.start.xyz)[[0, 2]]) == pytest.approx(0.25 * moves)


def test_routes_are_executable_and_measured_on_true_poses(routes):
    """Without noise, dead reckoning walks every route exactly: zero final error, success."""
    from planners.pose_following import PoseFollowingPlanner, PoseFollowingPlannerConfig
    from v4s_agent.agent import run_episode

    w = world_mod.EmbeddedWorld({"width": 64, "height": 64, "pose_source": "odometry"})
    planner = PoseFollowingPlanner(PoseFollowingPlannerConfig(imagine=False), w)
    for ep in routes:
        assert 3.0 <= ep.route_length <= 8.0 and len(ep.waypoints) >= 2
        w.load_scene(ep.scene_seed)
        assert all(w.navgrid.is_navigable(p.xyz[[0, 2]]) for p in ep.waypoints)
        res = run_episode(w, planner, ep, 120, look_around=False)
        m = res.metrics
        assert res.stopped and m.success == 1.0
        assert m.extra["final_position_error"] < 1e-6 and m.extra["final_yaw_error_deg"] < 1e-4
        assert m.extra["ate"] < 1e-6
    w.close()


def test_ate_is_the_rms_distance_to_the_route():
    route = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0]])
    d = distance_to_polyline(np.array([[1.0, 0.5], [2.5, 1.0], [3.0, 3.0]]), route)
    np.testing.assert_allclose(d, [0.5, 0.5, math.hypot(1.0, 1.0)])


@pytest.mark.parametrize("offset", [(0.12, 0.0, -0.1, 6.0), (-0.1, 0.0, 0.08, -8.0)])
def test_correction_recovers_an_injected_offset_from_simulator_renders(noisy_world, routes, offset):
    """The real camera is moved off a waypoint by a known offset; comparing its view with a render
    at the waypoint (the oracle's imagined frame, 64 px) recovers that offset."""
    import cv2

    from planners.relocalize import RelocalizationGate, relocalize

    w = noisy_world
    w.load_scene(routes[0].scene_seed)
    # the waypoint that looks furthest into the room: the read-back needs parallax, not a bare wall
    goal = max(routes[0].waypoints, key=lambda p: float(np.median(w.render_at(p).depth)))
    dx, dy, dz, dyaw = offset
    real_pose = apply_relative(goal, np.array([dx, dy, dz]), np.array([math.radians(dyaw), 0.0, 0.0]))
    real = w.render_at(real_pose)
    reference = cv2.resize(w.render_at(goal).rgb, (64, 64), interpolation=cv2.INTER_AREA)
    rel = relocalize(Observation(real.rgb, real.depth, real_pose), reference, w.hfov_deg)
    assert rel.accepted, rel.reason
    # flow at 64 px under-reads a sideways offset (it is partly explained as a turn): the corrected
    # estimate must be at least twice as close to the truth as the uncorrected one, the yaw within 1.5 degrees
    miss = np.hypot(rel.ref_from_real[0, 3] - dx, rel.ref_from_real[2, 3] - dz)
    assert miss < 0.5 * np.hypot(dx, dz)
    assert rel.yaw_deg == pytest.approx(dyaw, abs=1.5)
    noise = np.random.default_rng(0).integers(0, 255, reference.shape, dtype=np.uint8)  # a useless imagined frame
    assert not relocalize(Observation(real.rgb, real.depth, real_pose), noise, w.hfov_deg).accepted
    # the plausibility bound applies to the change from the prior (the pose estimate's prediction):
    # a prior near the truth passes a tight bound, believing to stand at the waypoint does not
    tight = RelocalizationGate(max_translation=0.05, max_yaw_deg=3.0)
    real_obs = Observation(real.rgb, real.depth, real_pose)
    near = relocalize(real_obs, reference, w.hfov_deg, gate=tight, prior=rel.ref_from_real)
    assert near.accepted, near.reason
    far = relocalize(real_obs, reference, w.hfov_deg, gate=tight, prior=np.eye(4))
    assert not far.accepted and "beyond the plausible drift" in far.reason


def test_intended_path_passes_every_waypoint_one_pose_per_action(routes):
    """The reference poses are the noise-free walk of the route: each waypoint is one of them, in
    order, consecutive poses differ by one action, and the walk ends on the last waypoint."""
    from planners.control import Motion
    from planners.pose_following import intended_path

    ep = routes[0]
    path = intended_path(ep.start, list(ep.waypoints), Motion())
    at = [next(i for i, p in enumerate(path) if np.allclose(p.xyz, g.xyz, atol=1e-9)) for g in ep.waypoints]
    assert at == sorted(at) and at[-1] == len(path) - 1
    assert abs(float(wrap_angle(path[-1].yaw - ep.waypoints[-1].yaw))) < 1e-9
    prev = ep.start
    for p in path:
        step, turn = np.hypot(*(p.xyz - prev.xyz)[[0, 2]]), abs(float(wrap_angle(p.yaw - prev.yaw)))
        assert (step == pytest.approx(0.25) and turn < 1e-9) or (step < 1e-9 and turn == pytest.approx(math.radians(30)))
        prev = p


def test_oracle_correction_removes_most_of_the_drift_on_a_noisy_route(routes):
    """The whole loop on one noisy route (real renders, 64 px): correcting against simulator renders
    at the intended poses ends at most half as far from the last waypoint as dead reckoning, whose
    drift is large here."""
    from planners.pose_following import PoseFollowingPlanner, PoseFollowingPlannerConfig
    from v4s_agent.agent import run_episode

    w = world_mod.EmbeddedWorld({"width": 64, "height": 64, "pose_source": "odometry", "actuation_noise": NOISE})
    ep = routes[2]
    w.load_scene(ep.scene_seed)
    err = {}
    for ref in ("none", "oracle"):
        planner = PoseFollowingPlanner(PoseFollowingPlannerConfig(imagine=False, reference=ref), w)
        res = run_episode(w, planner, ep, 120, look_around=False)
        err[ref] = res.metrics.extra["final_position_error"]
        notes = " ".join(res.trace.notes)
        assert res.stopped and (ref == "oracle") == ("corrected by" in notes)
    w.close()
    assert err["none"] > 0.3, err  # the route drifts: a correction has something to remove
    assert err["oracle"] < 0.5 * err["none"], err


def test_eval_agent_task_pose_reports_the_measures_with_standard_errors(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": "egl"}
    args = ["planner=pose_following", "task=pose", "split=val", "episodes=2", "model=none", "planner.imagine=false",
            "planner.reference=oracle", "env.config.pose_source=odometry", "env.config.actuation_noise.forward_std=0.05",
            f"output_dir={tmp_path}", "progress=false"]
    out = subprocess.run([sys.executable, "-m", "v4s_agent.eval", "agent", *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["episodes"] == 2
    for key in ("success", "final_position_error", "final_yaw_error_deg", "ate"):
        assert res[key] is not None and res[f"{key}_se"] is not None and res[f"{key}_se"] >= 0
    bad = subprocess.run([sys.executable, "-m", "v4s_agent.eval", "agent", "task=pose", "planner=explore"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "task=pose needs planner=pose_following" in bad.stderr
