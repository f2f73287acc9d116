"""Controller: paths -> Habitat actions executed in the embedded world, collision check of a path
against the rendered depth (navgrid as the truth), stop test, base velocities."""
import math
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest

from envs.embedded.config import WorldConfig
from envs.embedded.world import EmbeddedWorld
from envs.geometry import wrap_angle
from envs.splits import split_seeds
from envs.types import Action, Box2D, Episode, Pose
from planners.control import (
    actions_to_velocity,
    check_path,
    goto_actions,
    path_is_free,
    path_to_actions,
    safe_path_actions,
    target_reached,
)
from planners.readback.path import PathEstimate
from planners.readback.sim_truth import random_truth_clip


@pytest.fixture(scope="module")
def world():
    w = EmbeddedWorld(WorldConfig(), scene_seed=split_seeds("val", 1)[0])
    yield w
    w.close()


def _run(world, start: Pose, actions) -> Pose:
    ep = world.reset(seed=0) and world.episode
    world.reset(Episode("t", ep.scene_seed, start, ep.target_category, ep.target_instance_ids))
    for a in actions:
        world.step(a)
    return world.agent_pose


def test_path_actions_reach_the_path_end_in_the_world(world):
    ends = []
    for seed in split_seeds("val", 3):
        world.load_scene(seed)
        c = random_truth_clip(world, np.random.default_rng(seed), num_frames=10, size=64, max_forward=0.3, max_yaw_deg=25)
        acts = path_to_actions(c.truth, forward_step=0.25, turn_deg=30)
        assert set(acts) <= {Action.MOVE_FORWARD, Action.TURN_LEFT, Action.TURN_RIGHT}
        end = _run(world, c.start, acts)
        goal = c.truth.world_poses(c.start)[-1]
        ends.append((np.hypot(end.position[0] - goal.position[0], end.position[2] - goal.position[2]),
                     abs(math.degrees(wrap_angle(end.yaw - goal.yaw)))))
        # the planners' form (start pose + world poses) gives the same actions
        assert path_to_actions(c.start, c.truth.world_poses(c.start), step_m=0.25, turn_deg=30) == acts
    d, yaw = np.array(ends).T
    assert d.max() < 0.3 and yaw.max() <= 15.0 + 1e-6, ends


def test_goto_actions_and_quantisation():
    start = Pose((0.0, 0.88, 0.0), 0.0)
    acts = goto_actions(start, (0.0, -1.0), stop=True)
    assert acts == [Action.MOVE_FORWARD] * 4 + [Action.STOP]
    acts = goto_actions(start, (1.0, 0.0), final_yaw=0.0)  # right of the agent: turn right 90, walk, turn back
    assert acts[:3] == [Action.TURN_RIGHT] * 3 and acts.count(Action.MOVE_FORWARD) == 4 and acts[-3:] == [Action.TURN_LEFT] * 3
    turn_only = PathEstimate.from_steps(np.array([[0.0, math.radians(45)]] * 2), 1.0, "x")
    assert path_to_actions(turn_only) == [Action.TURN_LEFT] * 3
    with pytest.raises(ValueError, match="goal_xz"):
        goto_actions(start, (1.0,))
    with pytest.raises(ValueError, match="path must be"):
        path_to_actions(np.zeros((3, 3)))


def test_path_check_agrees_with_the_navgrid(world):
    """Walk straight ahead: the first non-navigable point on the ray is where the agent would hit
    something. A path stopping 0.4 m short must be free; one going 0.4 m past it must be blocked."""
    rng = np.random.default_rng(3)
    agree_free, agree_blocked, n = 0, 0, 0
    for seed in split_seeds("val", 3):
        world.load_scene(seed)
        tries = 0
        while tries < 200 and n < 4 * (split_seeds("val", 3).index(seed) + 1):
            tries += 1
            xz = world.navgrid.sample_navigable(rng)
            pose = Pose((float(xz[0]), world.cfg.sensor_height, float(xz[1])), float(rng.uniform(-np.pi, np.pi)))
            ray = [r for r in np.arange(0.05, 5.0, 0.05)
                   if not world.navgrid.is_navigable((xz[0] - r * math.sin(pose.yaw), xz[1] - r * math.cos(pose.yaw)))]
            if not ray or not (1.3 <= ray[0] <= 3.5):
                continue
            n += 1
            depth = world.render_at(pose, semantic=False).depth

            def straight(length: float) -> np.ndarray:
                return PathEstimate.from_steps(np.array([[length / 8, 0.0]] * 8), 1.0, "x").poses_rel

            agree_free += path_is_free(depth, world.K, straight(ray[0] - 0.4))
            chk = check_path(depth, world.K, straight(ray[0] + 0.4))
            agree_blocked += (not chk.free) and "blocked" in chk.message
    assert n >= 8
    assert agree_free == n and agree_blocked >= n - 1, (agree_free, agree_blocked, n)


def test_blocked_read_back_path_is_cut_not_crashed():
    depth = np.full((64, 64), 1.0, np.float32)  # a wall 1 m ahead, filling the view
    K = np.array([[39.0, 0, 32], [0, 39.0, 32], [0, 0, 1]])
    path = PathEstimate.from_steps(np.array([[0.25, 0.0]] * 8), 1.0, "x")
    acts, chk = safe_path_actions(path, depth, K)
    assert not chk.free and chk.first_blocked is not None and "blocked" in chk.message
    assert 0 < acts.count(Action.MOVE_FORWARD) <= 3  # stops before the wall
    acts, chk = safe_path_actions(path, np.full((64, 64), 0.3, np.float32), K)  # wall at 0.3 m: nothing to do
    assert acts == [] and not chk.free


def test_stop_test_and_velocities():
    K = np.array([[39.0, 0, 32], [0, 39.0, 32], [0, 0, 1]])
    box = Box2D(24, 24, 40, 40)
    assert target_reached(box, np.full((64, 64), 0.8, np.float32), K)
    assert not target_reached(box, np.full((64, 64), 1.6, np.float32), K)  # centred but too far
    assert not target_reached(Box2D(0, 0, 10, 10), np.full((64, 64), 0.8, np.float32), K)  # near but off-centre
    assert not target_reached(None, np.full((64, 64), 0.8, np.float32), K)
    assert actions_to_velocity(Action.MOVE_FORWARD, 0.25, 30, 0.5) == (0.5, 0.0)
    v, w = actions_to_velocity(Action.TURN_RIGHT, 0.25, 30, 1.0)
    assert v == 0.0 and math.isclose(w, -math.radians(30))
    assert actions_to_velocity(Action.STOP) == (0.0, 0.0)
    with pytest.raises(ValueError, match="duration"):
        actions_to_velocity(Action.STOP, duration=0.0)
