"""Latent codecs behind one interface: the real Wan2.2 VAE, and a tiny trained autoencoder.

Both map pixel videos (B, 3, F, H, W) in [-1, 1] to normalised latents (B, C, F', h, w) for the
transformer, with two rules from the paper:
- sparse context frames are encoded ONE FRAME AT A TIME (one latent frame per context frame, so each
  keeps its own RoPE index);
- target clips are encoded as temporal chunks (Wan: causal 1 + 4k frames; tiny: pairs), which makes a
  target latent frame cover `temporal_factor` source frames.

A context frame's latent is therefore "a static chunk" of that frame: for the tiny codec the frame's
code is repeated in both halves of the pair; Wan's causal VAE encodes a lone frame as its first chunk.
`encode_context_groups` is the paper's alternative (ImaginationConfig.context_latents="group"): runs of
`temporal_factor` consecutive context frames share one latent, made like a target latent (4 frames per
latent for Wan2.2, so 337 context frames are 85 latents, not 337).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from models.red_box import redness


class LatentCodec:
    """Interface (a plain mixin: subclasses are nn.Modules of their own, e.g. diffusers ModelMixin):
    pixels in [-1, 1] ↔ normalised latents. Subclasses set the attributes below."""

    latent_channels: int  # channels the transformer sees
    spatial_factor: int  # pixels per latent cell along H and W
    temporal_factor: int  # source frames per target latent frame

    def check_target_frames(self, num_frames: int) -> None:
        raise NotImplementedError

    def num_latent_frames(self, num_frames: int) -> int:
        raise NotImplementedError

    def latent_frame_sources(self, num_frames: int) -> list[int]:
        """For each target latent frame, the source frame whose camera represents it (Plücker maps)."""
        raise NotImplementedError

    def encode_context(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_context_groups(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, G·temporal_factor, H, W) frames, group after group → (B, C, G, h, w): one latent per group."""
        raise NotImplementedError

    def encode_target(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode_target(self, latents: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def _check_pixels(self, frames: torch.Tensor, name: str) -> None:
        if frames.ndim != 5 or frames.shape[1] != 3:
            raise ValueError(f"{name} must be (B, 3, F, H, W) float in [-1, 1], got {tuple(frames.shape)}")
        if frames.shape[-1] % self.spatial_factor or frames.shape[-2] % self.spatial_factor:
            raise ValueError(f"{name} height/width {tuple(frames.shape[-2:])} must be multiples of the codec's "
                             f"spatial factor {self.spatial_factor}; resize frames to the model resolution first")


# ---------------------------------------------------------------------------------------------
# Tiny trained autoencoder
# ---------------------------------------------------------------------------------------------
class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TinyAutoencoder(ModelMixin, ConfigMixin, LatentCodec):
    """Per-frame conv autoencoder, H×W×3 → H/8×W/8×C (×8 spatial), trained with `train_tiny_codec`.

    Hand-written because diffusers' autoencoders are either huge (AutoencoderKLWan: a random tiny one
    is not an autoencoder) or image-only with KL terms we do not need; this one is a plain
    deterministic AE whose latents are normalised by measured per-channel statistics so the flow
    model sees unit-variance inputs. Targets are packed in frame pairs (temporal_factor 2): the
    transformer sees C·2 channels per latent frame, like Wan's ×4 temporal compression."""

    @register_to_config
    def __init__(
        self,
        frame_channels: int = 16,
        block_channels: tuple[int, int] = (64, 128),
        temporal_factor: int = 2,
        latents_mean: tuple[float, ...] | None = None,
        latents_std: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        if temporal_factor < 1:
            raise ValueError("temporal_factor must be >= 1")
        self.spatial_factor = 8
        self.temporal_factor = temporal_factor
        self.latent_channels = frame_channels * temporal_factor
        # Pixel (un)shuffle does the resampling, so the convs run at 16² and 8² only: the whole codec
        # must encode + decode 32 frames in a few tens of ms on 2 CPU cores (bench budget).
        c_hi, c_lo = block_channels[0], block_channels[1]
        self.encoder = nn.Sequential(
            nn.PixelUnshuffle(4), nn.Conv2d(48, c_hi, 3, padding=1), _ResBlock(c_hi),
            nn.PixelUnshuffle(2), nn.Conv2d(4 * c_hi, c_lo, 1), _ResBlock(c_lo), nn.SiLU(),
            nn.Conv2d(c_lo, frame_channels, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(frame_channels, c_lo, 3, padding=1), _ResBlock(c_lo), nn.SiLU(),
            nn.Conv2d(c_lo, 4 * c_hi, 1), nn.PixelShuffle(2), _ResBlock(c_hi), nn.SiLU(),
            nn.Conv2d(c_hi, 48, 3, padding=1), nn.PixelShuffle(4),
        )
        mean = latents_mean if latents_mean is not None else [0.0] * frame_channels
        std = latents_std if latents_std is not None else [1.0] * frame_channels
        self.register_buffer("_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    # per-image primitives (B, 3, H, W) ↔ (B, c, h, w), normalised
    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16:
            z = self._bf16_encoder()(x.to(torch.bfloat16, memory_format=torch.channels_last))
        else:
            z = self.encoder(x.to(next(self.encoder.parameters()).dtype))  # not self.dtype: it walks every module
        return (z.float() - self._mean) / self._std

    def _bf16_encoder(self) -> nn.Module:
        """The encoder with its weights cast to bfloat16 once (channels-last): bitwise what CPU autocast
        computes, ~15% faster as it does not cast the weights on every call. Rebuilt when they change."""
        key = tuple((p.data_ptr(), p._version) for p in self.encoder.parameters())
        cached = self.__dict__.get("_bf16_cache")  # a plain attribute: no submodule, not in the state dict
        if cached is None or cached[0] != key:
            enc = copy.deepcopy(self.encoder).to(torch.bfloat16, memory_format=torch.channels_last).requires_grad_(False)
            cached = self.__dict__["_bf16_cache"] = (key, enc)
        return cached[1]

    def decode_images(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder((z.float() * self._std + self._mean).to(self.dtype)).float().clamp(-1, 1)

    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store measured latent statistics (in config, so they travel with save_pretrained)."""
        self.register_to_config(latents_mean=[float(v) for v in mean], latents_std=[float(v) for v in std])
        self._mean.copy_(mean.view(1, -1, 1, 1))
        self._std.copy_(std.view(1, -1, 1, 1))

    def check_target_frames(self, num_frames: int) -> None:
        if num_frames < 1 or num_frames % self.temporal_factor:
            raise ValueError(f"the tiny codec packs target frames in groups of {self.temporal_factor}: "
                             f"got {num_frames} target frames; use a multiple of {self.temporal_factor}")

    def num_latent_frames(self, num_frames: int) -> int:
        self.check_target_frames(num_frames)
        return num_frames // self.temporal_factor

    def latent_frame_sources(self, num_frames: int) -> list[int]:
        return list(range(0, num_frames, self.temporal_factor))[: self.num_latent_frames(num_frames)]

    def _frames_to_codes(self, frames: torch.Tensor) -> torch.Tensor:
        b, _, f, h, w = frames.shape
        z = self.encode_images(frames.permute(0, 2, 1, 3, 4).reshape(b * f, 3, h, w))
        return z.reshape(b, f, *z.shape[1:])  # B, F, c, h, w

    def encode_context(self, frames: torch.Tensor) -> torch.Tensor:
        self._check_pixels(frames, "context frames")
        z = self._frames_to_codes(frames)  # one latent frame per context frame: a static chunk
        z = z.repeat(1, 1, self.temporal_factor, 1, 1)
        return z.permute(0, 2, 1, 3, 4)

    def encode_context_groups(self, frames: torch.Tensor) -> torch.Tensor:
        self._check_pixels(frames, "context frames")
        if frames.shape[2] % self.temporal_factor:
            raise ValueError(f"context groups need a multiple of {self.temporal_factor} frames, got {frames.shape[2]}")
        return self.encode_target(frames)  # a group is packed exactly like a target latent frame

    def encode_target(self, frames: torch.Tensor) -> torch.Tensor:
        self._check_pixels(frames, "target frames")
        self.check_target_frames(frames.shape[2])
        z = self._frames_to_codes(frames)
        b, f, c, h, w = z.shape
        z = z.reshape(b, f // self.temporal_factor, self.temporal_factor * c, h, w)
        return z.permute(0, 2, 1, 3, 4)

    def decode_target(self, latents: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        b, c, fl, h, w = latents.shape
        tf, fc = self.temporal_factor, self.config.frame_channels
        z = latents.permute(0, 2, 1, 3, 4).reshape(b * fl * tf, fc, h, w)
        x = self.decode_images(z)
        x = x.reshape(b, fl * tf, 3, *x.shape[-2:]).permute(0, 2, 1, 3, 4)
        return x if num_frames is None else x[:, :, :num_frames]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = F.mse_loss(a.float(), b.float()).item()
    return float("inf") if mse == 0 else 10.0 * math.log10(4.0 / mse)


def synthetic_frames(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8 procedural room-like images (floor, wall, boxes, occasional red box
    outline): real images for codec tests and warm starts before simulator frames exist."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        wall, floor = rng.integers(60, 230, 3), rng.integers(30, 200, 3)
        horizon = rng.integers(size // 4, 3 * size // 4)
        img = np.where((yy < horizon)[..., None], wall, floor).astype(np.float32)
        img *= (0.8 + 0.4 * (yy / size))[..., None]  # soft shading
        for _ in range(rng.integers(1, 6)):
            x0, y0 = rng.integers(0, size - 4, 2)
            x1, y1 = x0 + rng.integers(4, size // 2), y0 + rng.integers(4, size // 2)
            col = rng.integers(0, 256, 3)
            img[y0:y1, x0:x1] = col * (0.7 + 0.3 * rng.random())
        if rng.random() < 0.3:
            from models.red_box import draw_red_box

            x0, y0 = rng.integers(0, size // 2, 2)
            img = draw_red_box(np.clip(img, 0, 255).astype(np.uint8), (x0, y0, x0 + rng.integers(8, size // 2),
                                                                      y0 + rng.integers(8, size // 2)))
        out[i] = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    return out


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) → float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """float (..., 3, H, W) in [-1, 1] → uint8 (..., H, W, 3)."""
    x = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


def train_tiny_codec(frames: np.ndarray, steps: int = 1000, batch_size: int = 32, lr: float = 2e-3,
                     codec: TinyAutoencoder | None = None, seed: int = 0, log_every: int = 100,
                     progress: bool = True, red_weight: float = 0.0, freeze_encoder: bool = False) -> TinyAutoencoder:
    """Train the tiny autoencoder on uint8 frames (N, 64, 64, 3) (simulator renders in production),
    with random flips as augmentation, then measure and store the latent statistics.

    `red_weight` > 0 multiplies the per-pixel loss by (1 + red_weight) on saturated-red pixels: the
    2 px auxiliary box is a tiny share of the pixels, and an unweighted L1+L2 codec blurs it below the
    read-back's redness threshold. `freeze_encoder` trains the decoder only, so the latent space (and
    a transformer trained on it) stays valid; the latent statistics are then left unchanged."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
    if red_weight < 0:
        raise ValueError(f"red_weight must be >= 0, got {red_weight}")
    if freeze_encoder and codec is None:
        raise ValueError("freeze_encoder=True needs a trained codec to start from (codec=...)")
    torch.manual_seed(seed)
    codec = codec or TinyAutoencoder()
    codec.float().train()
    codec.encoder.requires_grad_(not freeze_encoder)
    data = frames_to_tensor(frames)
    red_mask = torch.from_numpy(redness(frames) > 0.6)[:, None].float()
    params = codec.decoder.parameters() if freeze_encoder else codec.parameters()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(seed)
    import sys

    for step in range(steps):
        idx = torch.randint(0, len(data), (batch_size,), generator=gen)
        x, w = data[idx], 1.0 + red_weight * red_mask[idx]
        if torch.rand((), generator=gen) < 0.5:
            x, w = x.flip(-1), w.flip(-1)
        rec = codec.decoder(codec.encoder(x))
        err = rec - x
        loss = (err.abs() * w).mean() + (err.square() * w).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress and (step % log_every == 0 or step == steps - 1):
            print(f"codec step {step}/{steps} loss {loss.item():.4f} psnr {psnr(rec.clamp(-1, 1), x):.2f}",
                  file=sys.stderr, flush=True)
    codec.eval()
    codec.encoder.requires_grad_(True)
    if not freeze_encoder:
        with torch.no_grad():
            z = torch.cat([codec.encoder(data[i : i + 256]) for i in range(0, min(len(data), 2048), 256)])
            codec.set_latent_stats(z.mean(dim=(0, 2, 3)), z.std(dim=(0, 2, 3)).clamp_min(1e-3))
    return codec


@torch.no_grad()
def measure_psnr(codec: LatentCodec, frames: np.ndarray, batch: int = 64) -> float:
    """Mean reconstruction PSNR (dB) of uint8 frames through encode_target/decode_target, pairs packed."""
    x = frames_to_tensor(frames)
    tf = codec.temporal_factor
    n = (len(x) // tf) * tf
    vals = []
    for i in range(0, n, batch):
        chunk = x[i : min(i + batch, n)]
        vid = chunk.permute(1, 0, 2, 3)[None]  # 1, 3, F, H, W
        rec = codec.decode_target(codec.encode_target(vid), vid.shape[2])
        q = frames_to_tensor(tensor_to_frames(rec[0].permute(1, 0, 2, 3)))  # measure on uint8 output
        vals.append(psnr(q, chunk))
    return float(np.mean(vals))


# ---------------------------------------------------------------------------------------------
# Wan2.2 VAE
# ---------------------------------------------------------------------------------------------
class WanVAECodec(nn.Module, LatentCodec):
    """diffusers `AutoencoderKLWan` behind the codec interface, normalised with the VAE's
    latents_mean/std as WanPipeline does. Targets: causal chunks of 1 + 4k frames."""

    def __init__(self, vae) -> None:
        super().__init__()
        self.vae = vae
        cfg = vae.config
        self.latent_channels = cfg.z_dim
        # WanPipeline reads the factors from the config; derive them for configs that predate the fields
        self.temporal_factor = getattr(cfg, "scale_factor_temporal", None) or 2 ** sum(cfg.temperal_downsample)
        self.spatial_factor = getattr(cfg, "scale_factor_spatial", None) or (
            2 ** len(cfg.temperal_downsample) * (getattr(cfg, "patch_size", None) or 1))
        mean = torch.tensor(cfg.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        std = torch.tensor(cfg.latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self.register_buffer("_mean", mean, persistent=False)
        self.register_buffer("_std", std, persistent=False)

    @classmethod
    def from_pretrained(cls, path: str, subfolder: str | None = "vae", **kwargs) -> WanVAECodec:
        from diffusers import AutoencoderKLWan

        if subfolder:
            kwargs["subfolder"] = subfolder
        return cls(AutoencoderKLWan.from_pretrained(path, **kwargs))

    def save_pretrained(self, path: str, **kwargs) -> None:
        self.vae.save_pretrained(path, **kwargs)

    @property
    def device(self) -> torch.device:  # DiffusionPipeline.device asks every component
        return self.vae.device

    @property
    def dtype(self) -> torch.dtype:
        return self.vae.dtype

    def check_target_frames(self, num_frames: int) -> None:
        if num_frames < 1 or (num_frames - 1) % self.temporal_factor:
            raise ValueError(f"the Wan VAE encodes targets in causal chunks of 1 + {self.temporal_factor}k frames, "
                             f"got {num_frames}; use e.g. {1 + self.temporal_factor * max(1, num_frames // self.temporal_factor)}")

    def num_latent_frames(self, num_frames: int) -> int:
        self.check_target_frames(num_frames)
        return 1 + (num_frames - 1) // self.temporal_factor

    def latent_frame_sources(self, num_frames: int) -> list[int]:
        return [0] + [self.temporal_factor * j for j in range(1, self.num_latent_frames(num_frames))]

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self.vae.encode(x.to(self.vae.dtype)).latent_dist.mode().float()
        return (z - self._mean) / self._std

    def encode_context(self, frames: torch.Tensor) -> torch.Tensor:
        self._check_pixels(frames, "context frames")
        # sparse frames are unrelated in time: encode each alone (1 frame → 1 latent frame)
        return torch.cat([self._encode(frames[:, :, i : i + 1]) for i in range(frames.shape[2])], dim=2)

    def encode_context_groups(self, frames: torch.Tensor) -> torch.Tensor:
        self._check_pixels(frames, "context frames")
        tf = self.temporal_factor
        b, c, n, h, w = frames.shape
        if n % tf:
            raise ValueError(f"context groups need a multiple of {tf} frames, got {n}")
        # each group as the second causal chunk of [g0, g0..g3]: the latent that covers g0..g3, like a
        # target's later latents (the first chunk of a causal VAE is one frame alone)
        groups = frames.reshape(b, c, n // tf, tf, h, w).permute(0, 2, 1, 3, 4, 5).reshape(-1, c, tf, h, w)
        z = self._encode(torch.cat([groups[:, :, :1], groups], dim=2))[:, :, 1]  # (B·G, C, h', w')
        return z.reshape(b, n // tf, *z.shape[1:]).permute(0, 2, 1, 3, 4)

    def encode_target(self, frames: torch.Tensor) -> torch.Tensor:
        self._check_pixels(frames, "target frames")
        self.check_target_frames(frames.shape[2])
        return self._encode(frames)

    def decode_target(self, latents: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        z = latents.float() * self._std + self._mean
        x = self.vae.decode(z.to(self.vae.dtype)).sample.float().clamp(-1, 1)
        return x if num_frames is None else x[:, :, :num_frames]

