"""The shipped checkpoint (`make run`'s default imagination) keeps a quality floor.

Two fixed val cases of `python -m v4s_agent.eval imagination split=val episodes=2 baselines=none`
(seed 0, the checkpoint's own 3 steps and guidance 1). Measured when the floor was set:
IF 0.5 (case 0 is a hit, case 1 a miss), nav PSNR 17.41 dB (16.4 and 18.4). Floors: IF keeps its
one hit (a margin of one case would make it vacuous) and nav PSNR may lose 1.0 dB. An untrained
model scores IF 0 and about 11-12 dB here.
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

IF_FLOOR = 0.5
PSNR_FLOOR = 17.41 - 1.0


def test_shipped_checkpoint_quality_floor():
    from models.pipeline import DEFAULT_CHECKPOINT, load_default_pipeline
    from v4s_agent.eval_imagination import ImaginationEvalConfig, evaluate

    if not (DEFAULT_CHECKPOINT / "model_index.json").exists():
        pytest.fail(f"the shipped checkpoint is missing at {DEFAULT_CHECKPOINT}")
    pipe = load_default_pipeline()
    out = evaluate(ImaginationEvalConfig(split="val", episodes=2, seed=0, baselines="none"), pipe=pipe, progress=False)
    assert (out["episodes"], out["steps"], out["guidance"]) == (2, 3, 1.0)
    assert out["IF"] >= IF_FLOOR, out
    assert out["psnr_nav"] >= PSNR_FLOOR, out
