"""Trainer end to end: 10 steps on real clip shards → resumable checkpoints → exported pipeline → sampling."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from synthetic_clips import make_clips

from models.clipstore import write_shard
from models.pipeline import ImaginationPipeline
from models.train import TrainConfig, main, parse_args, sample_context_groups, train
from models.types import VideoContext

torch.set_num_threads(2)
COMMON = ["batch_size=2", "codec=random", "log_every=2", "warmup_steps=2", "lr=1e-3"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    kw = dict(num_frames=6, num_box_frames=2, num_context=4)  # small clips keep the runs fast
    write_shard(make_clips(4, **kw), root / "train" / "s0")
    write_shard(make_clips(2, seed=50, **kw), root / "val" / "s0")
    return root


def _log(out) -> list[dict]:
    return [json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()]


def test_ten_steps_resume_export_and_sample(shards, tmp_path):
    out = tmp_path / "run"
    args = [f"data={shards / 'train'}", f"out={out}", f"val_data={shards / 'val'}", "val_every=5", "val_batches=1",
            "ckpt_every=5", *COMMON]
    assert main(args + ["steps=5"]) == 0
    assert (out / "checkpoints" / "step-5" / "trainable.safetensors").exists()
    # resume: picks up at step 5 and finishes at 10 (not from scratch)
    assert main(args + ["steps=10"]) == 0
    log = _log(out)
    steps = [r["step"] for r in log if "loss" in r]
    assert steps[-1] == 10 and steps.count(2) == 1 and 6 in steps  # steps 1-5 are not repeated
    val = [r for r in log if "val_loss" in r]
    assert [r["step"] for r in val] == [5, 10] and all(np.isfinite(r["val_loss"]) for r in val)
    assert all(np.isfinite(r["loss"]) for r in log if "loss" in r)
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt"))  # safetensors + JSON only
    # the exported fp16 pipeline loads and samples (grounding and navigation)
    pipe = ImaginationPipeline.from_pretrained(out / "pipeline")
    assert pipe.num_frames == 6 and pipe.num_box_frames == 2
    clip = make_clips(1, seed=99, num_frames=6, num_box_frames=2, num_context=4)[0]
    ctx = VideoContext(clip.context_frames, clip.context_indices)
    v = pipe.ground(ctx, clip.instruction, num_samples=2)
    assert v.frames.shape == (2, 6, 64, 64, 3)
    assert pipe.navigate(ctx, np.zeros((6, 6))).frames.shape == (1, 6, 64, 64, 3)


def test_loss_decreases_when_overfitting(shards, tmp_path):
    out = tmp_path / "fit"
    s = train(TrainConfig(data=str(shards / "train"), out=str(out), steps=16, batch_size=2, codec="random",
                          log_every=1, warmup_steps=1, lr=2e-3, p_drop_joint=0, p_drop_text=0, p_drop_context=0,
                          ckpt_every=1000, export_fp16=False))
    losses = [r["loss"] for r in _log(out) if "loss" in r]
    assert s["steps"] == 16 and np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4]), losses


def test_lora_and_attention_only_finetuning(shards, tmp_path):
    out = tmp_path / "lora"
    train(TrainConfig(data=str(shards / "train"), out=str(out), steps=2, batch_size=2, codec="random",
                      finetune="lora", lora_rank=4, ckpt_every=1))
    from safetensors.torch import load_file

    trained = load_file(str(out / "checkpoints" / "step-2" / "trainable.safetensors"))
    assert any("lora_A" in k for k in trained) and all("lora" in k or "camera" in k for k in trained)
    exported = load_file(str(out / "pipeline" / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert not any("lora" in k for k in exported)  # merged into the base weights
    ImaginationPipeline.from_pretrained(out / "pipeline")
    out = tmp_path / "attn"
    train(TrainConfig(data=str(shards / "train"), out=str(out), steps=1, batch_size=2, codec="random",
                      finetune="attention", ckpt_every=1))
    trained = load_file(str(out / "checkpoints" / "step-1" / "trainable.safetensors"))
    assert all(".attn1." in k or ".attn2." in k or "camera" in k for k in trained)
    assert not any("ffn" in k for k in trained)


def test_accumulation_needs_a_full_global_batch(shards, tmp_path, capsys):
    assert main([f"data={shards / 'train'}", f"out={tmp_path}", "batch_size=8", "gradient_accumulation_steps=2"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: gradient_accumulation_steps needs at least batch_size=8 clips; "
                                               f"{shards / 'train'} has 4: lower batch_size= or add clips")


def test_arguments_and_context_sampling():
    cfg = parse_args(["data=a", "out=b", "steps=3", "mode=none", "export_fp16=false"])
    assert cfg.steps == 3 and cfg.mode is None and cfg.export_fp16 is False
    with pytest.raises(ValueError, match="unknown key"):
        parse_args(["data=a", "out=b", "stepz=3"])
    with pytest.raises(ValueError, match="finetune"):
        TrainConfig(data="a", out="b", finetune="everything")
    assert main(["data=a"]) == 2  # missing out= → error line, exit code 2
    rng = np.random.default_rng(0)
    pick = sample_context_groups(40, 12, 4, rng)
    assert len(pick) == 12 and pick[-1] == 39 and np.all(np.diff(pick) > 0)
    runs = np.split(pick[:-1], np.flatnonzero(np.diff(pick[:-1]) != 1) + 1)
    assert sum(len(r) % 4 != 0 for r in runs) <= 1  # groups of 4 (Wan VAE), at most one partial group
    assert len(np.split(pick, np.flatnonzero(np.diff(pick) != 1) + 1)) > 1  # non-contiguous overall
