"""`python -m models.scaling [gpus=8 micro_batch=1 finetune=attention ...]`: memory per GPU of training
the Wan2.2-TI2V-5B-sized transformer at the paper's clip shape, sharded over `gpus` (FSDP full shard or
ZeRO-3, bf16 mixed precision, fp32 master weights and AdamW states). One JSON line; docs/scaling.md
explains every entry.

Parameter counts come from the real model class on the meta device. Activation bytes are measured,
not guessed: a one-block model of the 5B shape runs forward on the CPU under bf16 autocast at two
token counts, and the tensors autograd saves for backward are summed (parameters excluded), inside
the block and outside it; the difference between the two sizes gives bytes per token. With
activation checkpointing a block keeps only its input and one block at a time is recomputed in
backward. Attention goes through SDPA (no L x L matrix is stored), so activations grow linearly in
tokens.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass

import torch

from envs.config import parse_overrides

GB = 1e9


@dataclass
class ScalingConfig:
    gpus: int = 8
    micro_batch: int = 1  # clips per GPU per forward pass (gradient accumulation makes up the global batch)
    finetune: str = "attention"  # attention (the paper: self/cross-attention trained) | full
    width: int = 416  # the paper's clip: 416 x 256 pixels,
    height: int = 256
    context_frames: int = 169  # 169 context frames in training (43 latent frames),
    target_frames: int = 181  # 161 generated + 20 box frames (46 latent frames)
    text_tokens: int = 512  # UMT5 sequence length
    measure_tokens: str = "208,416"  # token counts of the one-block measurement


def latent_tokens(cfg: ScalingConfig, patch: int = 2, spatial: int = 16, temporal: int = 4) -> tuple[int, int]:
    """(latent frames, tokens) of one training clip: Wan2.2 VAE x16 spatial, x4 temporal (1 + 4k frames), patch 2x2."""
    lat_f = (1 + (cfg.context_frames - 1) // temporal) + (1 + (cfg.target_frames - 1) // temporal)
    per_frame = (cfg.height // spatial // patch) * (cfg.width // spatial // patch)
    return lat_f, lat_f * per_frame


def parameter_counts() -> dict[str, int]:
    from models.pipeline import wan22_meta_transformer

    t = wan22_meta_transformer()
    total = sum(math.prod(p.shape) for p in t.parameters())
    attention = sum(math.prod(p.shape) for n, p in t.named_parameters()
                    if ".attn1." in n or ".attn2." in n or n.startswith("camera_embedding"))
    block = sum(math.prod(p.shape) for p in t.blocks[0].parameters())
    return {"total": total, "attention": attention, "per_block": block, "blocks": len(t.blocks)}


def _saved_bytes(model: torch.nn.Module, frames: int, text_tokens: int) -> tuple[int, int, int]:
    """(bytes saved for backward inside the block, outside it, the block's input) for one clip of `frames` latent frames."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[str, dict[int, int]] = {"inside": {}, "outside": {}}
    where = ["outside"]
    block_input: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[where[0]][ptr] = max(seen[where[0]].get(ptr, 0), t.untyped_storage().nbytes())
        return t

    def enter(_m, args) -> None:
        where[0] = "inside"
        block_input.append(args[0].numel() * args[0].element_size())

    def leave(_m, _args, _out) -> None:
        where[0] = "outside"

    block = model.blocks[0]
    hooks = [block.register_forward_pre_hook(enter), block.register_forward_hook(leave)]
    x = torch.randn(1, 48, frames, 16, 26)
    text = torch.randn(1, text_tokens, 4096)
    pos = torch.arange(frames, dtype=torch.float32)[None]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x, torch.full((1,), 500.0), text, frame_positions=pos, num_context_frames=1)
    for h in hooks:
        h.remove()
    return sum(seen["inside"].values()), sum(seen["outside"].values()), block_input[0]


def saved_bytes_per_token(tokens: list[int], text_tokens: int) -> dict[str, float]:
    """Bytes per token that autograd keeps for backward, measured on one 5B-shaped block under bf16
    autocast: inside the block, outside it (embeddings, head), and the block's input (what activation
    checkpointing keeps instead of the inside)."""
    from models.transformer import V4STransformer, wan22_ti2v_5b_config

    torch.manual_seed(0)
    model = V4STransformer(**wan22_ti2v_5b_config(num_layers=1, camera_channels=24))
    model.train()
    per_frame = 8 * 13  # latent tokens per frame at 416 x 256
    frames = [max(2, n // per_frame) for n in (tokens[0], tokens[-1])]
    (a, b) = (_saved_bytes(model, f, text_tokens) for f in frames)
    dt = (frames[1] - frames[0]) * per_frame
    inside, outside, block_in = ((y - x) / dt for x, y in zip(a, b))
    return {"inside_block": inside, "outside_blocks": outside, "block_input": block_in}


def estimate(cfg: ScalingConfig) -> dict:
    counts = parameter_counts()
    lat_f, tokens = latent_tokens(cfg)
    trainable = counts["total"] if cfg.finetune == "full" else counts["attention"]
    n = cfg.gpus
    params_gb = 4 * counts["total"] / n / GB  # fp32 master weights, sharded
    grads_gb = 4 * trainable / n / GB  # fp32 gradients of the trainable part, sharded
    optim_gb = 8 * trainable / n / GB  # AdamW exp_avg + exp_avg_sq, fp32, sharded
    unit_gb = 2 * 2 * counts["per_block"] / GB  # two gathered bf16 blocks in flight (current + prefetch)
    measure = [int(x) for x in cfg.measure_tokens.split(",")]
    per_tok = saved_bytes_per_token(measure, cfg.text_tokens)
    layers = counts["blocks"]
    inside, outside, block_in = per_tok["inside_block"], per_tok["outside_blocks"], per_tok["block_input"]
    act_full_gb = cfg.micro_batch * tokens * (inside * layers + outside) / GB
    # checkpointing keeps each block's input; the block being recomputed in backward holds its full set
    act_ckpt_gb = cfg.micro_batch * tokens * (block_in * layers + inside + outside) / GB
    states = params_gb + grads_gb + optim_gb + unit_gb
    return {
        "config": asdict(cfg), "latent_frames": lat_f, "tokens_per_clip": tokens,
        "params_total": counts["total"], "params_trainable": trainable, "params_per_block": counts["per_block"],
        "per_gpu_gb": {
            "params_fp32_sharded": round(params_gb, 2), "grads_fp32_sharded": round(grads_gb, 2),
            "adamw_fp32_sharded": round(optim_gb, 2), "gathered_bf16_blocks": round(unit_gb, 2),
            "activations_no_checkpointing": round(act_full_gb, 2), "activations_checkpointing": round(act_ckpt_gb, 2),
            "total_no_checkpointing": round(states + act_full_gb, 2), "total_checkpointing": round(states + act_ckpt_gb, 2),
        },
        "activation_bytes_per_token": {k: round(v) for k, v in per_tok.items()},
        "unsharded_states_gb": round((4 * counts["total"] + 12 * trainable) / GB, 2),
    }


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_overrides(ScalingConfig, sys.argv[1:] if argv is None else argv)
        if cfg.finetune not in ("attention", "full") or cfg.gpus < 1 or cfg.micro_batch < 1:
            raise ValueError("finetune must be attention | full, gpus and micro_batch >= 1")
    except ValueError as e:
        print(f"models.scaling: {e}", file=sys.stderr)
        return 2
    print(json.dumps(estimate(cfg)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
