"""The habitat_sim edge: missing-backend error, the CLI exit, and the adapter's wiring.

habitat_sim is conda-only (Python 3.9 builds) and cannot be installed in this Python 3.11 venv. The
project's one allowed stand-in is for habitat_sim: `FakeHabitatSim` below implements the subset of
its API the adapter calls (names checked against facebookresearch/habitat-sim: Simulator,
SimulatorConfiguration, Configuration, agent.AgentConfiguration/ActionSpec/ActuationSpec/AgentState/
SixDOFPose, CameraSensorSpec, SensorType, SensorSubType, NavMeshSettings, MultiGoalShortestPath,
utils.common.quat_from_coeffs) over a flat square floor, so the adapter's wiring, episode logic
and metrics run here. The real simulator's rendering and navmesh are exercised only by
`test_real_habitat_sim_*`, skipped without habitat_sim.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from envs.base import make_env
from envs.errors import HABITAT_CONDA_CMD, BackendUnavailableError, require_habitat_sim
from envs.types import Action, Episode, Pose

ROOT = Path(__file__).resolve().parents[1]
HAS_HABITAT = importlib.util.find_spec("habitat_sim") is not None


# ------------------------------------------------------------------------ missing habitat_sim
@pytest.mark.skipif(HAS_HABITAT, reason="habitat_sim is installed: the missing-backend path cannot happen")
def test_missing_habitat_sim_raises_one_line_with_conda_command():
    with pytest.raises(BackendUnavailableError) as ei:
        make_env("habitat", {"scene": "any.glb", "renderer": "habitat_sim"})
    msg = str(ei.value)
    assert "\n" not in msg and HABITAT_CONDA_CMD in msg and "Python 3.9" in msg and "not installed" in msg and "setup.py install --headless" in msg
    assert isinstance(ei.value, ImportError)  # callers that catch ImportError for optional extras still work


@pytest.mark.skipif(HAS_HABITAT, reason="habitat_sim is installed")
def test_cli_env_habitat_exits_nonzero_with_install_hint():
    if not (ROOT / "v4s_agent" / "run.py").exists():
        pytest.skip("v4s_agent/run.py not written yet")
    env = {**os.environ, "MUJOCO_GL": "egl", "HF_HUB_OFFLINE": "1"}
    # planner/model that need no checkpoint, so the env is the first thing that can fail
    p = subprocess.run([sys.executable, "-m", "v4s_agent.run", "env=habitat", "env.config.renderer=habitat_sim",
                        "planner=explore", "model=none"],
                       cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr[-500:]  # a setup error is bad input: exit code 2
    assert HABITAT_CONDA_CMD in p.stderr, p.stderr[-2000:]
    assert "Traceback" not in p.stderr


# ---------------------------------------------------------------------- fake habitat_sim (API subset)
class _Quat:
    """numpy-quaternion stand-in: w, x, y, z attributes."""

    def __init__(self, w, x, y, z):
        self.w, self.x, self.y, self.z = float(w), float(x), float(y), float(z)

    def rot(self) -> Rotation:
        return Rotation.from_quat([self.x, self.y, self.z, self.w])

    @staticmethod
    def of(r: Rotation) -> _Quat:
        x, y, z, w = r.as_quat()
        return _Quat(w, x, y, z)


def _fake_habitat_sim(floor=3.0, calls=None):
    hs = types.ModuleType("habitat_sim")
    calls = calls if calls is not None else []

    class Obj:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class SensorType:
        COLOR, DEPTH, SEMANTIC = "COLOR", "DEPTH", "SEMANTIC"

    class SensorSubType:
        PINHOLE = "PINHOLE"

    class SimulatorConfiguration(Obj):
        pass

    class CameraSensorSpec(Obj):
        pass

    class NavMeshSettings(Obj):
        def set_defaults(self):
            self.agent_radius, self.agent_height = 0.1, 1.5

    class MultiGoalShortestPath(Obj):
        pass

    def Configuration(sim_cfg, agents):
        return Obj(sim_cfg=sim_cfg, agents=agents)

    agent_mod = types.ModuleType("habitat_sim.agent")

    class AgentConfiguration(Obj):
        pass

    class ActuationSpec(Obj):
        pass

    def ActionSpec(name, actuation):
        return Obj(name=name, actuation=actuation)

    class SixDOFPose(Obj):
        def __init__(self, position=None, rotation=None):
            super().__init__(position=np.asarray(position), rotation=rotation)

    class AgentState(Obj):
        def __init__(self, position=None, rotation=None):
            super().__init__(position=np.zeros(3) if position is None else position,
                             rotation=_Quat(1, 0, 0, 0) if rotation is None else rotation, sensor_states={})

    class PathFinder:
        def __init__(self):
            self.is_loaded, self.rng = False, np.random.default_rng(0)

        def load_nav_mesh(self, path):
            return False

        def seed(self, s):
            self.rng = np.random.default_rng(s)

        def is_navigable(self, p):
            return abs(p[0]) <= floor and abs(p[2]) <= floor and abs(p[1]) < 0.2

        def snap_point(self, p):
            return np.array([np.clip(p[0], -floor, floor), 0.0, np.clip(p[2], -floor, floor)], np.float32)

        def get_random_navigable_point(self):
            x, z = self.rng.uniform(-floor, floor, 2)
            return np.array([x, 0.0, z], np.float32)

        def find_path(self, path):  # convex floor: geodesic = straight line
            ends = np.asarray(path.requested_ends, dtype=np.float64)
            path.geodesic_distance = float(np.min(np.linalg.norm(ends - np.asarray(path.requested_start), axis=1)))
            return True

    class Agent:
        def __init__(self, cfg):
            self.cfg, self.pos, self.rot = cfg, np.zeros(3), Rotation.identity()
            self.sensor_rel = {s.uuid: Rotation.identity() for s in cfg.sensor_specifications}

        def get_state(self):
            st = AgentState(self.pos.copy(), _Quat.of(self.rot))
            h = self.cfg.sensor_specifications[0].position[1]
            for u, r in self.sensor_rel.items():
                st.sensor_states[u] = SixDOFPose(self.pos + [0, h, 0], _Quat.of(self.rot * r))
            return st

        def set_state(self, state, reset_sensors=True, infer_sensor_states=True, is_initial=False):
            assert isinstance(state.rotation, _Quat), "rotation must go through quat_from_coeffs"
            self.pos, self.rot = np.asarray(state.position, np.float64), state.rotation.rot()
            if reset_sensors:
                self.sensor_rel = {u: Rotation.identity() for u in self.sensor_rel}
            if not infer_sensor_states:
                for u, s in state.sensor_states.items():
                    self.sensor_rel[u] = self.rot.inv() * s.rotation.rot()

        def act(self, name):
            amount = self.cfg.action_space[name].actuation.amount
            if name == "move_forward":
                new = self.pos + self.rot.apply([0, 0, -amount])
                new[[0, 2]] = np.clip(new[[0, 2]], -floor, floor)
                collided = not np.allclose(new, self.pos + self.rot.apply([0, 0, -amount]))
                self.pos = new
                return collided
            sign = {"turn_left": 1, "turn_right": -1, "look_up": 1, "look_down": -1}[name]
            r = Rotation.from_euler("y" if "turn" in name else "x", sign * math.radians(amount))
            if "turn" in name:
                self.rot = self.rot * r
            else:
                self.sensor_rel = {u: v * r for u, v in self.sensor_rel.items()}
            return False

    class Simulator:
        def __init__(self, cfg):
            calls.append(("Simulator", cfg))
            self.cfg, self.pathfinder, self.semantic_scene = cfg, PathFinder(), None
            self._agent = Agent(cfg.agents[0])
            self.closed = False

        def get_agent(self, i):
            return self._agent

        def seed(self, s):
            calls.append(("seed", s))

        def recompute_navmesh(self, pf, settings):
            calls.append(("recompute_navmesh", settings))
            pf.is_loaded = True
            return True

        def get_sensor_observations(self):
            spec = self.cfg.agents[0].sensor_specifications[0]
            H, W = spec.resolution
            st = self._agent.get_state()
            yaw = Rotation.from_quat([st.rotation.x, st.rotation.y, st.rotation.z, st.rotation.w]).as_euler("YXZ")[0]
            out = {}
            for s in self.cfg.agents[0].sensor_specifications:
                if s.sensor_type == SensorType.COLOR:
                    out[s.uuid] = np.full((H, W, 4), int(np.degrees(yaw)) % 256, np.uint8)
                elif s.sensor_type == SensorType.DEPTH:
                    out[s.uuid] = np.full((H, W), 10.0, np.float32)  # open space: nothing occludes
                else:
                    out[s.uuid] = np.zeros((H, W), np.uint32)
            return out

        def step(self, name):  # like habitat_sim: the collision flag travels in the observations
            collided = self._agent.act(name)
            return {**self.get_sensor_observations(), "collided": collided}

        def close(self):
            self.closed = True

    common = types.ModuleType("habitat_sim.utils.common")
    common.quat_from_coeffs = lambda c: _Quat(c[3], c[0], c[1], c[2])
    utils = types.ModuleType("habitat_sim.utils")
    utils.common = common
    for k, v in dict(SensorType=SensorType, SensorSubType=SensorSubType, SimulatorConfiguration=SimulatorConfiguration,
                     CameraSensorSpec=CameraSensorSpec, NavMeshSettings=NavMeshSettings, Simulator=Simulator,
                     MultiGoalShortestPath=MultiGoalShortestPath, Configuration=Configuration, AgentState=AgentState,
                     agent=agent_mod, utils=utils).items():
        setattr(hs, k, v)
    for k, v in dict(AgentConfiguration=AgentConfiguration, ActionSpec=ActionSpec, ActuationSpec=ActuationSpec,
                     SixDOFPose=SixDOFPose, AgentState=AgentState).items():
        setattr(agent_mod, k, v)
    return hs, {"habitat_sim": hs, "habitat_sim.agent": agent_mod, "habitat_sim.utils": utils,
                "habitat_sim.utils.common": common}


@pytest.fixture
def fake_hs(monkeypatch):
    calls: list = []
    hs, mods = _fake_habitat_sim(calls=calls)
    for name, m in mods.items():
        monkeypatch.setitem(sys.modules, name, m)
    monkeypatch.setitem(sys.modules, "magnum", None)  # adapter falls back to plain degrees
    return hs, calls


@pytest.fixture
def scene(tmp_path):
    glb = tmp_path / "apt.glb"
    glb.write_bytes(b"glTF-placeholder")  # the fake simulator never parses it
    (tmp_path / "apt.json").write_text(json.dumps({"objects": [
        {"instance_id": 11, "category": "chair", "aabb_min": [1.0, 0.0, 1.0], "aabb_max": [1.4, 0.9, 1.4]},
        {"instance_id": 12, "category": "bed", "aabb_min": [-2.5, 0.0, -2.5], "aabb_max": [-1.5, 0.6, -1.0]},
    ]}))
    return glb


def test_adapter_builds_habitat_configuration(fake_hs, scene):
    hs, calls = fake_hs
    env = make_env("habitat", {"scene": str(scene), "width": 32, "height": 24, "semantic": True, "hfov_deg": 90})
    cfg = calls[0][1]
    assert cfg.sim_cfg.scene_id == str(scene) and cfg.sim_cfg.allow_sliding is False
    ag = cfg.agents[0]
    assert (ag.radius, ag.height) == (0.18, 0.88)
    assert [(s.uuid, s.sensor_type, s.resolution, s.position, s.hfov) for s in ag.sensor_specifications] == [
        ("rgb", "COLOR", [24, 32], [0.0, 0.88, 0.0], 90), ("depth", "DEPTH", [24, 32], [0.0, 0.88, 0.0], 90),
        ("semantic", "SEMANTIC", [24, 32], [0.0, 0.88, 0.0], 90)]
    assert {k: (a.name, a.actuation.amount) for k, a in ag.action_space.items()}["turn_left"] == ("turn_left", 30.0)
    nav = [c for c in calls if c[0] == "recompute_navmesh"]
    assert nav and nav[0][1].agent_radius == 0.18  # a bare .glb gets a navmesh for our agent
    assert (env.width, env.height, env.hfov_deg) == (32, 24, 90)
    env.close()


def test_adapter_episode_step_stop_metrics(fake_hs, scene):
    hs, calls = fake_hs
    env = make_env("habitat", {"scene": str(scene), "width": 16, "height": 16, "target_categories": ["chair"],
                               "min_start_distance": 0.5, "max_start_distance": 10})
    obs = env.reset(seed=3)
    ep = env.episode
    assert ep.target_category == "chair" and math.isfinite(ep.geodesic_start_distance)
    assert obs.rgb.shape == (16, 16, 3) and obs.depth.shape == (16, 16) and obs.depth.max() == 5.0
    assert np.allclose(obs.pose.xyz, ep.start.xyz, atol=1e-5) and np.isclose(obs.pose.yaw, ep.start.yaw)
    assert "a chair" in obs.instruction and ("seed", 3) in calls
    vps = env.view_points("chair")
    assert len(vps) > 0

    # teleport onto a view point facing the chair, walk nowhere, STOP -> success
    vp = vps[0]
    start = Pose((float(vp[0]), 0.88, float(vp[2])), 0.0)
    obs = env.reset(Episode("e1", 0, start, "chair", geodesic_start_distance=2.0))
    o = env.step(Action.TURN_LEFT)
    assert np.isclose(o.pose.yaw, math.radians(30)) and o.step == 1
    o = env.step(Action.STOP)
    assert env.done
    m = env.metrics()
    assert m.success == 1.0 and m.num_steps == 2 and m.distance_to_goal == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(Action.MOVE_FORWARD)

    # hand-written episode without d_0: the env computes it (SPL needs it)
    env.reset(Episode("e3", 0, Pose((-3.0, 0.88, 1.2), 0.0), "chair"))
    assert env.episode.geodesic_start_distance == pytest.approx(float(np.min(np.linalg.norm(
        vps - np.array([-3.0, 0.0, 1.2]), axis=1))), abs=1e-5)

    # walk forward: path length and collisions are tracked; no STOP -> no success
    env.reset(Episode("e2", 0, Pose((0.0, 0.88, -2.6), 0.0), "chair", geodesic_start_distance=4.0))
    for _ in range(3):
        o = env.step(Action.MOVE_FORWARD)
    assert np.isclose(o.pose.position[2], -3.0)  # clipped at the floor edge
    m = env.metrics()
    assert m.success == 0.0 and np.isclose(m.path_length, 0.4) and m.collisions == 2
    env.close()


def test_adapter_make_episodes_is_reproducible(fake_hs, scene):
    env = make_env("habitat", {"scene": str(scene), "width": 8, "height": 8, "min_start_distance": 0.5})
    a, b = env.make_episodes("val", 3, seed=7), env.make_episodes("val", 3, seed=7)
    assert a == b and [e.episode_id for e in a] == [f"habitat-apt-val-7-{i}" for i in range(3)]
    assert all(0.5 <= e.geodesic_start_distance <= 30 for e in a)
    assert all(e.target_instance_ids == ({"chair": (11,), "bed": (12,)}[e.target_category]) for e in a)
    assert a != env.make_episodes("val", 3, seed=8)


def test_adapter_render_at_pitch_and_restore(fake_hs, scene):
    env = make_env("habitat", {"scene": str(scene), "width": 8, "height": 8})
    env.reset(Episode("e", 0, Pose((0.5, 0.88, 0.5), 0.2), "bed", geodesic_start_distance=1.0))
    o = env.render_at(Pose((1.0, 0.88, -1.0), 1.0, -0.4))
    assert np.isclose(o.pose.pitch, -0.4)
    after = env.current_pose()  # the agent did not move
    assert np.allclose(after.xyz, [0.5, 0.88, 0.5]) and np.isclose(after.yaw, 0.2) and np.isclose(after.pitch, 0.0)
    o = env.step(Action.LOOK_DOWN)
    assert np.isclose(o.pose.pitch, -math.radians(30)) and np.isclose(o.pose.yaw, 0.2)


def test_adapter_errors(fake_hs, tmp_path, scene):
    with pytest.raises(ValueError, match="env.scene is empty"):
        make_env("habitat", {})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_env("habitat", {"scene": str(tmp_path / "nope.glb")})
    bare = tmp_path / "bare.glb"
    bare.write_bytes(b"glTF")
    with pytest.raises(ValueError, match="no semantic objects"):
        make_env("habitat", {"scene": str(bare)})
    env = make_env("habitat", {"scene": str(scene)})
    with pytest.raises(ValueError, match="not in this scene"):
        env.reset(Episode("e", 0, Pose((0, 0.88, 0), 0.0), "piano"))


# ------------------------------------------------------------------------------- real habitat_sim
@pytest.mark.skipif(not HAS_HABITAT, reason="habitat_sim not installed (conda-only, Python 3.9 builds): "
                                            f"`{HABITAT_CONDA_CMD}`")
def test_real_habitat_sim_imports_and_runs_exported_scene(tmp_path):
    hs = require_habitat_sim()
    assert hasattr(hs, "Simulator")
    export = pytest.importorskip("envs.embedded.export", reason="envs.embedded.export not written yet")
    glb, _ = export.export_glb(0, tmp_path)
    env = make_env("habitat", {"scene": str(glb), "width": 64, "height": 64})
    obs = env.reset(seed=0)
    assert obs.rgb.shape == (64, 64, 3) and obs.depth is not None
    obs = env.step(Action.MOVE_FORWARD)
    assert env.metrics().num_steps == 1
    env.close()
