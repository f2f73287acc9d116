"""Denoising probe (models.probe): x0 errors on real clip shards, the copy bar, CLI errors."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from synthetic_clips import make_clip

from models.clipstore import ClipDataset, write_shard
from models.pipeline import tiny_pipeline
from models.probe import ProbeConfig, main, probe

torch.set_num_threads(2)


def test_probe_errors_and_the_copy_bar(tmp_path, capsys):
    moving = make_clip("grounding", seed=1, num_frames=8, num_box_frames=2, num_context=4)
    still = dataclasses.replace(moving, target_frames=np.repeat(moving.context_frames[-1:], 8, axis=0))
    write_shard([moving], tmp_path / "moving" / "s0")
    write_shard([still], tmp_path / "still" / "s0")
    pipe = tiny_pipeline(seed=0, num_frames=8, num_box_frames=2)
    out = probe(pipe, ClipDataset(tmp_path / "moving", "grounding"), clips=4, sigmas=[0.9, 0.05])
    assert set(out) == {"copy_frame0", "frame0_s0.9", "all_s0.9", "frame0_s0.05", "all_s0.05"}
    assert all(np.isfinite(v) and v >= 0 for v in out.values())
    # x0 = x_t - σ·v: an untrained model's error shrinks with the noise level
    assert out["all_s0.05"] < 0.1 * out["all_s0.9"]
    assert out["copy_frame0"] > 0  # the camera moves: frame 0 is not all current view
    # a clip whose target never leaves the current view: copying it is exact
    assert probe(pipe, ClipDataset(tmp_path / "still", "grounding"), 1, [0.5])["copy_frame0"] < 1e-10
    assert main([f"data={tmp_path / 'nowhere'}"]) == 2
    with pytest.raises(SystemExit) as bad:  # a bad value: one error line, exit code 2
        main([f"data={tmp_path / 'moving'}", "sigmas=0.9,2"])
    assert bad.value.code == 2
    assert "error: sigmas must be in (0, 1]" in capsys.readouterr().err
    with pytest.raises(ValueError, match="data=DIR"):
        ProbeConfig()
