"""`CacheRefiner`: a small conv U-Net that corrects navigation frames where the 3D cache is blind.

With `composite="warp"` the model's decoded frames keep their pixels only in the splat's holes, and those pixels
went through the tiny codec's 8 × 8 latent per frame: blurry next to the cache's own pixels, and on val they lose
to a model-free inpainting of the holes from their edges. The refiner is the usual fix of latent inpainting
decoders: a net at the model resolution that sees the known pixels at full resolution. Per target frame it reads
the model's decoded frame, the filtered cache (holes filled from the current view), the cache's validity mask and
the current view, and outputs a residual added to the `composite="warp"` frame. Its last layer starts at zero, so
an untrained refiner gives exactly `composite="warp"`.

`inputs="no_model"` is the ablation: the same net with the model's frame replaced by the filtered cache (its base
frame is then the filtered cache alone), so it is a learned inpainter that never sees the imagination.
Trained by `python -m models.refiner_train`; stored as `refiner/` in a pipeline folder.
"""
from __future__ import annotations

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from envs.config import check_choice

REFINER_INPUTS = ("model", "no_model")
IN_CHANNELS = 10  # the model's frame (3), the filtered cache (3), its validity (1), the current view (3)


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GELU(), nn.Conv2d(cout, cout, 3, 1, 1), nn.GELU())


def to_unit(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) → float (N, 3, H, W) in [-1, 1]."""
    x = torch.tensor(np.asarray(frames)).reshape(-1, *frames.shape[-3:])  # a copy: the inputs may be read-only views
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0


class CacheRefiner(ModelMixin, ConfigMixin):
    """Model frame + filtered cache + validity + current view → a residual on the composite (module docstring)."""

    @register_to_config
    def __init__(self, channels: int = 16, levels: int = 3, inputs: str = "model") -> None:
        super().__init__()
        check_choice("inputs", inputs, REFINER_INPUTS)
        if levels < 1 or channels < 1:
            raise ValueError(f"channels and levels must be >= 1, got {channels}, {levels}")
        widths = [channels * 2**i for i in range(levels)]
        self.down = nn.ModuleList([_block(IN_CHANNELS, widths[0])] +
                                  [_block(a, b, stride=2) for a, b in zip(widths, widths[1:])])
        self.up = nn.ModuleList([_block(b + a, a) for a, b in zip(widths, widths[1:])])
        self.out = nn.Conv2d(widths[0], 3, 3, 1, 1)
        nn.init.zeros_(self.out.weight)  # untrained: no correction, the composite as it is
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 10, H, W) (`inputs`) → residual (N, 3, H, W) in [-1, 1] units; H, W divisible by 2^(levels-1)."""
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()
        for block in reversed(self.up):
            x = block(torch.cat([nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"), skips.pop()], 1))
        return self.out(x)

    def inputs(self, decoded: np.ndarray, cache: np.ndarray, valid: np.ndarray, current: np.ndarray
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The net's input (N, 10, H, W) and the base frames it corrects (N, 3, H, W), both in [-1, 1], from
        uint8 frames (..., H, W, 3): the model's decoded frames, the filtered cache with holes from the current
        view, the validity (..., H, W) and the current view (H, W, 3). Base = the cache where valid, else the
        model's frame (= `composite="warp"`); with `inputs="no_model"` the model's frame is the cache."""
        cache = np.broadcast_to(cache, decoded.shape)  # one cache for every sample of a rollout
        valid = np.broadcast_to(valid, decoded.shape[:-1])
        if self.config.inputs == "no_model":
            decoded = cache
        d, c = to_unit(decoded), to_unit(cache)
        v = torch.tensor(np.asarray(valid)).reshape(-1, 1, *valid.shape[-2:]).float()
        cur = to_unit(current).expand(len(d), -1, -1, -1)
        base = torch.where(v > 0, c, d)
        return torch.cat([d, c, v * 2 - 1, cur], 1), base

    @torch.no_grad()
    def refine(self, decoded: np.ndarray, cache: np.ndarray, valid: np.ndarray, current: np.ndarray) -> np.ndarray:
        """uint8 frames shaped like `decoded`: the base frames (see `inputs`) plus the net's residual."""
        x, base = self.inputs(decoded, cache, valid, current)
        dev = next(self.parameters()).device
        y = base + self(x.to(dev, self.dtype)).float().cpu()
        out = ((y + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return out.numpy().reshape(decoded.shape)
