"""Trainer: `python -m models.train data=DIR out=DIR steps=N [key=value ...]` (or `--key value`).

Flow matching on the target tokens only (the transformer returns only target predictions), joint
CFG dropout (text/camera and context → Gaussian noise), non-contiguous context sampling (runs of
`context_group` frames: 4 for the real Wan VAE, 1 for the tiny codec), grounding clips carry their
auxiliary red-box frames, navigation clips their Plücker cameras. Full, attention-only (paper) or
LoRA (peft) fine-tuning. `accelerate` wraps model/optimizer/data so the same script runs on several
GPUs/nodes (`accelerate launch -m models.train ...`).

Outputs in `out/`: `loss.jsonl` (one JSON per logged step; `val_loss` rows too), `checkpoints/step-N/`
(safetensors weights + optimizer + RNG, JSON state; resumed automatically from the newest), and a
final `pipeline/` export that `ImaginationPipeline.from_pretrained` / `load_default_pipeline` load.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from envs.config import check_one_of, json_command, parse_overrides
from models.clipstore import ClipDataset
from models.codecs import TinyAutoencoder
from models.conditioning import (
    ZERO_POSE_MODES,
    context_groups,
    pick_reference,
    relative_to,
    rope_positions,
    sample_context_groups,
)
from models.pipeline import (
    GEOMETRY_PRIORS,
    TINY_CODEC_CHECKPOINT,
    ImaginationConfig,
    ImaginationPipeline,
    build_pipeline,
    shared_minilm,
    tiny_transformer_config,
)
from models.transformer import CONTEXT_ATTENTION_MODES
from models.types import Clip, VideoContext

FINETUNE_MODES = ("full", "attention", "lora")


class DataMismatchError(ValueError):
    """The clips or the launch (number of processes) lack what the options ask for (one line, exit code 2)."""


@dataclass
class TrainConfig:
    """Every trainer option; validated on construction (bad value → one clear error). Grouped by what
    they set: the data, the model to start from, its conditioning, the optimisation, the bookkeeping."""

    # the clips and where the run goes
    data: str = ""
    val_data: str | None = None
    out: str = ""
    export_dir: str | None = None  # default out/pipeline
    mode: str | None = None  # train on "grounding" or "navigation" clips only
    # the model to start from
    init: str = "tiny"  # "tiny" | ImaginationPipeline folder | diffusers Wan folder
    codec: str = "shipped"  # tiny init only: "shipped" (models/checkpoints/tiny-codec) | "random" | folder
    finetune: str = "full"  # full | attention | lora
    lora_rank: int = 16
    # tiny init only: transformer size overrides (0 = the tiny default in models.pipeline.tiny_transformer_config)
    num_layers: int = 0
    ffn_dim: int = 0
    num_attention_heads: int = 0  # width = heads × 64
    resolution: int = 0  # tiny init only: square frame size the model works at (0 = 64; a multiple of 16)
    # tiny init only: "one_way" (context tokens attend only to context: cacheable at sampling) | "full" (paper)
    context_attention: str = "one_way"
    # conditioning
    max_context_frames: int = 16
    context_group: int = 0  # 0 = auto: the codec's temporal factor for Wan (4), 1 for the tiny codec
    # "frame" (one context latent per frame) | "group" (one per run of the codec's temporal_factor frames, as
    # the VAE makes them; see ImaginationConfig.context_latents) | "" = the init's (tiny: frame)
    context_latents: str = ""
    # context_poses / geometry_prior: ImaginationConfig's options of the same names (set on any init; the
    # geometry layer is added zero-initialised when the init lacks it); they need clips with context
    # poses / depth (models.data writes both)
    context_poses: bool = False
    geometry_prior: str = "none"
    # navigation clips weight the flow-matching loss per latent pixel by 1 + hole_weight × (1 − the warp prior's
    # validity there): the pixels the 3D cache does not cover are the only ones composite=warp keeps from the
    # model, so this spends the model's capacity there (0 = the plain loss; needs geometry_prior=warp)
    hole_weight: float = 0.0
    # navigation cameras relative to one target frame drawn per sample ("random", paper §6.4: +0.36 dB nav PSNR on
    # rotation-heavy val cases, +0.12 dB on plain ones, measured in the v4s-tiny model card) or to the first target
    # frame ("first", how v4s-tiny was trained); the exported pipeline samples with the same rule
    zero_pose: str = "random"
    p_drop_joint: float = 0.1  # text/camera AND context dropped (the unconditional branch of joint CFG)
    p_drop_text: float = 0.05
    p_drop_context: float = 0.05
    # optimisation: optimizer steps sum the gradients of gradient_accumulation_steps micro-batches of
    # batch_size / gradient_accumulation_steps clips (batch_size stays the global batch per optimizer step)
    gradient_checkpointing: bool = False
    steps: int = 1000
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.0
    mixed_precision: str = "no"
    grad_clip: float = 1.0
    warmup_steps: int = 50
    # linear LR cooldown: constant after warmup until lr_decay_from, then linearly to 0 at lr_decay_to (0 = off)
    lr_decay_from: int = 0
    lr_decay_to: int = 0
    # bookkeeping
    seed: int = 0
    threads: int = 0  # torch CPU threads (0 = leave as is)
    resume: bool = True
    val_every: int = 200
    val_batches: int = 4
    ckpt_every: int = 200
    keep_checkpoints: int = 2
    log_every: int = 10
    export_fp16: bool = True

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("data=DIR is required (a folder of clip shards written by models.clipstore.write_shard)")
        if not self.out:
            raise ValueError("out=DIR is required (logs, checkpoints and the exported pipeline go there)")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        if self.gradient_accumulation_steps < 1 or self.batch_size % self.gradient_accumulation_steps:
            raise ValueError(f"gradient_accumulation_steps={self.gradient_accumulation_steps} must be >= 1 and divide "
                             f"batch_size={self.batch_size} (the global batch of one optimizer step)")
        if self.lr_decay_to and not 0 <= self.lr_decay_from < self.lr_decay_to:
            raise ValueError(f"lr cooldown needs 0 <= lr_decay_from < lr_decay_to, got {self.lr_decay_from}, {self.lr_decay_to}")
        if self.resolution and (self.resolution % 16 or not 16 <= self.resolution <= 512):
            raise ValueError(f"resolution must be 0 (default 64) or a multiple of 16 in [16, 512], got {self.resolution}")
        if min(self.num_layers, self.ffn_dim, self.num_attention_heads) < 0:
            raise ValueError("num_layers, ffn_dim and num_attention_heads must be >= 0 (0 = the tiny default)")
        # context_latents "" = the init's; mode None = both kinds of clips
        check_one_of(self, context_latents=("", "frame", "group"), geometry_prior=GEOMETRY_PRIORS,
                     context_attention=CONTEXT_ATTENTION_MODES, zero_pose=ZERO_POSE_MODES, finetune=FINETUNE_MODES,
                     mode=(None, "grounding", "navigation"))
        for name in ("p_drop_joint", "p_drop_text", "p_drop_context"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.p_drop_joint + self.p_drop_text + self.p_drop_context > 1.0:
            raise ValueError("p_drop_joint + p_drop_text + p_drop_context must be <= 1")
        if self.hole_weight < 0:
            raise ValueError(f"hole_weight must be >= 0, got {self.hole_weight}")
        if self.hole_weight and self.geometry_prior == "none":
            raise ValueError("hole_weight > 0 weights the loss by the warp prior's validity: set geometry_prior=warp")
        if self.max_context_frames < 1:
            raise ValueError("max_context_frames must be >= 1")
        if self.lr <= 0:
            raise ValueError("lr must be > 0")


def parse_args(argv: list[str]) -> TrainConfig:
    """key=value overrides, checked against TrainConfig (envs.config.parse_overrides)."""
    return parse_overrides(TrainConfig, argv)


# ----------------------------------------------------------------------------------------------
# model setup
# ----------------------------------------------------------------------------------------------
def init_pipeline(cfg: TrainConfig, first_clip: Clip) -> ImaginationPipeline:
    """Pipeline to train: a fresh tiny model sized from the data, or a saved/Wan pipeline."""
    if cfg.init == "tiny":
        if cfg.codec == "shipped":
            if not (TINY_CODEC_CHECKPOINT / "config.json").exists():
                raise FileNotFoundError(f"no trained tiny codec at {TINY_CODEC_CHECKPOINT}: train one with "
                                        f"`python -m models.codec_train` or pass codec=random (tests only)")
            codec = TinyAutoencoder.from_pretrained(TINY_CODEC_CHECKPOINT, torch_dtype=torch.float32)
        elif cfg.codec == "random":
            torch.manual_seed(cfg.seed)
            codec = TinyAutoencoder()
        else:
            codec = TinyAutoencoder.from_pretrained(cfg.codec, torch_dtype=torch.float32)
        box = first_clip.num_box_frames if first_clip.mode == "grounding" else 4
        size = {"height": cfg.resolution, "width": cfg.resolution} if cfg.resolution else {}
        settings = ImaginationConfig(num_frames=len(first_clip.target_frames), num_box_frames=box,
                                     max_context_frames=cfg.max_context_frames,
                                     context_latents=cfg.context_latents or "frame",
                                     **size)
        sizes = {k: getattr(cfg, k) for k in ("num_layers", "ffn_dim", "num_attention_heads") if getattr(cfg, k)}
        arch = tiny_transformer_config(context_attention=cfg.context_attention, **sizes)
        pipe = build_pipeline(arch, codec, shared_minilm(), settings, seed=cfg.seed)
    else:
        pipe = ImaginationPipeline.from_pretrained(cfg.init, device="cpu")
    return with_priors(pipe, cfg, first_clip)


def with_priors(pipe: ImaginationPipeline, cfg: TrainConfig, first_clip: Clip) -> ImaginationPipeline:
    """Set the context-pose, geometry-prior and context-latent options on any init; a missing geometry
    layer is added at zero, so it starts out changing nothing."""
    if cfg.context_poses and first_clip.context_poses is None:
        raise DataMismatchError(f"context_poses=true needs clips with context poses; {cfg.data} has none "
                         f"(regenerate it with python -m models.data)")
    if cfg.geometry_prior != "none" and first_clip.context_depth is None:
        raise DataMismatchError(f"geometry_prior={cfg.geometry_prior} needs clips with context depth; {cfg.data} has none "
                         f"(regenerate it with python -m models.data)")
    if cfg.geometry_prior != "none":
        pipe.transformer.add_geometry_layer(pipe.geometry_channels)
    settings = dataclasses.replace(pipe.settings, context_poses=cfg.context_poses, geometry_prior=cfg.geometry_prior,
                                   context_latents=cfg.context_latents or pipe.settings.context_latents,
                                   zero_pose=cfg.zero_pose)
    return ImaginationPipeline(pipe.transformer, pipe.codec, pipe.text_encoder, pipe.scheduler, settings,
                               path_head=pipe.path_head,  # kept as it is (models.path_head_train trains it)
                               refiner=pipe.refiner)  # kept too (models.refiner_train trains it)


def select_trainable(transformer, cfg: TrainConfig) -> list[torch.nn.Parameter]:
    """full: everything; attention: self/cross-attention (+ camera layer), as the paper; lora: peft
    adapters on the attention projections (+ camera layer)."""
    transformer.requires_grad_(cfg.finetune == "full")
    if cfg.finetune == "attention":
        for name, p in transformer.named_parameters():
            if ".attn1." in name or ".attn2." in name:
                p.requires_grad_(True)
    elif cfg.finetune == "lora":
        from peft import LoraConfig

        transformer.add_adapter(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_rank, init_lora_weights=True,
                                           target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    for layer in (transformer.camera_embedding, transformer.geometry_embedding):
        if layer is not None:
            layer.requires_grad_(True)
    params = [p for p in transformer.parameters() if p.requires_grad]
    if not params:
        raise RuntimeError(f"finetune={cfg.finetune} left no trainable parameters")
    return params


def merge_lora(transformer) -> None:
    """Fold LoRA adapters into the base weights and remove them (export as a plain checkpoint)."""
    from diffusers.utils.peft_utils import recurse_remove_peft_layers
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in transformer.modules():
        if isinstance(module, BaseTunerLayer):
            module.merge()
    recurse_remove_peft_layers(transformer)
    if hasattr(transformer, "_hf_peft_config_loaded"):
        transformer._hf_peft_config_loaded = False
        transformer.peft_config = {}


# ----------------------------------------------------------------------------------------------
# data → tensors
# ----------------------------------------------------------------------------------------------
@dataclass
class EncodedClip:
    ctx: torch.Tensor  # (C, N, h, w) float16 latents, one per context frame (or temporal group)
    ctx_idx: np.ndarray  # (N,)
    tgt: torch.Tensor  # (C, Fl, h, w) float16
    camera: torch.Tensor | None  # (6, Fl, h, w) relative to the first target frame, or None (grounding)
    poses: np.ndarray | None  # (F, 4, 4) target camera-to-world (navigation): cameras for another zero pose
    prompt: str
    mode: str
    ctx_camera: torch.Tensor | None = None  # (6, N, h, w) Plücker maps of the context latents (context_poses)
    geometry: torch.Tensor | None = None  # (G, Fl, h, w) geometry prior of the targets (geometry_prior)
    ctx_poses: np.ndarray | None = None  # (N, 4, 4) the context latents' camera-to-world (context cameras, other zero pose)


class ClipEncoder:
    """Encodes clips with the frozen codec once and keeps the latents (paper: pre-encoded latents)."""

    def __init__(self, pipe: ImaginationPipeline, dataset: ClipDataset) -> None:
        self.pipe, self.dataset = pipe, dataset
        self.cache: dict[int, EncodedClip] = {}

    @torch.no_grad()
    def __call__(self, idx: int) -> EncodedClip:
        if idx in self.cache:
            return self.cache[idx]
        clip = self.dataset[idx]
        s, pipe = self.pipe.settings, self.pipe
        if len(clip.target_frames) != s.num_frames:
            raise ValueError(f"clip {idx} has {len(clip.target_frames)} target frames but the model makes "
                             f"{s.num_frames}: write clips of one length (or init a model for that length)")
        if s.context_latents == "group":  # one latent per temporal group, as the sampler makes them
            ctx_lat, ctx_idx = pipe.encode_context_groups(clip.context_frames, clip.context_indices)
            ctx_lat = ctx_lat[0].half().cpu()
            sources = context_groups(len(clip.context_frames), pipe.codec.temporal_factor)[1]
        else:
            ctx_lat, ctx_idx = pipe.encode_frames(clip.context_frames, as_context=True)[0].half().cpu(), clip.context_indices
            sources = np.arange(len(clip.context_frames))
        tgt_lat = pipe.encode_frames(clip.target_frames)[0].half().cpu()
        camera = c2w_rel = None
        prompt = clip.instruction
        if clip.mode == "navigation":
            c2w_rel = relative_to(clip.target_poses)
            camera = pipe.camera_for(c2w_rel, s.num_frames)
            prompt = s.navigation_prompt
        poses = None if clip.context_poses is None else np.asarray(clip.context_poses)[sources]
        ctx_camera = pipe.context_camera_for(poses)
        context = VideoContext(clip.context_frames, clip.context_indices, poses=clip.context_poses,
                               depths=clip.context_depth)
        geometry = pipe.geometry_for(context, c2w_rel, s.num_frames)
        enc = EncodedClip(ctx_lat, np.asarray(ctx_idx), tgt_lat, camera, clip.target_poses if c2w_rel is not None
                          else None, prompt, clip.mode,
                          None if ctx_camera is None else ctx_camera.half(), None if geometry is None else geometry.half(),
                          None if ctx_camera is None else poses)
        self.cache[idx] = enc
        return enc


def make_batch(pipe: ImaginationPipeline, encoder: ClipEncoder, indices: list[int], cfg: TrainConfig,
               rng: np.random.Generator, dropout: bool = True, lengths: list[int] | None = None,
               rows: slice | None = None, reference_rng: np.random.Generator | None = None
               ) -> dict[str, torch.Tensor | int]:
    """Sample context subsets, apply CFG dropout, build positions/cameras/text for one batch.
    `reference_rng` draws each sample's zero-pose frame under `cfg.zero_pose=random` (none: the first).

    `indices` is the global batch. Under several processes each one draws the random choices of
    every sample in the same order (`lengths`: context latent frames of each sample, gathered from
    all processes) but builds only its own `rows`, so training is the same whatever the process count."""
    keep = range(len(indices))[rows or slice(None)]
    clips = {j: encoder(int(indices[j])) for j in keep}
    lengths = [clips[j].ctx.shape[1] for j in range(len(indices))] if lengths is None else lengths
    tf = pipe.codec.temporal_factor
    grouped = pipe.settings.context_latents == "group"  # each latent already is a run of tf frames
    n = max(1, min([cfg.max_context_frames // tf if grouped else cfg.max_context_frames, *lengths]))
    group = 1 if grouped else cfg.context_group or (tf if not isinstance(pipe.codec, TinyAutoencoder) else 1)
    first = clips[keep[0]]
    fl = first.tgt.shape[1]
    sources = pipe.codec.latent_frame_sources(pipe.settings.num_frames)
    ctxs, tgts, cams, prompts, positions, ctx_cams, geos, weights = [], [], [], [], [], [], [], []
    for j in range(len(indices)):
        pick = sample_context_groups(lengths[j], n, group, rng)
        ref = pick_reference(cfg.zero_pose, sources, reference_rng)
        drop_text = drop_ctx = False
        noise_ctx = None
        if dropout:
            r = rng.random()
            drop_text = r < cfg.p_drop_joint + cfg.p_drop_text
            drop_ctx = r < cfg.p_drop_joint or cfg.p_drop_joint + cfg.p_drop_text <= r < (
                cfg.p_drop_joint + cfg.p_drop_text + cfg.p_drop_context)
            if drop_ctx:
                c0, _, h, w = first.ctx.shape
                noise_ctx = torch.from_numpy(rng.standard_normal((c0, len(pick), h, w)).astype(np.float32))
        if j not in clips:  # another process's row: its draws are made, its tensors are not
            continue
        c = clips[j]
        ctx = c.ctx[:, pick].float() if noise_ctx is None else noise_ctx
        cam = c.camera if c.camera is not None else pipe.camera_for(None, pipe.settings.num_frames)
        if ref and c.poses is not None:
            cam = pipe.camera_for(relative_to(c.poses, ref), pipe.settings.num_frames)
        geo = None if c.geometry is None else c.geometry.float()
        ctx_cam = None if c.ctx_camera is None else c.ctx_camera[:, pick].float()
        if ctx_cam is not None and ref and c.poses is not None:  # the context cameras share the targets' zero pose
            ctx_cam = pipe.context_camera_for(c.ctx_poses, origin=c.poses[ref])[:, pick].float()
        if ctx_cam is not None and noise_ctx is not None:
            ctx_cam = torch.zeros_like(ctx_cam)  # a noised context carries no cameras either
        prompt = c.prompt
        if drop_text:  # the unconditional branch: no text, no target cameras, no geometry prior
            prompt = ""
            cam = None if cam is None else torch.zeros_like(cam)
            geo = None if geo is None else torch.zeros_like(geo)
        cp, tp = rope_positions(c.ctx_idx[pick], fl, tf, pipe.settings.rope_gap)
        ctxs.append(ctx)
        tgts.append(c.tgt.float())
        cams.append(cam)
        ctx_cams.append(ctx_cam)
        geos.append(geo)
        weights.append(hole_weights(c, cfg.hole_weight))
        prompts.append(prompt)
        positions.append(np.concatenate([cp, tp]))
    batch: dict[str, Any] = {
        "ctx": torch.stack(ctxs), "x0": torch.stack(tgts), "text": pipe.text_encoder.encode(prompts),
        "positions": torch.from_numpy(np.stack(positions)), "num_context_frames": n,
        "camera": None if cams[0] is None else torch.stack(cams),
        "context_camera": None if ctx_cams[0] is None else torch.stack(ctx_cams),
        "geometry": None if geos[0] is None else torch.stack(geos),
        "loss_weight": torch.stack(weights) if cfg.hole_weight else None,
    }
    return batch


def hole_weights(clip: EncodedClip, hole_weight: float) -> torch.Tensor:
    """(1, Fl, h, w) loss weight per target latent pixel: 1 + hole_weight × (1 − the warp prior's validity, the
    last geometry channel) for navigation clips (taken before CFG dropout zeroes the prior), 1 elsewhere."""
    fl, h, w = clip.tgt.shape[1:]
    if clip.mode != "navigation" or clip.geometry is None:
        return torch.ones(1, fl, h, w)
    return 1.0 + hole_weight * (1.0 - clip.geometry[-1:].float())


def sample_sigmas(batch_size: int, shift: float, generator: torch.Generator) -> torch.Tensor:
    """Logit-normal σ (SD3 / diffusers.training_utils) shifted like the sampling scheduler."""
    u = torch.sigmoid(torch.randn(batch_size, generator=generator))
    return shift * u / (1 + (shift - 1) * u)


def flow_loss(transformer, batch: dict, generator: torch.Generator, shift: float, device, rows: slice | None = None,
              total: int | None = None) -> torch.Tensor:
    """MSE between predicted and true velocity (noise − x0) on the target latents only. Noise and σ are
    drawn for the `total` samples of the global batch and this process keeps its `rows` (see make_batch)."""
    x0 = batch["x0"].to(device)
    shape = (total or x0.shape[0], *x0.shape[1:])
    noise = torch.randn(shape, generator=generator)[rows or slice(None)].to(device)
    sigma = sample_sigmas(shape[0], shift, generator)[rows or slice(None)].to(device)
    s = sigma.view(-1, 1, 1, 1, 1)
    xt = (1 - s) * x0 + s * noise
    hidden = torch.cat([batch["ctx"].to(device), xt], dim=2)
    cond = {k: None if batch.get(k) is None else batch[k].to(device) for k in ("camera", "context_camera", "geometry")}
    pred = transformer(hidden, sigma * 1000.0, batch["text"].to(device), frame_positions=batch["positions"].to(device),
                       num_context_frames=batch["num_context_frames"], **cond).sample
    if batch.get("loss_weight") is None:
        return F.mse_loss(pred.float(), (noise - x0).float())
    w = batch["loss_weight"].to(device)  # (B, 1, Fl, h, w): one weight per latent pixel, over the channels
    err = (pred.float() - (noise - x0).float()) ** 2
    return (w * err).mean() / w.expand_as(err).mean()  # the weighted mean: the loss keeps its scale


# ----------------------------------------------------------------------------------------------
# checkpoints (safetensors + JSON; no pickle)
# ----------------------------------------------------------------------------------------------
def gathered_weights(acc: Any, model, names: set[str] | None = None) -> dict[str, torch.Tensor]:
    """The named weights (all by default) in full. Call on every process: under FSDP or DeepSpeed ZeRO-3 each process
    holds a shard and accelerate gathers them here; the result is complete on the main process."""
    full = acc.get_state_dict(model)
    return {n: v.detach().cpu().contiguous() for n, v in full.items() if names is None or n in names}


def save_checkpoint(ckpt_dir: Path, weights: dict[str, torch.Tensor], optimizer, lr_scheduler, step: int,
                    np_rng: np.random.Generator, torch_gen: torch.Generator) -> None:
    """Trainable weights, AdamW moments (unless `optimizer` is None: sharded runs, where this process
    holds only its shard of them), LR schedule and RNG states."""
    tmp = ckpt_dir.with_name(ckpt_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(weights, str(tmp / "trainable.safetensors"))
    tensors = {"__torch_rng": torch.get_rng_state(), "__gen_rng": torch_gen.get_state()}
    osd = optimizer.state_dict() if optimizer is not None else {"state": {}, "param_groups": None}
    for pid, st in osd["state"].items():
        for k, v in st.items():
            tensors[f"{pid}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    state = {"step": step, "param_groups": osd["param_groups"], "lr_scheduler": lr_scheduler.state_dict(),
             "np_rng": np_rng.bit_generator.state}
    (tmp / "state.json").write_text(json.dumps(state, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    tmp.rename(ckpt_dir)


def latest_checkpoint(out: Path) -> Path | None:
    ck = sorted((out / "checkpoints").glob("step-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))
    ck = [p for p in ck if (p / "state.json").exists()]
    return ck[-1] if ck else None


def load_weights(ckpt_dir: Path, model) -> None:
    """Trainable weights into the plain model, before accelerate wraps (and maybe shards) it."""
    weights = load_file(str(ckpt_dir / "trainable.safetensors"))
    missing = set(weights) - {n for n, _ in model.named_parameters()}
    if missing:
        raise RuntimeError(f"checkpoint {ckpt_dir} has weights the model lacks (different finetune mode?): "
                           f"{sorted(missing)[:5]}")
    model.load_state_dict(weights, strict=False)


def load_training_state(ckpt_dir: Path, optimizer, lr_scheduler, np_rng: np.random.Generator,
                        torch_gen: torch.Generator) -> int:
    """Optimizer moments (when the checkpoint has them), LR schedule and RNG states; returns the step."""
    state = json.loads((ckpt_dir / "state.json").read_text())
    tensors = load_file(str(ckpt_dir / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop("__torch_rng"))
    torch_gen.set_state(tensors.pop("__gen_rng"))
    per: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        per.setdefault(int(pid), {})[k] = v
    if state["param_groups"] is not None:
        optimizer.load_state_dict({"state": per, "param_groups": state["param_groups"]})
    else:
        print(f"{ckpt_dir} was saved by a sharded (FSDP / ZeRO-3) run: AdamW moments restart from zero",
              file=sys.stderr)
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    np_rng.bit_generator.state = state["np_rng"]
    return int(state["step"])


def export_pipeline(pipe: ImaginationPipeline, model, weights: dict[str, torch.Tensor], cfg: TrainConfig,
                    path: Path) -> None:
    """Write the trained pipeline folder from the gathered `weights` (fp16 optional; LoRA merged first).
    The transformer is rebuilt from its config (weights left unallocated, then assigned) because under
    FSDP or ZeRO-3 the process's own module holds only a shard."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        tr = type(model).from_config(model.config)
        if cfg.finetune == "lora":
            select_trainable(tr, cfg)  # the same adapters, so the LoRA weights have somewhere to go
    tr.load_state_dict(weights, assign=True)
    if cfg.finetune == "lora":
        merge_lora(tr)
    tr.requires_grad_(False).eval()
    out = ImaginationPipeline(tr, pipe.codec, pipe.text_encoder, pipe.scheduler, pipe.settings, path_head=pipe.path_head,
                              refiner=pipe.refiner)
    out.save_pretrained(path, torch_dtype=torch.float16 if cfg.export_fp16 else None)


