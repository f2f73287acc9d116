"""Latent codecs: the tiny trained autoencoder and the real AutoencoderKLWan behind one interface."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from models.codecs import TinyAutoencoder, WanVAECodec, measure_psnr, synthetic_frames, train_tiny_codec
from models.pipeline import TINY_CODEC_CHECKPOINT

torch.set_num_threads(2)


def test_tiny_codec_layout_context_per_frame_targets_in_pairs():
    c = TinyAutoencoder().eval()
    x = torch.rand(2, 3, 6, 64, 64) * 2 - 1
    with torch.no_grad():
        ctx = c.encode_context(x)
        tgt = c.encode_target(x)
        rec = c.decode_target(tgt)
    assert ctx.shape == (2, 32, 6, 8, 8)  # one latent frame per context frame (own RoPE index)
    assert tgt.shape == (2, 32, 3, 8, 8)  # targets packed in pairs: ×2 temporal like Wan's ×4
    assert rec.shape == x.shape and rec.abs().max() <= 1
    # a context frame is a static pair: both halves hold the same code
    torch.testing.assert_close(ctx[:, :16], ctx[:, 16:])
    assert c.latent_frame_sources(6) == [0, 2, 4]
    with pytest.raises(ValueError, match="multiple of 2"):
        c.encode_target(x[:, :, :5])
    with pytest.raises(ValueError, match="spatial factor"):
        c.encode_context(torch.zeros(1, 3, 2, 60, 60))


def test_bf16_autocast_encode_matches_autocast_and_follows_the_weights():
    """Under CPU bfloat16 autocast the tiny encoder runs a bfloat16 copy of its weights (the warp prior's
    fast path): the same latents as autocast over the float32 module, close to float32, and a change of
    the weights reaches it."""
    c = TinyAutoencoder().eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1

    def autocast_reference() -> torch.Tensor:  # autocast casting the float32 weights on every call
        return (c.encoder(x).float() - c._mean) / c._std

    with torch.no_grad():
        fp32 = c.encode_images(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast, ref = c.encode_images(x), autocast_reference()
        torch.testing.assert_close(fast, ref, atol=1e-2, rtol=0)
        assert 0 < (fast - fp32).abs().max() < 0.02 * fp32.abs().max()  # bfloat16, not float32
        c.encoder[1].weight.mul_(-1)  # an in-place change, as an optimiser step or load_state_dict makes
        with torch.autocast("cpu", dtype=torch.bfloat16):
            changed, ref = c.encode_images(x), autocast_reference()
        torch.testing.assert_close(changed, ref, atol=1e-2, rtol=0)
        assert (changed - fast).abs().max() > 0.1


def test_training_makes_it_an_autoencoder_and_stats_are_saved(tmp_path):
    # 32² frames keep this fast (the codec is resolution-agnostic); real quality: test_shipped_codec_reconstructs
    train = synthetic_frames(16, size=32, seed=0)
    torch.manual_seed(0)
    before = measure_psnr(TinyAutoencoder().eval(), train)
    codec = train_tiny_codec(train, steps=15, batch_size=16, lr=1e-3, progress=False)
    after = measure_psnr(codec, train)
    assert after > before + 0.3, (before, after)
    codec.save_pretrained(tmp_path)
    loaded = TinyAutoencoder.from_pretrained(tmp_path).eval()
    assert loaded.config.latents_std == codec.config.latents_std
    x = torch.rand(1, 3, 2, 32, 32) * 2 - 1
    with torch.no_grad():
        z = loaded.encode_target(x)
        torch.testing.assert_close(z, codec.encode_target(x))
    # normalised latents: roughly unit variance on the training distribution
    with torch.no_grad():
        z = codec.encode_context(torch.from_numpy(train[:32]).permute(3, 0, 1, 2)[None].float() / 127.5 - 1)
    assert 0.3 < z.std().item() < 3.0
    with pytest.raises(ValueError, match="uint8"):
        train_tiny_codec(train.astype(np.float32), steps=1)


@pytest.mark.skipif(not (TINY_CODEC_CHECKPOINT / "config.json").exists(), reason="tiny codec not trained yet")
def test_shipped_codec_reconstructs():
    metrics = json.loads((TINY_CODEC_CHECKPOINT / "metrics.json").read_text())
    assert metrics["psnr_val"] >= 24.0, metrics  # measured on val-split simulator renders at training time
    codec = TinyAutoencoder.from_pretrained(TINY_CODEC_CHECKPOINT).eval()
    assert measure_psnr(codec, synthetic_frames(16, seed=3)) > 18.0  # even off-distribution it is a codec


def test_wan_vae_codec_sparse_context_and_causal_chunks():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1], num_res_blocks=1, temperal_downsample=[True, True],
                           latents_mean=[0.1] * 4, latents_std=[2.0] * 4, scale_factor_temporal=4, scale_factor_spatial=4)
    c = WanVAECodec(vae.eval())
    assert (c.latent_channels, c.temporal_factor, c.spatial_factor) == (4, 4, 4)
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        ctx = c.encode_context(x[:, :, :2])
        tgt = c.encode_target(x)
        rec = c.decode_target(tgt, 5)
        # frame by frame: context frame 1 encoded alone equals encoding [frame 1] as a clip
        single = c.encode_target(x[:, :, 1:2])
        raw = vae.encode(x[:, :, :1]).latent_dist.mode()
    assert ctx.shape == (1, 4, 2, 4, 4) and tgt.shape == (1, 4, 2, 4, 4) and rec.shape == (1, 3, 5, 16, 16)
    torch.testing.assert_close(ctx[:, :, 1:2], single)
    torch.testing.assert_close(ctx[:, :, :1], (raw - 0.1) / 2.0)  # normalised like WanPipeline
    assert c.latent_frame_sources(9) == [0, 4, 8]
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        c.encode_target(x[:, :, :4])


def test_context_groups_one_latent_per_temporal_group():
    """context_latents="group": runs of temporal_factor frames share one latent, made like a target's
    later latent; counted from the current view, a short first run padded with its first frame."""
    from diffusers import AutoencoderKLWan

    from models.conditioning import context_groups, pick_context_groups

    order, last = context_groups(5, 2)
    assert order.tolist() == [0, 0, 1, 2, 3, 4] and last.tolist() == [0, 2, 4]
    assert len(context_groups(337, 4)[1]) == 85  # the paper's arithmetic: 337 context frames -> 85 latents
    keep = pick_context_groups(100, 16, 4)
    assert len(keep) == 16 and keep[-1] == 99 and all(np.diff(keep.reshape(4, 4), axis=1).ravel() == 1)
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1], num_res_blocks=1, temperal_downsample=[True, True],
                           latents_mean=[0.1] * 4, latents_std=[2.0] * 4, scale_factor_temporal=4, scale_factor_spatial=4)
    c = WanVAECodec(vae.eval())
    x = torch.rand(1, 3, 8, 16, 16) * 2 - 1
    with torch.no_grad():
        z = c.encode_context_groups(x)
        second = c.encode_target(torch.cat([x[:, :, 4:5], x[:, :, 4:8]], dim=2))[:, :, 1]
    assert z.shape == (1, 4, 2, 4, 4)
    torch.testing.assert_close(z[:, :, 1], second)
    tiny = TinyAutoencoder().eval()
    y = torch.rand(1, 3, 4, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(tiny.encode_context_groups(y), tiny.encode_target(y))
    with pytest.raises(ValueError, match="multiple of 4"):
        c.encode_context_groups(x[:, :, :3])


def test_decoder_finetune_keeps_latent_space_and_red_weight_sharpens_the_box():
    from models.red_box import draw_red_box

    frames = synthetic_frames(24, size=32, seed=0)
    rng = np.random.default_rng(0)
    boxed = np.stack([draw_red_box(f, (*rng.uniform(2, 12, 2), *rng.uniform(20, 30, 2))) for f in frames])
    torch.manual_seed(0)
    base = train_tiny_codec(frames, steps=15, batch_size=16, lr=1e-3, progress=False)
    enc_before = {k: v.clone() for k, v in base.encoder.state_dict().items()}
    stats_before = list(base.config.latents_std)
    red = torch.from_numpy((boxed[..., 0] == 255) & (boxed[..., 1] == 0))[:, None].expand(-1, 3, -1, -1)

    def red_error(codec) -> float:
        x = torch.from_numpy(boxed).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            rec = codec.decoder(codec.encoder(x))
        return (rec - x).abs()[red].mean().item()

    runs = {}
    for w in (0.0, 30.0):
        runs[w] = train_tiny_codec(boxed, steps=30, batch_size=16, lr=1e-3, codec=copy.deepcopy(base), progress=False,
                                   red_weight=w, freeze_encoder=True)
    for w, c in runs.items():
        for k, v in c.encoder.state_dict().items():
            torch.testing.assert_close(v, enc_before[k], msg=f"encoder changed with red_weight={w}")
        assert list(c.config.latents_std) == stats_before  # the latent space a transformer knows
        torch.testing.assert_close(c._std, base._std)
    assert red_error(runs[30.0]) < 0.8 * red_error(runs[0.0]), (red_error(runs[30.0]), red_error(runs[0.0]))
    with pytest.raises(ValueError, match="needs a trained codec"):
        train_tiny_codec(frames, steps=1, freeze_encoder=True)
    with pytest.raises(ValueError, match="red_weight"):
        train_tiny_codec(frames, steps=1, red_weight=-1.0)
