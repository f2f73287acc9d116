"""The clip generator (models/data.py): clips agree with the simulator they were rendered from."""
from __future__ import annotations

import os
from itertools import pairwise

os.environ.setdefault("MUJOCO_GL", "egl")

import cv2
import numpy as np
import pytest

from envs.geometry import matrix_to_pose, target_centred
from envs.types import Box2D, Pose
from models.data import ClipGenConfig, generate, route_poses, scene_clips
from models.red_box import detect_red_box

SCENE = 3  # a train-split scene


@pytest.fixture(scope="module")
def world():
    from envs.embedded.config import WorldConfig
    from envs.embedded.world import EmbeddedWorld

    w = EmbeddedWorld(WorldConfig(width=128, height=128, render_depth=False, render_semantic=False), scene_seed=SCENE)
    yield w
    w.close()


@pytest.fixture(scope="module")
def clips(world):
    cfg = ClipGenConfig(out="unused", scenes=1, clips_per_scene=2, seed=7)
    clips, rejected = scene_clips(world, SCENE, cfg)
    assert rejected == 0
    return cfg, clips


def _render64(world, T: np.ndarray) -> np.ndarray:
    rgb = world.render_at(matrix_to_pose(T), semantic=False).rgb
    return cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_AREA)


def test_modes_and_shapes(clips):
    cfg, cs = clips
    assert [c.mode for c in cs] == ["grounding", "navigation"]
    for c in cs:
        assert c.target_frames.shape == (20, 64, 64, 3) and c.target_frames.dtype == np.uint8
        assert c.target_poses.shape == (20, 4, 4)
        assert 1 <= len(c.context_frames) <= cfg.context_frames
        assert np.all(np.diff(c.context_indices) > 0), "context indices must be strictly increasing"
        # the last context frame is the current view = the first target frame (paper §3.3)
        assert np.array_equal(c.context_frames[-1], c.target_frames[0])
    g = cs[0]
    assert g.num_box_frames == 4 and g.instruction.startswith("The camera moves across")
    assert g.instruction.endswith("in the centre of the frame.")


def test_grounding_ends_centred_with_red_box(world, clips):
    _, cs = clips
    g = cs[0]
    last_path = len(g.target_frames) - g.num_box_frames - 1
    obs = world.render_at(matrix_to_pose(g.target_poses[last_path]), semantic=True)
    boxes = [b for b in world.gt_boxes(obs, min_pixels=1) if b.instance_id == g.instance_id]
    assert boxes, "the target must be visible in the last path frame"
    b = boxes[0]
    b64 = Box2D(b.x0 / 2, b.y0 / 2, b.x1 / 2, b.y1 / 2)
    assert target_centred(b64, 64, 64, gamma=0.6)
    assert np.allclose(g.target_box, [b64.x0, b64.y0, b64.x1, b64.y1])
    assert world.scene.object(g.instance_id).category == g.category
    det = detect_red_box(g.target_frames[-g.num_box_frames:])
    assert det is not None and det.iou(b64) > 0.7
    # no red box on the path frames
    assert detect_red_box(g.target_frames[: last_path + 1]) is None


