"""Memory: source indices, diverse context by pose coverage, latest frame last, look-around."""
import math

import numpy as np
import pytest

from envs.types import Action, Observation, Pose
from models.memory import Memory, MemoryConfig, look_around_actions


def _obs(i: int, pose: Pose | None, size: int = 16) -> Observation:
    rgb = np.full((size, size, 3), i % 256, dtype=np.uint8)
    return Observation(rgb=rgb, pose=pose, step=i)


def test_add_returns_source_indices_and_frames_keep_order():
    m = Memory()
    assert [m.add(_obs(i, Pose((0.0, 0.88, 0.0), 0.0))) for i in range(5)] == [0, 1, 2, 3, 4]
    assert len(m) == 5
    assert m.frames()[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]
    assert m.pose_matrices().shape == (5, 4, 4)


def test_context_covers_headings_of_a_look_around_and_ends_with_latest():
    m = Memory(MemoryConfig(max_context=8))
    # 3 duplicate frames at each of 12 headings (a look-around with repeats), then 4 frames of
    # walking along +x: a good context must see the 12 headings spread out, not 8 repeats.
    for k in range(12):
        for _ in range(3):
            m.add(_obs(len(m), Pose((0.0, 0.88, 0.0), k * math.radians(30))))
    for j in range(4):
        m.add(_obs(len(m), Pose((0.5 * (j + 1), 0.88, 0.0), 0.0)))
    ctx = m.select_context(8)
    assert ctx.indices[-1] == len(m) - 1
    assert np.all(np.diff(ctx.indices) > 0)
    assert len(ctx.indices) == 8 and ctx.frames.shape == (8, 16, 16, 3)
    chosen = [m.poses()[i] for i in ctx.indices]
    headings = {round(math.degrees(p.yaw)) % 360 for p in chosen if p.position[0] == 0.0}
    assert len(headings) >= 5  # spread over the turn, no duplicates of one view
    assert len({(p.position, p.yaw) for p in chosen}) == 8
    assert ctx.frames[:, 0, 0, 0].tolist() == [int(i) % 256 for i in ctx.indices]  # frames match indices


def test_context_without_poses_spreads_in_time_and_resizes():
    m = Memory(MemoryConfig(max_context=4))
    for i in range(40):
        m.add(_obs(i, None, size=32))
    ctx = m.select_context(4, size=(8, 8))
    assert ctx.indices[-1] == 39 and ctx.frames.shape == (4, 8, 8, 3) and ctx.poses is None
    assert np.min(np.diff(ctx.indices)) >= 8  # roughly even spacing, not a contiguous tail


def test_short_memory_returns_everything():
    m = Memory()
    m.add(_obs(0, Pose((0.0, 0.88, 0.0), 0.0)))
    m.add(_obs(1, Pose((0.0, 0.88, 0.0), 0.5)))
    assert m.select_context(16).indices.tolist() == [0, 1]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="max_context"):
        MemoryConfig(max_context=0)
    m = Memory(MemoryConfig(max_context=4))
    with pytest.raises(IndexError, match="^memory is empty; add an observation"):
        m.select_context(2)
    m.add(_obs(0, None))
    with pytest.raises(ValueError, match="context size"):
        m.select_context(5)
    with pytest.raises(ValueError, match="uint8"):
        m.add(Observation(rgb=np.zeros((16, 16, 3), np.float32)))
    with pytest.raises(ValueError, match="resolution"):
        m.add(_obs(1, None, size=8))


def test_look_around_is_a_full_turn():
    acts = look_around_actions(30.0)
    assert acts == [Action.TURN_LEFT] * 12
    assert len(look_around_actions(45.0)) == 8
    with pytest.raises(ValueError, match="turn_angle_deg"):
        look_around_actions(0.0)


