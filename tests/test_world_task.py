"""Navigation semantics: collisions, geodesics, view points, episodes, metrics, bad input."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from envs.base import NavEnv
from envs.embedded.errors import NoReachableTargetError
from envs.embedded.follower import follow
from envs.embedded.scene import generate_scene
from envs.embedded.task import MIN_START_DISTANCE, make_episode, make_episodes
from envs.embedded.world import EmbeddedWorld, make_embedded_env
from envs.types import Action, Episode

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world():
    w = make_embedded_env({"scene_seed": 3})
    yield w
    w.close()


def test_is_a_navenv(world):
    assert isinstance(world, NavEnv) and isinstance(world, EmbeddedWorld)


def test_walking_into_a_wall_stays_navigable_and_counts_collisions(world):
    world.reset(seed=0)
    g = world.navgrid
    blocked = 0
    for _ in range(60):
        before = world.agent_pose
        o = world.step(Action.MOVE_FORWARD)
        assert g.is_navigable((o.pose.position[0], o.pose.position[2]))
        if world.last_collided:
            blocked += 1
            assert o.pose == before  # allow_sliding=False: a blocked move stays put
        if world.done:
            break
    m = world.metrics()
    assert blocked >= 1 and m.collisions == blocked and m.num_steps == 60


def test_geodesic_at_least_euclidean_and_finite(world):
    for seed in range(4):
        world.reset(seed=seed)
        ep = world.episode
        goals = world.goal_view_points(ep)
        s = np.array([ep.start.position[0], ep.start.position[2]])
        d = world.navgrid.geodesic_distance(s, goals)
        assert math.isfinite(d) and d >= np.linalg.norm(goals - s, axis=1).min() - 1e-6
        assert d == pytest.approx(ep.geodesic_start_distance)
        assert d >= MIN_START_DISTANCE - 1e-6  # starts are drawn at least this far from the goal
        path = world.navgrid.shortest_path(s, goals)
        assert len(path) >= 2 and all(world.navgrid.is_navigable(p) for p in path)
        assert np.min(np.linalg.norm(goals - path[-1], axis=1)) < 1e-6


def test_view_points_are_near_and_see_the_object(world):
    world.reset(seed=1)
    iid = world.episode.target_instance_ids[0]
    vp = world.view_points(iid)
    obj = world.scene.object(iid)
    assert len(vp) > 0 and world.view_points(iid) is vp  # cached
    lo, hi = obj.aabb_min[[0, 2]], obj.aabb_max[[0, 2]]
    dist = np.linalg.norm(np.maximum(np.maximum(lo - vp, vp - hi), 0.0), axis=1)
    assert dist.max() <= world.cfg.view_point_radius + 1e-9
    rng = np.random.default_rng(0)
    seen = 0
    for p in vp[rng.choice(len(vp), size=min(6, len(vp)), replace=False)]:
        pose = world.centring_pose(iid, p)
        seen += world.is_visible(pose, iid, min_pixels=1)
    assert seen >= 4


def test_scripted_shortest_path_episode_succeeds(world):
    world.reset(seed=2)
    acts = follow(world)
    m = world.metrics()
    assert acts[-1] == Action.STOP and world.done
    assert m.success == 1.0 and 0.0 < m.spl <= 1.0 and 0.0 < m.soft_spl <= 1.0
    assert m.distance_to_goal == 0.0 and m.collisions == 0 and m.num_steps == len(acts)
    assert m.path_length >= world.episode.geodesic_start_distance * 0.8


def test_stop_far_from_goal_fails_with_soft_spl(world):
    world.reset(seed=3)
    world.step(Action.STOP)
    m = world.metrics()
    assert m.success == 0.0 and m.spl == 0.0 and m.distance_to_goal > 0 and world.done
    with pytest.raises(RuntimeError, match="call reset"):
        world.step(Action.MOVE_FORWARD)


def test_max_steps_ends_episode():
    w = EmbeddedWorld({"max_episode_steps": 5}, scene_seed=3)
    w.reset(seed=0)
    for _ in range(5):
        w.step(Action.TURN_LEFT)
    assert w.done and w.metrics().success == 0.0
    w.close()


def test_episodes_deterministic_and_reachable():
    a = make_episodes("val", 3, seed=1)
    b = make_episodes("val", 3, seed=1)
    assert a == b and len({e.scene_seed for e in a}) == 3
    assert all(e.target_instance_ids and math.isfinite(e.geodesic_start_distance) for e in a)
    assert all(100_000 <= e.scene_seed < 100_100 for e in a)
    assert make_episode(5, 11) == make_episode(5, 11)


def test_bad_inputs_have_clear_messages(world):
    with pytest.raises(ValueError, match="unknown category 'spaceship'"):
        make_episode(3, 0, category="spaceship")
    world.reset(seed=0)
    with pytest.raises(ValueError, match="action 9 is out of range"):
        world.step(9)
    absent = next(s for s in range(50) if "toilet" not in generate_scene(s).categories_present)
    with pytest.raises(NoReachableTargetError, match=f"scene seed {absent} has no reachable 'toilet'"):
        make_episode(absent, 0, category="toilet")
    ep = world.episode
    bad = Episode("x", absent, ep.start, "toilet")
    with pytest.raises(NoReachableTargetError, match="no reachable 'toilet'"):
        world.reset(bad)
    with pytest.raises(ValueError, match="unknown split"):
        make_episodes("nope", 1)


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY", "WAYLAND_DISPLAY")}
    full.update(env)
    full["PYTHONPATH"] = str(REPO) + os.pathsep + full.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full,
                          cwd=REPO, timeout=120)


def test_mujoco_gl_handling():
    # unset -> we pick EGL ourselves
    r = _run("import os, envs.embedded.world as w; print(os.environ['MUJOCO_GL'])", {})
    assert r.returncode == 0 and r.stdout.strip() == "egl", r.stderr
    # an unsupported backend -> one line saying what to set
    r = _run("import envs.embedded.world", {"MUJOCO_GL": "glfw"})
    assert r.returncode == 1 and "set MUJOCO_GL=egl" in r.stderr.strip().splitlines()[-1]
    # mujoco imported first with a display backend and no display
    r = _run("import mujoco, envs.embedded.world", {"MUJOCO_GL": "glfw"})
    assert r.returncode == 1 and "imported before envs.embedded" in r.stderr.strip().splitlines()[-1]
    # EGL present but unusable -> name the packages to install
    code = """
        from envs.embedded.errors import RenderBackendError
        from envs.embedded import gl
        import mujoco
        class Broken:
            def __init__(self, *a):
                raise RuntimeError('eglInitialize failed')
        mujoco.GLContext = Broken
        try:
            gl.create_context(8, 8)
        except RenderBackendError as e:
            print(e)
    """
    r = _run(code, {"MUJOCO_GL": "egl"})
    assert "libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1" in r.stdout and "MUJOCO_GL=osmesa" in r.stdout, r.stderr


@pytest.mark.parametrize("tolerance, succeeds", [(0.1, True), (0.0, False)])
def test_stop_near_a_view_point_follows_habitat_success_distance(tolerance, succeeds):
    """habitat-lab: STOP within success_distance (0.1 m) of a view point succeeds, not only on one."""
    import dataclasses

    from envs.types import Pose

    w = EmbeddedWorld({"success_distance": tolerance}, scene_seed=3)
    w.reset(seed=2)
    ep = w.episode
    field = w.navgrid.distance_field(w.goal_view_points(ep))[0]
    cells = np.argwhere((field > 0.04) & (field < 0.06))  # one cell (0.05 m) off a view point
    x, z = w.navgrid.cell_centre(*cells[0])
    start = Pose((float(x), w.cfg.sensor_height, float(z)), 0.0)
    w.reset(dataclasses.replace(ep, start=start))
    w.step(Action.STOP)
    m = w.metrics()
    assert m.distance_to_goal == pytest.approx(0.05) and m.success == float(succeeds)
    w.close()


def test_success_is_strictly_within_success_distance():
    """habitat-lab's Success measure: distance_to_target < success_distance (a STOP exactly at it fails)."""
    from envs.metrics import objectnav_metrics

    at = objectnav_metrics(True, 0.1, 3.0, 3.0, 12, success_distance=0.1)
    inside = objectnav_metrics(True, 0.0999, 3.0, 3.0, 12, success_distance=0.1)
    assert at.success == 0.0 and inside.success == 1.0