def test_frames_match_renders_at_poses(world, clips):
    _, cs = clips
    for c in cs:
        n = len(c.target_frames) - c.num_box_frames
        for i in (0, n // 2, n - 1):
            # poses are stored as float32: re-rendering from them may move an edge pixel, nothing more
            diff = np.abs(_render64(world, c.target_poses[i]).astype(int) - c.target_frames[i].astype(int))
            assert diff.mean() < 0.5 and np.mean(diff > 8) < 0.01, f"{c.mode} frame {i} differs from the render at its pose"


def test_navigation_steps_are_bounded(world, clips):
    cfg, cs = clips
    nav = cs[1]
    P = nav.target_poses.astype(np.float64)
    for a, b in pairwise(P):
        rel = np.linalg.inv(a) @ b
        assert np.hypot(rel[0, 3], rel[2, 3]) <= cfg.nav_max_forward + 1e-4
        yaw = np.arctan2(rel[0, 2], rel[2, 2])
        assert abs(yaw) <= np.radians(cfg.nav_max_yaw_deg) + 1e-4
        assert world.navgrid.is_navigable((b[0, 3], b[2, 3]))


def test_deterministic(world, clips):
    cfg, cs = clips
    again, _ = scene_clips(world, SCENE, cfg)
    for a, b in zip(cs, again):
        assert np.array_equal(a.target_frames, b.target_frames)
        assert np.array_equal(a.context_indices, b.context_indices)


def test_route_poses_endpoints():
    s = Pose((0.0, 0.88, 0.0), 0.0)
    e = Pose((2.0, 0.88, -1.0), 1.0, -0.2)
    ps = route_poses(s, np.array([[1.0, -1.0]]), e, 8)
    assert len(ps) == 8 and ps[0] == s and ps[-1] == e
    assert all(abs(p.pitch) <= 0.2 + 1e-9 for p in ps)


def test_config_errors():
    with pytest.raises(ValueError, match="split"):
        ClipGenConfig(out="x", split="nope")
    with pytest.raises(ValueError, match="nav_frames"):
        ClipGenConfig(out="x", nav_frames=12)
    with pytest.raises(ValueError, match="unknown key"):
        ClipGenConfig.from_argv(["out=x", "bogus=1"])
    with pytest.raises(ValueError, match="out=DIR"):
        ClipGenConfig.from_argv(["scenes=2"])


def test_generate_writes_readable_shard(tmp_path):
    from models.clipstore import ClipDataset

    cfg = ClipGenConfig(out=str(tmp_path), split="val", scenes=1, clips_per_scene=2, num_workers=1)
    m = generate(cfg, progress=False)
    assert m["clips"] == len(ClipDataset(tmp_path)) >= 1
    assert sorted(ClipDataset(tmp_path).modes()) == sorted(["grounding", "navigation"][: m["clips"]])


def test_rotation_heavy_navigation_paths(world, clips):
    """nav_min_turn_deg: every step turns the same way by at least min/(n − 1), within the rate limit,
    on the floor; plain paths draw nothing extra (the shipped data stays reproducible)."""
    from models.data import nav_path

    cfg, cs = clips
    start = matrix_to_pose(cs[1].target_poses[0].astype(np.float64))
    for seed in range(4):
        poses = nav_path(world, start, 12, np.random.default_rng(seed), 0.3, 20.0, 180.0)
        turns = np.diff(np.unwrap([p.yaw for p in poses]))
        assert abs(turns.sum()) >= np.radians(180.0) - 1e-6
        assert np.all(np.sign(turns) == np.sign(turns[0]))
        assert np.all(np.abs(turns) <= np.radians(20.0) + 1e-9)
        assert all(world.navgrid.is_navigable((p.position[0], p.position[2])) for p in poses)
    end = nav_path(world, start, 12, np.random.default_rng(0), 0.3, 15.0)[-1]  # pinned before the option existed
    np.testing.assert_allclose([end.position[0], end.position[2], end.yaw], [3.489157, 2.013885, -2.349678], atol=1e-5)
    with pytest.raises(ValueError, match="nav_min_turn_deg"):
        ClipGenConfig(out="x", nav_frames=12, path_frames=8, nav_min_turn_deg=180.0)  # 11 × 15° < 180°


def _most_pixels(world, pose: Pose, instance_ids: list[int]) -> int:
    """The most ground-truth segmentation pixels any one of `instance_ids` has in the render at `pose`."""
    sem = world.render_at(pose, semantic=True).semantic
    return max(int(np.count_nonzero(sem == i)) for i in instance_ids)


def test_out_of_view_stations_show_the_target_only_in_older_context(world):
    """out_of_view_prob=1: no instance of the category in a grounding clip's current view (ground-truth
    segmentation), the target itself in an older context frame; the path still ends centred on it."""
    cfg = ClipGenConfig(out="unused", scenes=1, clips_per_scene=3, seed=7, modes="grounding", out_of_view_prob=1.0,
                        path_frames=8, box_frames=4, nav_frames=12)
    cs, _ = scene_clips(world, SCENE, cfg)
    assert len(cs) >= 2
    for c in cs:
        ctx = [matrix_to_pose(T.astype(np.float64)) for T in c.context_poses]
        same = [o.instance_id for o in world.scene.objects if o.category == c.category]
        assert _most_pixels(world, ctx[-1], same) < cfg.min_target_pixels, "the category is in the current view"
        assert max(_most_pixels(world, p, [c.instance_id]) for p in ctx[:-1]) >= cfg.min_target_pixels
        assert _most_pixels(world, matrix_to_pose(c.target_poses[-1].astype(np.float64)), [c.instance_id]) >= 30
