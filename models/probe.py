"""Denoising probe: `python -m models.probe data=CLIPS_DIR [checkpoint=DIR clips=24 sigmas=0.9,0.5]`.

Why: sampling metrics (IF, PSNR) mix many failure causes. This asks one narrow question of a
checkpoint: given a noisy target at a fixed noise level σ, how well does one forward pass recover the
clean latents, and in particular latent frame 0, whose first half *is* the current view (the last
context frame)? A plain copy of the current view's latent is the bar a model that uses its context
should clear. Numbers are mean squared errors in the codec's normalised latent space, over the
grounding clips of `data` (fixed noise per clip, the checkpoint's own context pick).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import numpy as np
import torch

from envs.config import cli_config
from models.clipstore import ClipDataset
from models.conditioning import rope_positions
from models.pipeline import ImaginationPipeline, load_default_pipeline
from models.types import VideoContext


@dataclass
class ProbeConfig:
    data: str = ""
    checkpoint: str = ""  # "" = the shipped default
    clips: int = 24
    sigmas: str = "0.9,0.5"

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("data=DIR is required (a folder of clip shards, e.g. runs/data/val)")
        if self.clips < 1:
            raise ValueError("clips must be >= 1")
        try:
            values = self.sigma_values
        except ValueError:
            raise ValueError(f"sigmas must be comma-separated numbers in (0, 1], got {self.sigmas!r}") from None
        if not all(0.0 < s <= 1.0 for s in values):
            raise ValueError(f"sigmas must be in (0, 1], got {self.sigmas!r}")

    @property
    def sigma_values(self) -> list[float]:
        return [float(s) for s in self.sigmas.split(",")]


@torch.no_grad()
def probe(pipe: ImaginationPipeline, dataset: ClipDataset, clips: int, sigmas: list[float]) -> dict[str, float]:
    """{"frame0_s0.9": ..., "all_s0.9": ..., "copy_frame0": ...} mean squared x0 errors."""
    s, tr = pipe.settings, pipe.transformer
    errors: dict[str, list[float]] = {}
    for i in range(min(clips, len(dataset))):
        clip = dataset[i]
        ctx, ctx_idx = pipe.prepare_context(VideoContext(clip.context_frames, clip.context_indices))
        x0 = pipe.encode_frames(clip.target_frames)
        cp, tp = rope_positions(ctx_idx, x0.shape[2], pipe.codec.temporal_factor, s.rope_gap)
        positions = torch.from_numpy(np.concatenate([cp, tp]))
        text = pipe.text_encoder.encode([clip.instruction]).to(x0)
        camera = pipe.camera_for(None, s.num_frames)
        camera = None if camera is None else camera[None].to(x0)
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(i)).to(x0)
        errors.setdefault("copy_frame0", []).append(((ctx[:, :, -1] - x0[:, :, 0]) ** 2).mean().item())
        for sigma in sigmas:
            xt = (1 - sigma) * x0 + sigma * noise
            v = tr(torch.cat([ctx, xt], dim=2), torch.tensor([sigma * 1000.0]), text, frame_positions=positions,
                   num_context_frames=ctx.shape[2], camera=camera).sample
            err = (xt - sigma * v - x0) ** 2
            errors.setdefault(f"frame0_s{sigma:g}", []).append(err[:, :, 0].mean().item())
            errors.setdefault(f"all_s{sigma:g}", []).append(err.mean().item())
    return {k: float(np.mean(v)) for k, v in errors.items()}


def main(argv: list[str] | None = None) -> int:
    cfg = cli_config(ProbeConfig, sys.argv[1:] if argv is None else argv)
    try:
        dataset = ClipDataset(cfg.data, "grounding")
        pipe = ImaginationPipeline.from_pretrained(cfg.checkpoint) if cfg.checkpoint else load_default_pipeline()
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = probe(pipe, dataset, cfg.clips, cfg.sigma_values)
    out.update(checkpoint=cfg.checkpoint or "default", clips=min(cfg.clips, len(dataset)))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
