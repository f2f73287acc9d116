"""The shipped checkpoint (`make run`'s default imagination) keeps a quality floor.

Six fixed val cases of `python -m v4s_agent.eval imagination split=val episodes=6 baselines=none`
(seed 0, the checkpoint's own 3 steps, guidance 1, path-first grounding `grounding_path=head` and the cache
refiner `composite=refine`). Measured when the floor was set (version 7, one and two torch threads alike):
IF 3/6 (case 3, target in view; cases 2 and 5, target out of view: hits only the context can give), nav PSNR
26.07 dB. Version 6 (`composite=warp`, the same weights without the refiner) scored IF 2/6 (cases 3 and 5)
and 25.38 dB; with `grounding_path=model` IF 1/6 (case 0 only). Floors: IF keeps its three hits and nav PSNR
may lose 1.0 dB. An untrained model scores IF 0 and about 11-12 dB.
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

IF_FLOOR = 3 / 6
PSNR_FLOOR = 26.07 - 1.0


def test_shipped_checkpoint_quality_floor():
    from models.pipeline import DEFAULT_CHECKPOINT, load_default_pipeline
    from v4s_agent.eval_imagination import ImaginationEvalConfig, evaluate

    if not (DEFAULT_CHECKPOINT / "model_index.json").exists():
        pytest.fail(f"the shipped checkpoint is missing at {DEFAULT_CHECKPOINT}")
    pipe = load_default_pipeline()
    out = evaluate(ImaginationEvalConfig(split="val", episodes=6, seed=0, baselines="none"), pipe=pipe, progress=False)
    assert (out["episodes"], out["steps"], out["guidance"], out["grounding_path"]) == (6, 3, 1.0, "head")
    assert out["IF"] >= IF_FLOOR - 1e-9, out
    assert out["psnr_nav"] >= PSNR_FLOOR, out
