"""Frontier exploration on the real embedded world: the occupancy map agrees with the simulator's
floor plan, frontiers are where known floor meets unknown space, and the explorer covers new floor."""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest

from envs.base import intrinsics_of
from envs.types import Action, Pose
from planners.occupancy import FREE, OCCUPIED, UNKNOWN, MapConfig, OccupancyMap

world_mod = pytest.importorskip("envs.embedded.world")
task_mod = pytest.importorskip("envs.embedded.task")
from envs.embedded.config import WorldConfig  # noqa: E402
from planners.explore import ExplorePlannerConfig  # noqa: E402
from planners.factory import make_planner  # noqa: E402
from v4s_agent.agent import run_episode  # noqa: E402


@pytest.fixture(scope="module")
def env():
    e = world_mod.make_embedded_env(WorldConfig())
    yield e
    e.close()


@pytest.fixture(scope="module")
def episode():
    return task_mod.make_episodes("val", 1, 0)[0]


def _replay_map(env, episode, actions) -> OccupancyMap:
    """The map built from the frames seen before each of `actions`, replayed from the episode start
    (the same map for every strategy: `random` keeps none)."""
    obs = env.reset(episode)
    m = OccupancyMap(MapConfig(), (obs.pose.position[0], obs.pose.position[2]), obs.pose.position[1] - env.cfg.sensor_height)
    for a in actions:
        m.update(obs.depth, obs.pose, intrinsics_of(env), env.cfg.agent_radius)
        obs = env.step(a)
    return m


def _look_around(env, episode) -> OccupancyMap:
    return _replay_map(env, episode, [Action.TURN_LEFT] * 12)


def _truly_free(env, m: OccupancyMap, cells: np.ndarray) -> np.ndarray:
    g = env.navgrid
    gc = g.cells_of(m.origin + (cells[:, ::-1] + 0.5) * m.cfg.resolution)
    ok = (gc >= 0).all(1) & (gc[:, 0] < g.shape[0]) & (gc[:, 1] < g.shape[1])
    free = np.zeros(len(cells), dtype=bool)
    free[ok] = g.free[gc[ok, 0], gc[ok, 1]]
    return free


def test_map_from_depth_matches_the_floor_plan(env, episode):
    m = _look_around(env, episode)
    state = m.state
    free, occupied = np.argwhere(state == FREE), np.argwhere(state == OCCUPIED)
    assert m.explored_area() > 5.0 and len(occupied) > 50
    # measured on this episode: 0.95 of free cells are open floor, 0.83 of occupied ones are not
    assert _truly_free(env, m, free).mean() > 0.9
    assert (~_truly_free(env, m, occupied)).mean() > 0.7


def test_frontiers_separate_known_floor_from_unknown(env, episode):
    m = _look_around(env, episode)
    state = m.state
    fronts = m.frontiers()
    assert fronts
    for cells in fronts:
        assert (state[cells[:, 0], cells[:, 1]] == FREE).all()
        iz, ix = cells[:, 0], cells[:, 1]
        near_unknown = np.zeros(len(cells), dtype=bool)
        for dz, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            near_unknown |= state[iz + dz, ix + dx] == UNKNOWN
        assert near_unknown.all()


def test_a_bump_blocks_the_strip_ahead():
    m = OccupancyMap(MapConfig(), (0.0, 0.0), 0.0)
    m.mark_bump(Pose((0.0, 0.88, 0.0), 0.0), reach=0.3, half_width=0.18)  # yaw 0 looks along -z
    ahead = m.cells_of(np.array([[0.0, -0.3], [0.15, -0.3], [-0.15, -0.3]]))
    behind = m.cells_of(np.array([[0.0, 0.3]]))
    assert (m.state[ahead[:, 0], ahead[:, 1]] == OCCUPIED).all()
    assert m.state[behind[0, 0], behind[0, 1]] == UNKNOWN


def test_frontier_explorer_sees_more_floor_than_a_random_walk(env):
    episode = task_mod.make_episodes("val", 6, 0)[5]  # the target is far: 60 steps only explore
    seen, collisions = {}, {}
    for strategy in ("frontier", "random"):
        planner = make_planner(ExplorePlannerConfig(strategy=strategy, scan_every=1000), env, seed=0)
        res = run_episode(env, planner, episode, max_steps=60, look_around=True)
        assert res.metrics.success == 0.0
        seen[strategy] = _replay_map(env, episode, res.trace.actions).explored_area()
        collisions[strategy] = res.metrics.collisions
        if strategy == "frontier":
            assert any(p.note.startswith("frontier:") for _, p in res.trace.plans)
            assert planner.map.explored_area() == pytest.approx(seen["frontier"], rel=0.05)
    # measured: 34.6 m² vs 19.1 m²; 0 and 2 collisions
    assert seen["frontier"] > 1.3 * seen["random"] and collisions["frontier"] <= 2


def test_stop_range_is_on_the_floor_plane_and_uses_the_mask():
    """The stop rule's range is the floor-plane distance to the object (ObjectNav's "within 1 m"), not
    depth along the viewing axis; with a detector's mask, something in front of the object inside its
    box does not count (both made the agent STOP short of the goal)."""
    from envs.geometry import intrinsics_from_hfov
    from envs.types import Box2D
    from planners.base import should_stop, target_range

    K = intrinsics_from_hfov(90.0, 64, 64)  # fx = 32
    depth = np.full((64, 64), 5.0, dtype=np.float32)
    depth[20:40, 52:60] = 0.95  # object 25-40 degrees right of the axis, 0.95 m along it
    box = Box2D(52, 20, 60, 40)
    assert 0.95 * np.hypot(1, 20.5 / 32) - 0.01 < target_range(box, depth, K) < 1.3  # > 1 m away on the floor
    assert target_range(box, depth) == pytest.approx(0.95)  # without K: along the axis, as before
    mask = np.zeros((64, 64), dtype=bool)
    mask[20:40, 28:36] = True  # the object, straight ahead at 1.5 m, behind a post at 0.6 m
    depth[20:40, 28:36] = 1.5
    depth[20:40, 31:33] = 0.6
    mask[20:40, 31:33] = False
    seg = Box2D(28, 20, 36, 40, mask=mask)
    assert target_range(Box2D(28, 20, 36, 40), depth, K) < 0.7  # a box alone sees the post
    assert target_range(seg, depth, K) == pytest.approx(1.5, abs=0.02)
    assert not should_stop(seg, depth, 64, 64, 0.6, 1.0, K)
    assert seg.scaled(2.0).mask is None  # a mask belongs to its own image
