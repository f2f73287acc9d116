"""Rendering through the real MuJoCo/EGL path: shapes, depth, segmentation -> boxes, turning."""
from __future__ import annotations

import math

import numpy as np
import pytest

from envs.embedded.scene import WALL_T
from envs.embedded.world import EmbeddedWorld
from envs.geometry import project_points
from envs.types import Action, Observation, Pose


@pytest.fixture(scope="module")
def world():
    w = EmbeddedWorld(scene_seed=3)
    yield w
    w.close()


def test_shapes_dtypes_and_no_red(world):
    obs = world.reset(seed=0)
    assert isinstance(obs, Observation) and obs.step == 0
    assert obs.rgb.shape == (128, 128, 3) and obs.rgb.dtype == np.uint8
    assert obs.depth.shape == (128, 128) and obs.depth.dtype == np.float32
    assert obs.semantic.shape == (128, 128) and obs.semantic.dtype == np.int32
    assert 0.0 < float(obs.depth.min()) and float(obs.depth.max()) <= world.cfg.depth_max
    assert obs.rgb.std() > 10  # textured, not a flat colour
    assert obs.instruction.startswith("The camera moves across a ") and obs.instruction.endswith("in the centre of the frame.")
    rgb = obs.rgb.astype(int)
    assert not np.any((rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60))  # no box-red pixels
    assert world.K.shape == (3, 3) and world.hfov_deg == 79.0


def test_depth_at_centre_equals_distance_to_wall(world):
    scene = world.scene
    checked = 0
    for room in scene.rooms:
        ix0, iz0, ix1, iz1 = room.interior
        x = 0.5 * (ix0 + ix1)
        # facing the north wall (yaw 0 looks along -z) from 1.2 m away, pitched up past furniture
        if any(d.along == "x" and abs(d.centre_xz[1] - (iz0 - WALL_T / 2)) < 0.01 and abs(d.centre_xz[0] - x) < d.width / 2 + 0.3
               for d in scene.doors):
            continue
        pitch = math.radians(35.0)
        pose = Pose((x, 0.88, iz0 + 1.2), 0.0, pitch)
        obs = world.render_at(pose)
        c = obs.semantic[63:65, 63:65]
        if np.any(c != 0):  # something in front of the wall
            continue
        expected = 1.2 / math.cos(pitch)
        assert abs(float(obs.depth[63:65, 63:65].mean()) - expected) < 0.05, (obs.depth[63:65, 63:65], expected)
        checked += 1
    assert checked >= 1


def test_gt_box_contains_projected_centre(world):
    world.reset(seed=1)
    iid = world.episode.target_instance_ids[0]
    start = world.agent_pose
    pose = world.centring_pose(iid, (start.position[0], start.position[2]))
    obs = world.render_at(pose)
    boxes = {b.instance_id: b for b in world.gt_boxes(obs)}
    assert iid in boxes and boxes[iid].label == world.episode.target_category
    obj = world.scene.object(iid)
    uv, z = project_points(obj.position[None], pose, world.K)
    b = boxes[iid]
    assert z[0] > 0 and b.x0 <= uv[0, 0] <= b.x1 and b.y0 <= uv[0, 1] <= b.y1
    # centring pose really centres it (within a few pixels)
    assert abs(uv[0, 0] - 64) < 2 and abs(uv[0, 1] - 64) < 2
    assert world.is_visible(pose, iid)
    # every box's instance matches the semantic image
    for bb in boxes.values():
        sub = obs.semantic[int(bb.y0) : int(bb.y1), int(bb.x0) : int(bb.x1)]
        assert np.any(sub == bb.instance_id) and bb.label == world.scene.object(bb.instance_id).category


def test_render_at_does_not_move_agent(world):
    world.reset(seed=2)
    before = world.agent_pose
    world.render_at(Pose((before.position[0] + 0.3, 0.88, before.position[2]), 1.0, 0.2))
    assert world.agent_pose == before
    o = world.step(Action.TURN_LEFT)
    assert o.step == 1


def test_twelve_turns_return_the_same_image(world):
    obs0 = world.reset(seed=4)
    o = obs0
    for _ in range(12):
        o = world.step(Action.TURN_LEFT)
    assert abs(math.remainder(o.pose.yaw - obs0.pose.yaw, 2 * math.pi)) < 1e-9
    assert np.abs(o.rgb.astype(int) - obs0.rgb.astype(int)).max() <= 1
    assert np.allclose(o.depth, obs0.depth, atol=1e-3)


def test_look_up_down_changes_pitch_and_is_clamped(world):
    world.reset(seed=5)
    for _ in range(4):
        o = world.step(Action.LOOK_UP)
    assert math.isclose(o.pose.pitch, math.radians(world.cfg.max_pitch_deg))
    o = world.step(Action.LOOK_DOWN)
    assert math.isclose(o.pose.pitch, math.radians(30.0))


def test_merged_meshes_render_like_the_parts(world):
    """RGB-D and instance ids are drawn from merged meshes (mjbuild): same depth and ids as the
    one-geom-per-part primitives, and the same colours up to rounding (MuJoCo's texture mapping of
    boxes and its tessellation are reproduced; a MuJoCo upgrade that changes them fails here)."""
    import mujoco

    from envs.embedded.mjbuild import PRIM_GROUP

    r = world._renderer
    world.reset(seed=1)
    opt = mujoco.MjvOption()
    opt.geomgroup[:] = 0
    opt.geomgroup[PRIM_GROUP] = 1
    parts = r._scene(r.model, opt)
    assert r.scn.ngeom < 20 < parts.ngeom  # the point of merging: few draw calls
    lut = np.zeros(parts.ngeom + 2, dtype=np.int32)
    for k in range(parts.ngeom):
        lut[parts.geoms[k].segid + 1] = world.assets.geom_instance[parts.geoms[k].objid]
    rng = np.random.default_rng(0)
    nav = world.navgrid.cell_centres(np.argwhere(world.navgrid.navigable))
    psnr = []
    for _ in range(6):
        x, z = nav[rng.integers(len(nav))]
        pose = Pose((float(x), 0.88, float(z)), float(rng.uniform(-math.pi, math.pi)), float(rng.choice([0.0, -0.5])))
        obs = world.render_at(pose, semantic=True)
        saved = r.scn, r._scn_sem, r._lut
        r.scn = r._scn_sem = parts
        r._lut = lut
        r._hl_pos, r._hl_dir = parts.lights[0].pos, parts.lights[0].dir
        try:
            ref = world.render_at(pose, semantic=True)
        finally:
            r.scn, r._scn_sem, r._lut = saved
            r._hl_pos, r._hl_dir = r.scn.lights[0].pos, r.scn.lights[0].dir
        assert np.allclose(obs.depth, ref.depth, atol=1e-3)
        assert np.mean(obs.semantic != ref.semantic) < 1e-3
        mse = np.mean((obs.rgb.astype(float) - ref.rgb) ** 2)
        psnr.append(99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse))
    assert np.mean(psnr) > 40.0, psnr