def test_view_features_are_position_heading_and_time():
    """The distance the context pick spreads over: (x, y, z, yaw_scale·cos yaw, yaw_scale·sin yaw, time)."""
    m = Memory(MemoryConfig(yaw_scale_m=2.0, time_scale_m=0.5))
    poses = [Pose((1.0, 0.88, -2.0), 0.0), Pose((0.0, 0.88, 0.0), math.pi / 2), Pose((3.0, 0.5, 1.0), math.pi)]
    for i, p in enumerate(poses):
        m.add(_obs(i, p))
    want = [[1.0, 0.88, -2.0, 2.0, 0.0, 0.0], [0.0, 0.88, 0.0, 0.0, 2.0, 0.25], [3.0, 0.5, 1.0, -2.0, 0.0, 0.5]]
    np.testing.assert_allclose(m._features(), want, atol=1e-12)
    two = Memory(MemoryConfig(time_scale_m=0.5))
    for i in range(2):
        two.add(_obs(i, None))
    np.testing.assert_allclose(two._features(), [[0.0], [0.5]], atol=1e-12)
    m.add(_obs(3, None))  # a frame without a pose: time alone, evenly spread over [0, time_scale_m]
    np.testing.assert_allclose(m._features(), [[0.0], [0.5 / 3], [1.0 / 3], [0.5]], atol=1e-12)


def test_context_pick_starts_from_the_current_view():
    m = Memory(MemoryConfig(max_context=2, time_scale_m=0.0))
    for i, x in enumerate((-3.0, 3.0, -1.0)):
        m.add(_obs(i, Pose((x, 0.88, 0.0), 0.0)))
    np.testing.assert_array_equal(m.select_indices(2), [1, 2])  # farthest from the current view (x = -1)
    np.testing.assert_array_equal(m.select_indices(1), [2])
    assert m.select_indices(2).dtype == np.int64


def test_context_default_size_resize_and_poses():
    m = Memory(MemoryConfig(max_context=3))
    rng = np.random.default_rng(0)
    for i in range(5):
        m.add(Observation(rgb=rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), pose=Pose((0.2 * i, 0.88, 0.0), 0.3 * i), step=i))
    ctx = m.select_context()  # max_context frames
    assert len(ctx.indices) == 3 and ctx.indices[-1] == 4
    np.testing.assert_allclose(ctx.poses[:, 0, 3], [0.2 * i for i in ctx.indices])  # camera-to-world per chosen frame
    assert ctx.poses.shape == (3, 4, 4)
    small = m.select_context(3, size=(4, 4))
    blocks = m.frames()[ctx.indices].reshape(3, 4, 4, 4, 4, 3).mean(axis=(2, 4))  # INTER_AREA: 4x4 block means
    assert np.abs(small.frames.astype(float) - blocks).max() <= 1.0
    assert m.select_context(3, size=(1, 2)).frames.shape == (3, 1, 2, 3)
    assert m.select_context(3, size=(2, 1)).frames.shape == (3, 2, 1, 3)
    assert m.select_context(3, size=(16, 16)).frames.shape == (3, 16, 16, 3)
    for bad in ((0, 4), (4, 0)):
        with pytest.raises(ValueError, match=r"size must be positive \(H, W\)"):
            m.select_context(3, size=bad)


def test_context_depth_is_resized_by_nearest_neighbour():
    m = Memory(MemoryConfig(max_context=2))
    depth = np.zeros((16, 16), np.float64)
    depth[:, 6:] = 4.0  # an edge: averaging would invent points at 2 m
    for i in range(2):
        m.add(Observation(rgb=np.full((16, 16, 3), i, np.uint8), depth=depth + i, pose=Pose((0.0, 0.88, 0.0), 0.0), step=i))
    ctx = m.select_context(2)
    assert ctx.depths.dtype == np.float32 and ctx.depths.shape == (2, 16, 16)
    np.testing.assert_array_equal(ctx.depths[1], depth + 1)
    small = m.select_context(2, size=(4, 4)).depths
    assert small.shape == (2, 4, 4)
    assert set(np.unique(small[0]).tolist()) == {0.0, 4.0}  # only depths that were measured
    m.add(_obs(2, Pose((1.0, 0.88, 0.0), 0.0)))  # a frame without depth: no depth for the context
    assert m.select_context(2).depths is None
