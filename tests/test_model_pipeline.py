"""ImaginationPipeline: both modes, seeding, best-of-N, cache agreement, save/load, Wan folders."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from envs.instructions import grounding_instruction
from models.pipeline import ImaginationPipeline, load_default_pipeline, tiny_pipeline
from models.types import ImaginedVideo, VideoContext

torch.set_num_threads(2)
INSTR = grounding_instruction("a small apartment", "a sofa")


@pytest.fixture(scope="module")
def pipe() -> ImaginationPipeline:
    p = tiny_pipeline(seed=0, num_frames=8, num_box_frames=2, num_inference_steps=3)
    torch.nn.init.normal_(p.transformer.camera_embedding.weight, std=0.05)  # make cameras matter
    return p


@pytest.fixture(scope="module")
def ctx() -> VideoContext:
    rng = np.random.default_rng(0)
    return VideoContext(frames=rng.integers(0, 256, (6, 128, 128, 3), dtype=np.uint8), indices=np.array([0, 4, 9, 20, 31, 40]))


def test_grounding_shapes_seeding_and_best_of_n(pipe, ctx):
    v = pipe(ctx, instruction=INSTR, seed=3)
    assert isinstance(v, ImaginedVideo) and v.mode == "grounding"
    assert v.frames.shape == (1, 8, 64, 64, 3) and v.frames.dtype == np.uint8  # resized 128² → model 64²
    assert v.meta["num_context_frames"] == 6 and v.meta["cfg"] and v.seconds > 0
    np.testing.assert_array_equal(v.frames, pipe.ground(ctx, INSTR, seed=3).frames)  # seeded
    assert not np.array_equal(v.frames, pipe(ctx, instruction=INSTR, seed=4).frames)
    two = pipe(ctx, instruction=INSTR, num_samples=2, seed=3)
    assert two.frames.shape[0] == 2 and not np.array_equal(two.frames[0], two.frames[1])
    # RoPE: context keeps sparse source indices (÷ codec temporal factor), targets start at last + 50
    assert v.meta["rope_context"] == [0.0, 2.0, 4.5, 10.0, 15.5, 20.0]
    assert v.meta["rope_target"] == [70.0, 71.0, 72.0, 73.0]


def test_cache_and_no_cache_agree(pipe, ctx):
    a = pipe(ctx, instruction=INSTR, seed=1, use_context_cache=True)
    b = pipe(ctx, instruction=INSTR, seed=1, use_context_cache=False)
    assert a.meta["context_cache"] and not b.meta["context_cache"]
    assert np.abs(a.frames.astype(int) - b.frames.astype(int)).max() <= 2


def test_context_cfg_keep_is_the_same_sampler_with_the_real_context(pipe, ctx):
    """`context_cfg="keep"` (the evaluator's no-context-CFG baseline) only changes the unconditional
    branch's context: same seeded noise, cache or no cache, and it differs from joint CFG."""
    keep = pipe(ctx, instruction=INSTR, seed=1, context_cfg="keep")
    keep_nocache = pipe(ctx, instruction=INSTR, seed=1, context_cfg="keep", use_context_cache=False)
    noise = pipe(ctx, instruction=INSTR, seed=1)
    assert np.abs(keep.frames.astype(int) - keep_nocache.frames.astype(int)).max() <= 2
    assert np.abs(keep.frames.astype(int) - noise.frames.astype(int)).max() > 2
    with pytest.raises(ValueError, match="context_cfg"):
        pipe(ctx, instruction=INSTR, context_cfg="drop")


def test_navigation_uses_waypoints(pipe, ctx):
    w = np.zeros((8, 6))
    w[:, 2] = -np.linspace(0, 1.0, 8)  # walk forward 1 m
    v = pipe.navigate(ctx, w, seed=0)
    assert v.mode == "navigation" and v.frames.shape == (1, 8, 64, 64, 3)
    w2 = w.copy()
    w2[:, 3] = np.linspace(0, 1.0, 8)  # turn left while walking
    assert not np.array_equal(v.frames, pipe.navigate(ctx, w2, seed=0).frames)


def test_context_subsampling_keeps_current_view(pipe):
    rng = np.random.default_rng(1)
    many = VideoContext(frames=rng.integers(0, 256, (30, 64, 64, 3), dtype=np.uint8), indices=np.arange(30) * 3)
    v = pipe(many, instruction=INSTR, max_context_frames=5, num_inference_steps=1)
    assert v.meta["num_context_frames"] == 5 and v.meta["context_indices"][-1] == 87
    assert v.meta["context_indices"][0] == 0


def test_clear_errors(pipe, ctx):
    with pytest.raises(ValueError, match="exactly one"):
        pipe(ctx)
    with pytest.raises(ValueError, match="exactly one"):
        pipe(ctx, instruction=INSTR, waypoints=np.zeros((8, 6)))
    with pytest.raises(ValueError, match=r"waypoints must be \(8, 6\)"):
        pipe(ctx, waypoints=np.zeros((5, 6)))
    with pytest.raises(ValueError, match="non-empty instruction"):
        pipe(ctx, instruction="  ")
    with pytest.raises(TypeError, match="VideoContext"):
        pipe(np.zeros((2, 64, 64, 3), np.uint8), instruction=INSTR)


def test_save_and_load_round_trip_fp16(pipe, ctx, tmp_path):
    pipe.save_pretrained(tmp_path / "p", torch_dtype=torch.float16)
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    assert index["_class_name"] == "ImaginationPipeline" and index["v4s"]["num_frames"] == 8
    assert not (tmp_path / "p" / "text_encoder").exists()  # MiniLM comes from its PyPI package
    assert not list((tmp_path / "p").rglob("*.bin")) and not list((tmp_path / "p").rglob("*.pkl"))
    size = sum(f.stat().st_size for f in (tmp_path / "p").rglob("*") if f.is_file())
    assert size < 40e6, size
    for part in ("transformer", "codec"):  # both stored in half precision
        stored = load_file(str(tmp_path / "p" / part / "diffusion_pytorch_model.safetensors"))
        assert {v.dtype for v in stored.values()} == {torch.float16}, part
    loaded = ImaginationPipeline.from_pretrained(tmp_path / "p")
    assert loaded.codec.dtype == torch.float32
    assert loaded.transformer.dtype == torch.float32 and loaded.num_frames == 8 and loaded.num_box_frames == 2
    a = pipe(ctx, instruction=INSTR, seed=2).frames.astype(int)
    b = loaded(ctx, instruction=INSTR, seed=2).frames.astype(int)
    assert np.abs(a - b).mean() < 2.0  # fp16 storage rounding only
    with pytest.raises(FileNotFoundError, match="models.train"):
        load_default_pipeline(path=tmp_path / "nothing")
    with pytest.raises(ValueError, match="unknown ImaginationConfig keys"):
        ImaginationPipeline.from_pretrained(tmp_path / "p", fps=3)


def test_loads_a_diffusers_wan_folder(tmp_path):
    """A tiny folder written by diffusers' own WanPipeline.save_pretrained (the Wan2.2 layout)."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from models.pipeline import shared_minilm

    tok = shared_minilm().tokenizer  # stands in for the UMT5 tokenizer (any tokenizer class works)
    torch.manual_seed(0)
    te = UMT5EncoderModel(UMT5Config(vocab_size=tok.vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4))
    vae = AutoencoderKLWan(base_dim=8, z_dim=8, dim_mult=[1, 1, 1], num_res_blocks=1, temperal_downsample=[True, True],
                           latents_mean=[0.0] * 8, latents_std=[1.0] * 8, scale_factor_temporal=4, scale_factor_spatial=4)
    tr = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=32, in_channels=8,
                               out_channels=8, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=1, rope_max_seq_len=64)
    sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    WanPipeline(tokenizer=tok, text_encoder=te, vae=vae, scheduler=sched, transformer=tr).save_pretrained(tmp_path / "wan")
    p = ImaginationPipeline.from_pretrained(tmp_path / "wan", height=16, width=16, num_frames=5, num_box_frames=1,
                                            num_inference_steps=2, max_context_frames=8, text_max_length=16)
    assert type(p.transformer).__name__ == "V4STransformer" and p.settings.text_encoder == "umt5"
    assert torch.count_nonzero(p.transformer.camera_embedding.weight) == 0
    rng = np.random.default_rng(0)
    c = VideoContext(frames=rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), indices=np.arange(8))
    v = p(c, instruction="find the sofa")
    assert v.frames.shape == (1, 5, 16, 16, 3)
    # a Wan folder encodes context in the VAE's groups of 4: 8 frames -> 2 latents at source indices 3, 7 ÷ 4
    assert p.settings.context_latents == "group" and v.meta["num_context_frames"] == 2
    assert v.meta["rope_context"] == [0.0, 1.0]
    p.save_pretrained(tmp_path / "v4s")  # and back out in our layout (UMT5 stored alongside)
    assert (tmp_path / "v4s" / "text_encoder").is_dir() and (tmp_path / "v4s" / "vae").is_dir()
    p2 = ImaginationPipeline.from_pretrained(tmp_path / "v4s")
    np.testing.assert_array_equal(p2(c, instruction="find the sofa").frames, v.frames)
