"""The shipped checkpoint (`make run`'s default imagination) keeps a quality floor.

Six fixed val cases of `python -m v4s_agent.eval imagination split=val episodes=6 baselines=none`
(seed 0, the checkpoint's own 3 steps, guidance 1 and path-first grounding, `grounding_path=head`).
Measured when the floor was set: IF 2/6 (case 3, target in view, and case 5, target out of view: a hit
only the context can give), nav PSNR 25.38 dB; the same cases with `grounding_path=model` score IF 1/6
(case 0 only). Floors: IF keeps both hits and nav PSNR may lose 1.0 dB. An untrained model scores IF 0
and about 11-12 dB.
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

IF_FLOOR = 2 / 6
PSNR_FLOOR = 25.38 - 1.0


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
