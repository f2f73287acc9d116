"""Codec box probe on real clip shards with the shipped codec: the red outline survives a round trip
at the model resolution and is lost when the frame is too small to hold it."""
from __future__ import annotations

import pytest
from synthetic_clips import make_clips

from models.clipstore import write_shard
from models.codec_probe import CodecProbeConfig, final_views, main


def test_box_recall_falls_with_the_resolution(tmp_path):
    clips = make_clips(12)
    write_shard(clips, tmp_path / "s0")
    assert len(final_views(clips)) == 6  # the grounding half; navigation clips have no box
    res = main([f"data={tmp_path}", "sizes=16,64"])
    assert res["clips"] == 6
    # measured on these clips: 0.0 at 16 px (the 2 px outline is gone), 0.33 at 64 px
    assert res["box_recall"]["16"] == 0.0 < res["box_recall"]["64"]


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="multiples of 8"):
        CodecProbeConfig(data="x", sizes="30")
    with pytest.raises(ValueError, match="data=DIR"):
        CodecProbeConfig()
