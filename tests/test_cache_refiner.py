"""The cache refiner (models/cache_refiner.py), its trainer, and `composite="refine"`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.cache_refiner import CacheRefiner
from models.clipstore import write_shard
from models.pipeline import ImaginationPipeline, tiny_pipeline
from models.types import VideoContext
from tests.synthetic_clips import make_clip

ROOT = Path(__file__).resolve().parents[1]
SIZE = dict(height=32, width=32, num_frames=6, num_box_frames=2)


@pytest.fixture(scope="module")
def warp_pipe() -> ImaginationPipeline:
    """A tiny pipeline with the warp prior and `composite=warp` (σ 0.7, as shipped)."""
    pipe = tiny_pipeline(seed=0, num_inference_steps=1, guidance_scale=1.0, **SIZE)
    pipe.transformer.add_geometry_layer(pipe.geometry_channels)
    with torch.no_grad():  # a geometry layer that is not zero: the prior reaches the model's frames
        pipe.transformer.geometry_embedding.weight.normal_(0, 0.05)
    return _with(pipe, geometry_prior="warp", composite="warp", composite_smooth=0.7)


def _with(pipe: ImaginationPipeline, refiner: CacheRefiner | None = None, **settings) -> ImaginationPipeline:
    return ImaginationPipeline(pipe.transformer, pipe.codec, pipe.text_encoder, pipe.scheduler,
                               replace(pipe.settings, **settings), refiner=refiner)


def _nav_case(seed: int = 3) -> tuple[VideoContext, np.ndarray]:
    clip = make_clip("navigation", seed=seed, size=32, num_frames=6, num_box_frames=2, num_context=4)
    ctx = VideoContext(clip.context_frames, clip.context_indices, clip.context_poses,
                       clip.context_depth.astype(np.float32))
    wp = np.zeros((6, 6))
    wp[:, 3] = 0.3 * np.arange(6)  # turns: the view leaves the context, the cache has holes
    return ctx, wp


def _perturbed(refiner: CacheRefiner) -> CacheRefiner:
    with torch.no_grad():  # non-zero weights everywhere, so a missing tensor would show
        for p in refiner.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return refiner.eval()


def test_untrained_refiner_is_exactly_composite_warp(warp_pipe):
    ctx, wp = _nav_case()
    warp = warp_pipe(ctx, waypoints=wp, seed=1, num_samples=2)
    torch.manual_seed(0)
    refine = _with(warp_pipe, CacheRefiner(channels=4, levels=2).eval(), composite="refine")
    out = refine(ctx, waypoints=wp, seed=1, num_samples=2)
    assert np.array_equal(out.frames, warp.frames)
    assert out.meta["refine_seconds"] > 0 and "refine_seconds" not in warp.meta
    torch.manual_seed(0)
    trained = _with(warp_pipe, _perturbed(CacheRefiner(channels=4, levels=2)), composite="refine")
    changed = trained(ctx, waypoints=wp, seed=1, num_samples=2).frames
    assert changed.shape == warp.frames.shape and not np.array_equal(changed, warp.frames)
    # grounding never goes through the cache
    assert np.array_equal(trained(ctx, instruction="a sofa", seed=1).frames,
                          warp_pipe(ctx, instruction="a sofa", seed=1).frames)


def test_no_model_refiner_ignores_the_model_frames(warp_pipe):
    """inputs=no_model: the output depends on the cache and the current view only, not on the model's frames."""
    torch.manual_seed(0)
    r = _perturbed(CacheRefiner(channels=4, levels=2, inputs="no_model"))
    rng = np.random.default_rng(0)
    cache = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    valid = rng.random((6, 32, 32)) < 0.7
    cur = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    a = r.refine(rng.integers(0, 256, (1, 6, 32, 32, 3), dtype=np.uint8), cache, valid, cur)
    b = r.refine(rng.integers(0, 256, (1, 6, 32, 32, 3), dtype=np.uint8), cache, valid, cur)
    assert np.array_equal(a, b)


def test_refiner_save_load_round_trip(warp_pipe, tmp_path):
    torch.manual_seed(0)
    pipe = _with(warp_pipe, _perturbed(CacheRefiner(channels=4, levels=2)), composite="refine")
    ctx, wp = _nav_case()
    pipe.save_pretrained(tmp_path / "p")
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    assert index["refiner"] == ["models", "CacheRefiner"] and index["v4s"]["composite"] == "refine"
    assert (tmp_path / "p" / "refiner" / "diffusion_pytorch_model.safetensors").exists()
    back = ImaginationPipeline.from_pretrained(tmp_path / "p")
    assert isinstance(back.refiner, CacheRefiner) and back.refiner.config.channels == 4
    assert np.array_equal(back(ctx, waypoints=wp, seed=1).frames, pipe(ctx, waypoints=wp, seed=1).frames)
    # the folder without its refiner: a load override falls back to composite=warp
    assert ImaginationPipeline.from_pretrained(tmp_path / "p", composite="warp").settings.composite == "warp"


def test_composite_refine_without_a_refiner_is_one_clear_line():
    with pytest.raises(ValueError, match=r"composite='refine' needs a pipeline with a cache refiner") as e:
        tiny_pipeline(seed=0, composite="refine")
    assert "\n" not in str(e.value) and "models.refiner_train" in str(e.value)


def test_trainer_smoke_writes_refiner_curve_and_pipeline(warp_pipe, tmp_path):
    """A few real steps on synthetic navigation clips: the refiner folder, the curve, an exported pipeline that
    loads with composite=refine and runs; bad arguments are one line and exit code 2."""
    warp_pipe.save_pretrained(tmp_path / "base")
    kw = dict(size=32, num_frames=6, num_box_frames=2, num_context=4)
    write_shard([make_clip("navigation", seed=s, **kw) for s in range(3)], tmp_path / "clips" / "train-0")
    write_shard([make_clip("navigation", seed=10 + s, **kw) for s in range(2)], tmp_path / "val" / "val-0")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "models.refiner_train", f"data={tmp_path / 'clips'}", f"val={tmp_path / 'val'}",
            f"out={tmp_path / 'run'}", f"pipeline={tmp_path / 'base'}", f"export={tmp_path / 'pipe'}", "steps=3",
            "batch_size=4", "channels=4", "levels=2", "eval_every=3", "seeds=2"]
    r = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["clips"] == 3
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [0, 3] and rows[0]["val_clips"] == 2
    assert rows[0]["val_psnr_refined"] == rows[0]["val_psnr_base"]  # untrained: the composite as it is
    assert (tmp_path / "run" / "refiner" / "config.json").exists()
    assert (tmp_path / "run" / "frames-train.safetensors").exists()
    pipe = ImaginationPipeline.from_pretrained(tmp_path / "pipe")
    assert pipe.settings.composite == "refine" and pipe.refiner is not None
    ctx, wp = _nav_case()
    assert pipe(ctx, waypoints=wp).frames.shape == (1, 6, 32, 32, 3)
    bad = subprocess.run([sys.executable, "-m", "models.refiner_train", "data=x", "out=y", "inputs=both"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "inputs must be one of" in bad.stderr
