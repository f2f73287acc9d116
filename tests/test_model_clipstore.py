"""Clip shards: safetensors + JSON sidecar round trip, dataset indexing, clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic_clips import make_clip, make_clips

from models.clipstore import ClipDataset, read_shard, write_shard


def test_round_trip_and_dataset(tmp_path):
    clips = make_clips(3)
    write_shard(clips, tmp_path / "a" / "shard-000.safetensors")
    write_shard(make_clips(2, seed=10), tmp_path / "b" / "shard-001")
    assert not list(tmp_path.rglob("*.pkl")) and (tmp_path / "a" / "shard-000.json").exists()
    back = read_shard(tmp_path / "a" / "shard-000")
    for c, r in zip(clips, back):
        assert r.mode == c.mode and r.instruction == c.instruction and r.num_box_frames == c.num_box_frames
        np.testing.assert_array_equal(r.context_frames, c.context_frames)
        np.testing.assert_array_equal(r.context_indices, c.context_indices)
        np.testing.assert_array_equal(r.target_frames, c.target_frames)
        np.testing.assert_allclose(r.target_poses, c.target_poses)
        assert (r.target_box is None) == (c.target_box is None)
    ds = ClipDataset(tmp_path)
    assert len(ds) == 5
    nav = ClipDataset(tmp_path, mode="navigation")
    assert len(nav) == 2 and all(nav[i].mode == "navigation" for i in range(len(nav)))
    assert ds[0].target_frames.dtype == np.uint8
    side = json.loads((tmp_path / "a" / "shard-000.json").read_text())
    assert side["format"] == "v4s-clips" and len(side["clips"]) == 3


def test_grounding_clip_ends_with_red_box_frames():
    c = make_clip("grounding", num_frames=20, num_box_frames=4)
    last = c.target_frames[-1]
    red = (last[..., 0] == 255) & (last[..., 1] == 0) & (last[..., 2] == 0)
    assert red.sum() > 20 and c.num_box_frames == 4
    assert not ((c.target_frames[0][..., 0] == 255) & (c.target_frames[0][..., 1] == 0)).sum() > 20


def test_errors(tmp_path):
    bad = make_clip()
    bad.target_frames = bad.target_frames.astype(np.float32)
    with pytest.raises(ValueError, match="clip 0: target_frames must be uint8"):
        write_shard([bad], tmp_path / "x")
    bad = make_clip()
    bad.target_poses = bad.target_poses[:3]
    with pytest.raises(ValueError, match="target_poses"):
        write_shard([bad], tmp_path / "x")
    with pytest.raises(ValueError, match="at least one clip"):
        write_shard([], tmp_path / "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no  ?clips found"):
        ClipDataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ClipDataset(tmp_path / "missing")
    write_shard(make_clips(1), tmp_path / "s" / "one")
    (tmp_path / "s" / "one.json").unlink()
    with pytest.raises(FileNotFoundError, match="sidecar"):
        ClipDataset(tmp_path / "s")
