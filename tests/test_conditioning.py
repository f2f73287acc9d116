"""The conditioning the trainer and the sampler share, pinned to exact values: RoPE positions, cameras
relative to the first target frame, Plücker maps on the latent grid, context picks and groups."""
from __future__ import annotations

import math

import numpy as np
import pytest

from models import conditioning as cond


# ---------------------------------------------------------------- RoPE positions
def test_rope_positions_are_sparse_context_then_gap_then_targets():
    ctx, tgt = cond.rope_positions(np.array([8, 12, 20]), 3, 4, gap=50.0)
    np.testing.assert_array_equal(ctx, [0.0, 1.0, 3.0])  # (index - first) / temporal factor
    np.testing.assert_array_equal(tgt, [53.0, 54.0, 55.0])  # last context + gap, one apart
    _, tgt = cond.rope_positions(np.array([5]), 2, 1)
    np.testing.assert_array_equal(tgt, [50.0, 51.0])  # the paper's gap of 50 by default
    ctx, _ = cond.rope_positions(np.array([1, 2]), 1, 4)  # a quarter step: a frame inside a 4-frame latent
    np.testing.assert_array_equal(ctx, [0.0, 0.25])


def test_rope_positions_refuse_no_context():
    with pytest.raises(ValueError, match="^need at least one context index$"):
        cond.rope_positions(np.array([], dtype=np.int64), 2, 1)
    with pytest.raises(ValueError, match="^need at least one context index$"):
        cond.rope_positions(np.zeros((2, 2)), 2, 1)