# ----------------------------------------------------------------------------------------------
# main loop
# ----------------------------------------------------------------------------------------------
class _Indices(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


@torch.no_grad()
def validation_loss(model, pipe, encoder: ClipEncoder, cfg: TrainConfig, device) -> float:
    """Deterministic held-out loss: fixed context picks, noise and σ; no CFG dropout."""
    rng = np.random.default_rng(12345)
    gen = torch.Generator().manual_seed(12345)
    n = len(encoder.dataset)
    losses = []
    was_training = model.training
    model.eval()
    for b in range(cfg.val_batches):
        idx = [(b * cfg.batch_size + k) % n for k in range(cfg.batch_size)]
        batch = make_batch(pipe, encoder, idx, cfg, rng, dropout=False)
        batch["loss_weight"] = None  # the plain loss, comparable across hole_weight
        losses.append(flow_loss(model, batch, gen, _shift(pipe), device).item())
    model.train(was_training)
    return float(np.mean(losses))


def _shift(pipe: ImaginationPipeline) -> float:
    return float(getattr(pipe.scheduler.config, "shift", None) or getattr(pipe.scheduler.config, "flow_shift", 1.0) or 1.0)


def _cooldown(cfg: TrainConfig, step: int) -> float:
    """LR factor: warmup, constant, then a linear cooldown to 0 — diffusers' schedulers decay from the
    first step after warmup, which wastes a resumed run's constant phase, hence this small lambda."""
    if step < cfg.warmup_steps:
        return step / max(1, cfg.warmup_steps)
    if step < cfg.lr_decay_from:
        return 1.0
    return max(0.0, (cfg.lr_decay_to - step) / max(1, cfg.lr_decay_to - cfg.lr_decay_from))


def global_batch(acc: Any, encoder: ClipEncoder, micro: list[list[int]]
                 ) -> tuple[list[int], list[int] | None, list[slice | None]]:
    """(indices of the global batch, their context lengths, this process's rows in each micro-batch)
    from this process's slices of the micro-batches of one optimizer step. The global batch lists
    micro-batch after micro-batch, each split over the processes in rank order, so training is the
    same for any process count × accumulation at one global batch. One process, no accumulation:
    (its batch, None, [None])."""
    if acc.num_processes == 1 and len(micro) == 1:
        return micro[0], None, [None]
    k, n, procs = len(micro), len(micro[0]), acc.num_processes
    mine = torch.tensor([[[i, encoder(i).ctx.shape[1]] for i in m] for m in micro], dtype=torch.int64,
                        device=acc.device)
    everyone = acc.gather(mine).cpu().view(procs, k, n, 2).transpose(0, 1).reshape(-1, 2)
    rows = [slice((m * procs + acc.process_index) * n, (m * procs + acc.process_index + 1) * n) for m in range(k)]
    return everyone[:, 0].tolist(), everyone[:, 1].tolist(), rows


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run training; returns a summary (final loss, steps, export path)."""
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedType
    from accelerate.utils import GradientAccumulationPlugin
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # batch_size is the global batch: each process takes its slice of every loader batch (split_batches),
    # and with accumulation the loader batches are micro-batches, gradient_accumulation_steps per step.
    # The loop groups them itself, so accelerate must not sync at the loader's end (sync_with_dataloader).
    accum = cfg.gradient_accumulation_steps
    acc = Accelerator(mixed_precision=cfg.mixed_precision, dataloader_config=DataLoaderConfiguration(split_batches=True),
                      gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=accum, sync_with_dataloader=False))
    if cfg.batch_size % (acc.num_processes * accum):
        raise DataMismatchError(f"batch_size={cfg.batch_size} is the global batch: make it a multiple of the "
                         f"{acc.num_processes} processes x gradient_accumulation_steps={accum}")
    # FSDP / ZeRO-3: each process holds a shard of the weights and of the AdamW moments
    sharded = acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = ClipDataset(cfg.data, cfg.mode)
    if accum > 1 and len(dataset) < cfg.batch_size:  # the micro-batches of one step would never fill up
        raise DataMismatchError(f"gradient_accumulation_steps needs at least batch_size={cfg.batch_size} clips; "
                                f"{cfg.data} has {len(dataset)}: lower batch_size= or add clips")
    pipe = init_pipeline(cfg, dataset[0])
    pipe.to(acc.device)
    pipe.codec.requires_grad_(False)
    model = pipe.transformer
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    params = select_trainable(model, cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    model.train()
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.lr_decay_to:
        lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(_cooldown, cfg))
    else:
        lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=cfg.warmup_steps,
                                     num_training_steps=cfg.steps)
    dl_gen = torch.Generator().manual_seed(cfg.seed)
    micro = cfg.batch_size // accum
    loader = torch.utils.data.DataLoader(_Indices(len(dataset)), batch_size=micro, shuffle=True,
                                         drop_last=len(dataset) >= micro, generator=dl_gen)
    last = latest_checkpoint(out) if cfg.resume else None
    if last is not None:
        load_weights(last, model)  # before prepare, which may shard them
    model, optimizer, loader, lr_scheduler = acc.prepare(model, optimizer, loader, lr_scheduler)
    encoder = ClipEncoder(pipe, dataset)
    val_encoder = ClipEncoder(pipe, ClipDataset(cfg.val_data, cfg.mode)) if cfg.val_data else None
    np_rng = np.random.default_rng(cfg.seed)  # the same on every process: each draws the whole global batch
    gen = torch.Generator().manual_seed(cfg.seed)
    step = 0
    if last is not None:
        step = load_training_state(last, optimizer, lr_scheduler, np_rng, gen)
        acc.print(f"resumed from {last} at step {step}", file=sys.stderr)
    (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    log = (out / "loss.jsonl").open("a")
    shift = _shift(pipe)
    bar = tqdm(total=cfg.steps, initial=step, disable=not acc.is_main_process, file=sys.stderr, desc="train")
    t0, recent, loss_val = time.perf_counter(), [], float("nan")
    while step < cfg.steps:
        group: list[list[int]] = []  # this process's micro-batches of the next optimizer step
        for idx in loader:
            if step >= cfg.steps:
                break
            group.append([int(i) for i in idx])
            if len(group) < accum:
                continue
            indices, lengths, rows = global_batch(acc, encoder, group)
            group = []
            draws = np_rng.bit_generator.state, gen.get_state()
            losses = []
            for r in rows:
                # each micro-batch makes the random draws of the whole global batch and keeps its rows
                np_rng.bit_generator.state = draws[0]
                gen.set_state(draws[1])
                # the zero-pose draws have their own stream (a function of seed and step: resumable, and the
                # context picks, dropout and noise stay those of a zero_pose=first run)
                batch = make_batch(pipe, encoder, indices, cfg, np_rng, lengths=lengths, rows=r,
                                   reference_rng=np.random.default_rng([cfg.seed, step]))
                with acc.accumulate(model):
                    loss = flow_loss(model, batch, gen, shift, acc.device, rows=r, total=len(indices))
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"loss is {loss.item()} at step {step}: lower lr= or check the data")
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.grad_clip > 0:
                        acc.clip_grad_norm_(params, cfg.grad_clip)
                    optimizer.step()
                    lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                losses.append(loss.detach())
            step += 1
            loss_val = acc.gather(torch.stack(losses)).mean().item()
            recent.append(loss_val)
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(recent[-20:]):.4f}")
            if acc.is_main_process and (step % cfg.log_every == 0 or step == cfg.steps or step == 1):
                rec = {"step": step, "loss": loss_val, "loss_avg": float(np.mean(recent[-cfg.log_every:])),
                       "lr": lr_scheduler.get_last_lr()[0], "seconds": round(time.perf_counter() - t0, 2)}
                log.write(json.dumps(rec) + "\n")
                log.flush()
            if val_encoder is not None and (step % cfg.val_every == 0 or step == cfg.steps):
                v = validation_loss(model, pipe, val_encoder, cfg, acc.device)
                if acc.is_main_process:
                    log.write(json.dumps({"step": step, "val_loss": v}) + "\n")
                    log.flush()
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                weights = gathered_weights(acc, model, trainable)  # every process takes part in the gather
                if acc.is_main_process:
                    save_checkpoint(out / "checkpoints" / f"step-{step}", weights, None if sharded else optimizer,
                                    lr_scheduler, step, np_rng, gen)
                    for old in sorted((out / "checkpoints").glob("step-*[0-9]"),
                                      key=lambda p: int(p.name.split("-")[1]))[: -cfg.keep_checkpoints]:
                        shutil.rmtree(old, ignore_errors=True)
            acc.wait_for_everyone()
    bar.close()
    log.close()
    export = Path(cfg.export_dir) if cfg.export_dir else out / "pipeline"
    weights = gathered_weights(acc, model)
    if acc.is_main_process:
        export_pipeline(pipe, pipe.transformer, weights, cfg, export)
    acc.wait_for_everyone()
    return {"steps": step, "loss": loss_val, "export": str(export),
            "seconds": round(time.perf_counter() - t0, 2), "clips": len(dataset)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = parse_args(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return json_command(lambda: train(cfg), errors=(DataMismatchError,))


if __name__ == "__main__":
    raise SystemExit(main())
