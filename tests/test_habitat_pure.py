"""Habitat backend logic that does not need habitat_sim: config, conversions, actions, goals, metrics."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy.spatial.transform import Rotation

from envs.geometry import intrinsics_from_hfov, pose_rotation
from envs.habitat.actions import action_space, parse_action, to_habitat_action
from envs.habitat.config import HabitatConfig, coerce_config
from envs.habitat.convert import (
    agent_state_to_pose,
    pose_to_habitat,
    quat_wxyz_to_yaw,
    quat_wxyz_to_yaw_pitch,
    sensor_state_to_pose,
    wxyz_to_xyzw,
    yaw_pitch_to_quat_wxyz,
)
from envs.habitat.goals import (
    SceneObject,
    available_categories,
    candidate_floor_points,
    horizontal_distance_to_aabb,
    load_sidecar,
    look_at_pose,
    normalize_category,
    objects_from_semantic_scene,
    sample_episode,
    select_view_points,
    visible_in_depth,
)
from envs.habitat.sensors import clip_depth, sensor_defs, to_observation
from envs.instructions import with_article
from envs.metrics import objectnav_metrics
from envs.types import Action, Pose


# ------------------------------------------------------------------------------------ config
def test_config_defaults_are_habitat_objectnav_hm3d():
    c = HabitatConfig()
    assert (c.hfov_deg, c.sensor_height, c.turn_angle_deg, c.forward_step) == (79.0, 0.88, 30.0, 0.25)
    assert (c.min_depth, c.max_depth, c.agent_radius, c.allow_sliding) == (0.5, 5.0, 0.18, False)
    assert (c.max_episode_steps, c.success_distance, c.view_point_radius) == (500, 0.1, 1.0)


def test_config_accepts_dataclass_dict_and_dictconfig():
    d = {"scene": "a.glb", "width": 64, "height": 48, "target_categories": ["chair"]}
    for cfg in (d, OmegaConf.create(d), HabitatConfig(**d)):
        c = coerce_config(HabitatConfig, cfg, "env=habitat")
        assert (c.scene, c.width, c.height, c.target_categories) == ("a.glb", 64, 48, ["chair"])
    assert coerce_config(HabitatConfig, None, "env=habitat") == HabitatConfig()


@pytest.mark.parametrize("kw, msg", [
    ({"hfov_deg": 200}, "hfov_deg"), ({"width": 0}, "width"), ({"min_depth": 6.0}, "min_depth"),
    ({"scene": "room.txt"}, "not a scene file"), ({"rgb": False, "depth": False}, "at least one sensor"),
])
def test_config_rejects_bad_values(kw, msg):
    with pytest.raises(ValueError, match=msg):
        HabitatConfig(**kw)


def test_config_unknown_key_names_valid_keys():
    with pytest.raises(ValueError, match=r"unknown env=habitat key\(s\) \['hfov'\].*hfov_deg"):
        coerce_config(HabitatConfig, {"hfov": 90}, "env=habitat")


def test_sidecar_and_navmesh_found_next_to_scene(tmp_path):
    glb = tmp_path / "apt.basis.glb"
    glb.write_bytes(b"glTF")
    c = HabitatConfig(scene=str(glb))
    assert c.resolved_sidecar() is None and c.resolved_navmesh() is None
    (tmp_path / "apt.json").write_text("[]")
    (tmp_path / "apt.navmesh").write_bytes(b"x")
    assert c.resolved_sidecar() == tmp_path / "apt.json"
    assert c.resolved_navmesh() == tmp_path / "apt.navmesh"


# --------------------------------------------------------------------------------- rotations
@pytest.mark.parametrize("yaw, pitch", [(0.0, 0.0), (0.7, 0.0), (-2.5, 0.3), (math.pi / 2, -0.5), (3.0, 1.2)])
def test_quaternion_round_trip(yaw, pitch):
    q = yaw_pitch_to_quat_wxyz(yaw, pitch)
    assert np.isclose(np.linalg.norm(q), 1.0)
    y2, p2 = quat_wxyz_to_yaw_pitch(q)
    assert np.isclose(y2, yaw) and np.isclose(p2, pitch)
    # the quaternion is the same rotation envs.geometry uses for the camera
    R = Rotation.from_quat(wxyz_to_xyzw(q)).as_matrix()
    assert np.allclose(R, pose_rotation(Pose((0, 0, 0), yaw, pitch)).as_matrix())


def test_quaternion_order_is_w_first():
    # yaw 90 deg about +Y: (w, x, y, z) = (cos 45, 0, sin 45, 0); habitat turn_left rotates +Y
    q = yaw_pitch_to_quat_wxyz(math.pi / 2)
    assert np.allclose(q, [math.sqrt(0.5), 0, math.sqrt(0.5), 0])
    st = pose_to_habitat(Pose((1, 2, 3), math.pi / 2), 0.88)
    assert np.allclose(st.agent_rotation_coeffs, [0, math.sqrt(0.5), 0, math.sqrt(0.5)])  # quat_from_coeffs order
    # the camera now looks along -X (turned left from -Z)
    fwd = Rotation.from_quat(wxyz_to_xyzw(q)).apply([0, 0, -1])
    assert np.allclose(fwd, [-1, 0, 0])


def test_body_on_floor_and_sensor_above():
    pose = Pose((1.0, 0.88, -2.0), 0.4, -0.3)
    st = pose_to_habitat(pose, 0.88)
    assert np.allclose(st.agent_position, [1.0, 0.0, -2.0])
    assert np.allclose(st.sensor_position, pose.xyz)
    assert np.isclose(quat_wxyz_to_yaw(st.agent_rotation_wxyz), 0.4)  # body carries yaw only
    back = sensor_state_to_pose(st.sensor_position, st.sensor_rotation_wxyz)
    assert np.allclose(back.xyz, pose.xyz) and np.isclose(back.yaw, 0.4) and np.isclose(back.pitch, -0.3)
    p2 = agent_state_to_pose(st.agent_position, st.agent_rotation_wxyz, 0.88, pitch=-0.3)
    assert np.allclose(p2.xyz, pose.xyz) and np.isclose(p2.yaw, 0.4)


def test_zero_quaternion_rejected():
    with pytest.raises(ValueError, match="non-zero"):
        quat_wxyz_to_yaw_pitch([0, 0, 0, 0])


# ----------------------------------------------------------------------------------- actions
def test_action_mapping_and_space():
    assert to_habitat_action(Action.STOP) is None
    assert [to_habitat_action(a) for a in (1, 2, 3, 4, 5)] == ["move_forward", "turn_left", "turn_right",
                                                                "look_up", "look_down"]
    space = action_space(0.25, 30.0, 30.0)
    assert space["move_forward"].amount == 0.25 and space["turn_left"].amount == 30.0
    assert "stop" not in space
    with pytest.raises(ValueError, match="unknown action 9; valid actions: 0=STOP"):
        parse_action(9)


# ----------------------------------------------------------------------------------- sensors
def test_sensor_defs_follow_config():
    c = HabitatConfig(width=64, height=48, semantic=True, hfov_deg=90, sensor_height=1.25)
    defs = sensor_defs(c)
    assert [(d.uuid, d.kind) for d in defs] == [("rgb", "color"), ("depth", "depth"), ("semantic", "semantic")]
    assert all(d.resolution == (48, 64) and d.position == (0.0, 1.25, 0.0) and d.hfov_deg == 90 for d in defs)
    assert [d.uuid for d in sensor_defs(HabitatConfig(rgb=False))] == ["depth"]


def test_raw_observation_conversion():
    c = HabitatConfig(width=4, height=3, semantic=True)
    raw = {"rgb": np.full((3, 4, 4), 7, np.uint8), "depth": np.array([[0.1, 1.0, 9.0, np.nan]] * 3, np.float32),
           "semantic": np.full((3, 4), 5, np.uint32)}
    o = to_observation(raw, c, Pose((0, 0.88, 0), 0.0), "find a chair", 3)
    assert o.rgb.shape == (3, 4, 3) and o.rgb.dtype == np.uint8 and o.rgb.max() == 7
    assert np.allclose(o.depth[0], [0.5, 1.0, 5.0, 5.0]) and o.depth.dtype == np.float32
    assert o.semantic.dtype == np.int32 and o.step == 3 and o.instruction == "find a chair"
    assert np.allclose(clip_depth(np.ones((2, 2, 1)), 0.5, 5.0), 1.0)
    with pytest.raises(RuntimeError, match="config asks for"):
        to_observation(raw, HabitatConfig(width=8, height=8), None, "", 0)


# ------------------------------------------------------------------------------------- goals
def _sidecar(tmp_path):
    objs = [
        {"instance_id": 3, "category": "Chair", "aabb_min": [1, 0, 1], "aabb_max": [1.5, 0.9, 1.5],
         "position": [1.25, 0.45, 1.25]},
        {"instance_id": 7, "category": "tv_monitor", "aabb_min": [-2, 0.5, -1], "aabb_max": [-1.8, 1.1, 0]},
    ]
    p = tmp_path / "scene.json"
    p.write_text(json.dumps({"scene_seed": 1, "objects": objs}))
    return p


def test_load_sidecar(tmp_path):
    objs = load_sidecar(_sidecar(tmp_path))
    assert [(o.instance_id, o.category) for o in objs] == [(3, "chair"), (7, "tv monitor")]
    assert objs[1].position == (-1.9, 0.8, -0.5)  # position defaults to the AABB centre
    assert available_categories(objs, ["TV_monitor", "sofa"]) == ["tv monitor"]


def test_load_sidecar_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="export_glb"):
        load_sidecar(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"instance_id": 1, "category": "bed", "aabb_min": [0, 0, 0]}]))
    with pytest.raises(ValueError, match=r"lacks \['aabb_max'\]"):
        load_sidecar(bad)
    bad.write_text(json.dumps([{"instance_id": 1, "category": "bed", "aabb_min": [1, 0, 0], "aabb_max": [0, 1, 1]}]))
    with pytest.raises(ValueError, match="exceeds aabb_max"):
        load_sidecar(bad)


def test_sidecar_from_embedded_export(tmp_path):
    export = pytest.importorskip("envs.embedded.export", reason="envs.embedded.export not written yet")
    glb, js = export.export_glb(0, tmp_path)
    objs = load_sidecar(js)
    assert objs and all(np.all(np.asarray(o.aabb_min) <= np.asarray(o.aabb_max)) for o in objs)
    assert HabitatConfig(scene=str(glb)).resolved_sidecar() in (None, js)


def test_semantic_scene_entries():
    objs = objects_from_semantic_scene([(4, "Sofa", [0, 0.4, 0], [2, 0.8, 1]), (5, "", [0, 0, 0], [1, 1, 1])])
    assert len(objs) == 1 and objs[0].category == "sofa" and objs[0].instance_id == 4
    assert np.allclose(objs[0].aabb_min, [-1, 0, -0.5]) and np.allclose(objs[0].aabb_max, [1, 0.8, 0.5])


def _box(x0=1.0, x1=1.5, z0=1.0, z1=1.5, y1=0.9):
    return SceneObject(1, "chair", (x0, 0.0, z0), (x1, y1, z1), ((x0 + x1) / 2, y1 / 2, (z0 + z1) / 2))


def test_candidates_lie_within_radius_outside_footprint():
    obj = _box()
    pts = candidate_floor_points(obj, 1.0, 0.25, floor_y=0.0)
    d = np.array([horizontal_distance_to_aabb(p, obj) for p in pts])
    assert len(pts) > 20 and np.all((d > 0) & (d <= 1.0)) and np.all(pts[:, 1] == 0.0)


def _wall_depth(K, H, W, dist):
    """Depth image of a fronto-parallel wall `dist` metres ahead."""
    return np.full((H, W), dist, np.float32)


def test_visibility_from_depth_detects_occlusion():
    H = W = 32
    K = intrinsics_from_hfov(79, W, H)
    pose = Pose((0, 0.88, 0), 0.0)
    target = np.array([[0.0, 0.88, -3.0]])
    assert visible_in_depth(_wall_depth(K, H, W, 5.0), K, pose, target)  # wall behind the object
    assert not visible_in_depth(_wall_depth(K, H, W, 2.0), K, pose, target)  # wall in front of it
    assert not visible_in_depth(_wall_depth(K, H, W, 5.0), K, pose, np.array([[0.0, 0.88, 3.0]]))  # behind camera


def test_view_points_on_a_room_with_a_wall():
    """Navigable floor: x in [-3, 3], z in [-3, 3]; a wall at z = 0.5 for x < 1.0 hides the chair
    (at z in [1, 1.5]) from points with z < 0.5 unless they see past the wall's end."""
    obj = _box()

    def snap(p):
        return np.array([np.clip(p[0], -3, 3), 0.0, np.clip(p[2], -3, 3)])

    def nav(p):
        return -3 <= p[0] <= 3 and -3 <= p[2] <= 3 and not (p[0] < 1.0 and abs(p[2] - 0.5) < 0.1)

    def visible(p, o):  # straight segment from p to the object centre must not cross the wall
        c = o.center
        if (p[2] - 0.5) * (c[2] - 0.5) >= 0:
            return True
        t = (0.5 - p[2]) / (c[2] - p[2])
        return p[0] + t * (c[0] - p[0]) >= 1.0

    cands = candidate_floor_points(obj, 1.0, 0.25, 0.0)
    vps = select_view_points(obj, cands, snap, nav, visible, 1.0)
    assert len(vps) > 0
    assert all(nav(p) and visible(p, obj) and horizontal_distance_to_aabb(p, obj) <= 1.0 for p in vps)
    hidden = np.array([0.25, 0.0, 0.25])  # behind the wall
    assert not any(np.allclose(v, hidden) for v in vps)
    assert any(np.allclose(v, [2.0, 0.0, 1.25]) for v in vps)  # open side