# ---------------------------------------------------------------- cameras
def test_waypoints_to_c2w_builds_the_relative_cameras():
    w = np.zeros((3, 6))
    w[1, :3] = (0.5, 0.0, -1.0)
    w[2, 3] = math.pi / 2  # a quarter turn left (yaw about +Y)
    T = cond.waypoints_to_c2w(w)
    assert T.shape == (3, 4, 4)
    np.testing.assert_allclose(T[0], np.eye(4))
    np.testing.assert_allclose(T[1, :3, 3], (0.5, 0.0, -1.0))
    np.testing.assert_allclose(T[1, :3, :3], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(T[2, :3, :3] @ (0.0, 0.0, -1.0), (-1.0, 0.0, 0.0), atol=1e-12)  # looks along -X
    with pytest.raises(ValueError, match=r"\(F, 6\).*shape \(3, 5\)"):
        cond.waypoints_to_c2w(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"\(F, 6\)"):
        cond.waypoints_to_c2w(np.zeros(6))
    bad = np.zeros((2, 6))
    bad[1, 4] = np.inf
    with pytest.raises(ValueError, match="^waypoints contain NaN or inf$"):
        cond.waypoints_to_c2w(bad)


def test_relative_to_makes_the_reference_camera_the_origin():
    c2w = np.tile(np.eye(4), (2, 1, 1))
    c2w[0, :3, 3] = (1.0, 0.0, 2.0)
    c2w[1, :3, 3] = (1.0, 0.0, 1.0)
    c2w[0, :3, :3] = [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]  # first camera turned 90 deg
    rel = cond.relative_to(c2w)
    np.testing.assert_allclose(rel[0], np.eye(4), atol=1e-12)
    np.testing.assert_allclose(rel[1], np.linalg.inv(c2w[0]) @ c2w[1], atol=1e-12)
    np.testing.assert_allclose(rel[1, :3, 3], (1.0, 0.0, 0.0), atol=1e-12)  # 1 m to the first camera's right
    rel = cond.relative_to(c2w, reference=1)
    np.testing.assert_allclose(rel[1], np.eye(4), atol=1e-12)
    np.testing.assert_allclose(rel[0, :3, 3], (0.0, 0.0, 1.0), atol=1e-12)


def test_plucker_latent_is_one_camera_per_latent_on_the_latent_grid():
    h, w, hfov = 4, 6, 90.0
    c2w = np.tile(np.eye(4), (3, 1, 1))
    c2w[2, :3, 3] = (0.0, 1.0, 0.0)
    maps = cond.plucker_latent(c2w, [0, 2], hfov, h, w).numpy()
    assert maps.shape == (6, 2, h, w)
    fx = (w / 2) / math.tan(math.radians(hfov) / 2)  # focal length at the latent resolution
    for r in range(h):
        for c in range(w):
            d = np.array([(c + 0.5 - w / 2) / fx, -(r + 0.5 - h / 2) / fx, -1.0])
            d /= np.linalg.norm(d)
            np.testing.assert_allclose(maps[:3, 0, r, c], d, atol=1e-6)
            np.testing.assert_allclose(maps[:3, 1, r, c], d, atol=1e-6)
            np.testing.assert_allclose(maps[3:, 0, r, c], 0.0, atol=1e-7)  # camera at the origin
            np.testing.assert_allclose(maps[3:, 1, r, c], np.cross((0.0, 1.0, 0.0), d), atol=1e-6)  # source 2


# ---------------------------------------------------------------- frames
def test_resize_frames_averages_when_shrinking_and_keeps_the_size_order():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    # shrinking (or keeping) both sides: INTER_AREA, the mean of each block (no aliasing)
    for (H, W), (h, w) in (((8, 8), (2, 2)), ((16, 4), (8, 1)), ((8, 16), (8, 4)), ((8, 16), (4, 4)), ((16, 8), (4, 8))):
        big = rng.integers(0, 256, (2, H, W, 3), dtype=np.uint8)
        block_mean = big.reshape(2, h, H // h, w, W // w, 3).mean(axis=(2, 4))
        assert np.abs(cond.resize_frames(big, h, w).astype(float) - block_mean).max() <= 1.0, ((H, W), (h, w))
    # enlarging a side: INTER_LINEAR, a smooth ramp between two pixels (INTER_AREA would make steps)
    ramp = np.zeros((1, 4, 2, 3), np.uint8)
    ramp[:, :, 1] = 255
    for h in (2, 4, 8):
        row = cond.resize_frames(ramp, h, 16)[0, 0, :, 0].astype(int)
        assert len(set(row.tolist())) >= 8 and np.all(np.diff(row) >= 0), row
    assert cond.resize_frames(frames, 4, 6).shape == (2, 4, 6, 3)  # (height, width)
    assert cond.resize_frames(frames, 8, 8) is frames
    assert cond.resize_frames(frames, 16, 16).shape == (2, 16, 16, 3)


# ---------------------------------------------------------------- context picks
def test_pick_context_spreads_evenly_and_keeps_the_current_view():
    np.testing.assert_array_equal(cond.pick_context(5, 5), np.arange(5))
    np.testing.assert_array_equal(cond.pick_context(3, 8), np.arange(3))
    np.testing.assert_array_equal(cond.pick_context(10, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(cond.pick_context(101, 5), [0, 25, 50, 75, 100])


def test_pick_context_groups_are_runs_ending_on_the_current_view():
    np.testing.assert_array_equal(cond.pick_context_groups(20, 8, 4), [0, 1, 2, 3, 16, 17, 18, 19])
    np.testing.assert_array_equal(cond.pick_context_groups(40, 12, 4), [0, 1, 2, 3, 18, 19, 20, 21, 36, 37, 38, 39])
    np.testing.assert_array_equal(cond.pick_context_groups(8, 8, 4), np.arange(8))
    np.testing.assert_array_equal(cond.pick_context_groups(9, 9, 4), np.arange(9))  # all fit: all kept
    np.testing.assert_array_equal(cond.pick_context_groups(20, 8, 2), [0, 1, 6, 7, 12, 13, 18, 19])  # pairs
    np.testing.assert_array_equal(cond.pick_context_groups(10, 4, 1), cond.pick_context(10, 4))
    np.testing.assert_array_equal(cond.pick_context_groups(10, 4, 0), cond.pick_context(10, 4))
    # room for one run only: it is the one that ends on the current view
    np.testing.assert_array_equal(cond.pick_context_groups(20, 4, 4), [16, 17, 18, 19])
    np.testing.assert_array_equal(cond.pick_context_groups(20, 6, 4), [16, 17, 18, 19])


def test_context_groups_pad_the_first_group_in_front():
    order, last = cond.context_groups(5, 4)
    np.testing.assert_array_equal(order, [0, 0, 0, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(last, [0, 4])
    order, last = cond.context_groups(8, 4)
    np.testing.assert_array_equal(order, np.arange(8))
    np.testing.assert_array_equal(last, [3, 7])
    assert order.dtype == last.dtype == np.int64  # they index frames
    order, last = cond.context_groups(1, 4)  # one frame: a still camera
    np.testing.assert_array_equal(order, [0, 0, 0, 0])
    np.testing.assert_array_equal(last, [0])
    order, last = cond.context_groups(3, 1)
    np.testing.assert_array_equal(order, [0, 1, 2])
    np.testing.assert_array_equal(last, [0, 1, 2])
    for bad in ((0, 4), (3, 0)):
        with pytest.raises(ValueError, match="^need at least one context frame and group >= 1"):
            cond.context_groups(*bad)


@pytest.mark.parametrize("group", [1, 4])
def test_sample_context_groups_are_runs_that_end_on_the_current_view(group):
    n, count = 40, 9
    seen = set()
    for seed in range(6):
        pick = cond.sample_context_groups(n, count, group, np.random.default_rng(seed))
        assert pick.dtype == np.int64 and len(pick) == count
        assert list(pick) == sorted(set(pick.tolist())) and pick[0] >= 0 and pick[-1] == n - 1
        for f in pick[:-1]:  # every frame starts a run at a multiple of `group` or continues one
            assert f % group == 0 or f - 1 in pick
        np.testing.assert_array_equal(pick, cond.sample_context_groups(n, count, group, np.random.default_rng(seed)))
        seen.add(tuple(pick))
    assert len(seen) > 1  # random runs, not a fixed pick
    np.testing.assert_array_equal(cond.sample_context_groups(5, 5, group, np.random.default_rng(0)), np.arange(5))
    np.testing.assert_array_equal(cond.sample_context_groups(10, 1, group, np.random.default_rng(0)), [9])
    np.testing.assert_array_equal(cond.sample_context_groups(3, 5, group, np.random.default_rng(0)), np.arange(3))
    with pytest.raises(ValueError, match="^need at least one context frame$"):
        cond.sample_context_groups(5, 0, group, np.random.default_rng(0))


def test_sample_context_groups_can_draw_every_earlier_frame_and_no_later_one():
    for n, count, group in ((5, 4, 1), (9, 3, 1), (38, 9, 4), (39, 13, 4)):
        drawn = set()
        for seed in range(40):
            pick = cond.sample_context_groups(n, count, group, np.random.default_rng(seed))
            assert len(pick) == count and pick.max() == n - 1
            drawn.update(pick.tolist())
        assert drawn == set(range(n)), (n, count, group)


def test_pick_reference_is_first_or_a_frame_with_a_camera():
    rng = np.random.default_rng(0)
    assert cond.pick_reference("first", [2, 5, 9], rng) == 0
    assert cond.pick_reference("random", [2, 5, 9], None) == 0  # no generator: the first frame
    drawn = {cond.pick_reference("random", [2, 5, 9], np.random.default_rng(s)) for s in range(30)}
    assert drawn == {2, 5, 9}
    assert isinstance(cond.pick_reference("random", [2, 5, 9], rng), int)
    with pytest.raises(ValueError, match=r"^zero_pose must be one of \('first', 'random'\), got 'last'$"):
        cond.pick_reference("last", [0], rng)