def test_look_at_pose_faces_target():
    p = look_at_pose([0, 0, 0], [0, 0.5, -2], 0.88)
    assert np.allclose(p.xyz, [0, 0.88, 0]) and np.isclose(p.yaw, 0.0)
    assert np.isclose(look_at_pose([0, 0, 0], [-1, 0.5, 0], 0.88).yaw, math.pi / 2)


def test_sample_episode_respects_distance_and_seed():
    pts = iter([np.array([0.0, 0.0, 0.1]), np.array([0.0, 0.0, 5.0]), np.array([0.0, 0.0, 3.0])] * 3)

    def geo(p, cat):
        return float(p[2])

    ep = sample_episode(["chair"], np.random.default_rng(0), lambda: next(pts), geo, 0.88, 1.0, 4.0, "e0", 7)
    assert ep.target_category == "chair" and ep.geodesic_start_distance == 3.0 and ep.scene_seed == 7
    assert np.allclose(ep.start.xyz, [0, 0.88, 3.0])
    a = sample_episode(["a", "b"], np.random.default_rng(5), lambda: np.zeros(3) + 2, geo, 0.88, 1.0, 4.0, "x")
    b = sample_episode(["a", "b"], np.random.default_rng(5), lambda: np.zeros(3) + 2, geo, 0.88, 1.0, 4.0, "x")
    assert a == b
    with pytest.raises(RuntimeError, match="relax env.min_start_distance"):
        sample_episode(["a"], np.random.default_rng(0), lambda: np.zeros(3), lambda p, c: math.inf, 0.88, 1, 4, "x",
                       max_tries=5)
    with pytest.raises(ValueError, match="no target category"):
        sample_episode([], np.random.default_rng(0), lambda: np.zeros(3), geo, 0.88, 1, 4, "x")


def test_with_article():
    assert with_article(normalize_category("Chair")) == "a chair" and with_article("armchair") == "an armchair"


# ----------------------------------------------------------------------------------- metrics
def test_objectnav_metrics():
    m = objectnav_metrics(True, 0.05, 4.0, 5.0, 30, 2)
    assert m.success == 1.0 and np.isclose(m.spl, 0.8) and np.isclose(m.soft_spl, (1 - 0.05 / 4) * 0.8)
    assert m.num_steps == 30 and m.collisions == 2 and m.extra["called_stop"] == 1.0
    assert objectnav_metrics(False, 0.05, 4.0, 5.0, 30).success == 0.0  # no STOP, no success
    m = objectnav_metrics(True, 2.0, 4.0, 3.0, 10)  # stopped too far; shorter path than l: eff = 1
    assert m.success == 0.0 and m.spl == 0.0 and np.isclose(m.soft_spl, 0.5)
    assert objectnav_metrics(True, 5.0, 4.0, 3.0, 10).soft_spl == 0.0
    assert math.isnan(objectnav_metrics(True, 0.0, math.nan, 1.0, 1).spl)
