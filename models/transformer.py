"""The Video4Spatial transformer: diffusers' Wan DiT plus clean context frames, sparse RoPE and cameras.

`V4STransformer` subclasses `WanTransformer3DModel` and adds no parameters except two optional
zero-initialised projections (cameras, geometry prior), so a stock Wan checkpoint loads into it
(`from_wan`) and, with contiguous positions, no camera and full attention, it computes exactly what
the stock model does.

What it adds (paper §3.2, §3.4):
- clean context latents concatenated with the noisy targets along time; context tokens get t = 0
  through Wan's per-token timestep path (the Wan2.2 TI2V model was trained with it);
- temporal RoPE positions per frame (sparse source indices for context, last index + gap for targets);
- navigation: Plücker ray maps of the target cameras, patchified and added to the target tokens;
- optional context cameras: Plücker maps of each context frame's camera (relative to the current
  view) through the same camera layer, added to the context tokens;
- optional geometry prior: per-target-frame features (e.g. the memory warped into the target
  cameras, encoded, plus a validity mask) through their own zero-initialised layer, added to the
  target tokens;
- `context_attention="one_way"`: context tokens attend only to context, so their keys/values do not
  depend on the noisy targets and are computed once per rollout (`build_context_cache`).

Written against diffusers 0.42.1 `models/transformers/transformer_wan.py`; `V4SBlock.forward`
mirrors `WanAttnProcessor.__call__` / `WanTransformerBlock.forward` line by line because the stock
block hard-codes `attention_mask=None` and cannot take cached keys.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel, WanTransformerBlock

from envs.config import check_choice

ContextAttention = Literal["full", "one_way"]
CONTEXT_ATTENTION_MODES = ("full", "one_way")


@dataclass
class ContextCache:
    """Per-block self-attention keys/values of the context tokens (after qk-norm and RoPE).

    Valid for one rollout: fixed context latents, text embedding and batch layout.
    keys[i], values[i]: (B, Lc, heads, head_dim)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    num_frames: int
    batch_size: int

    @property
    def num_tokens(self) -> int:
        return self.keys[0].shape[1]


def _apply_rotary_emb(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # Same arithmetic (and dtype promotion) as diffusers' WanAttnProcessor.apply_rotary_emb.
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos = cos[..., 0::2]
    sin = sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


class V4SBlock(WanTransformerBlock):
    """`WanTransformerBlock` whose forward also takes a self-attention mask and cached context keys/values.

    The stock forward hard-codes `attention_mask=None` and cannot take cached keys, so the masked and
    cached paths mirror `WanAttnProcessor.__call__` / `WanTransformerBlock.forward` line by line. They
    run inside this block's own forward because FSDP and DeepSpeed ZeRO-3 gather a block's sharded
    weights around its forward call: code that reached into `block.attn1` from outside would see shards.
    Same parameters as the stock block; without a mask or cache it runs the stock forward."""

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, temb: torch.Tensor,
                rotary_emb, attention_mask: torch.Tensor | None = None,
                kv_prefix: tuple[torch.Tensor, torch.Tensor] | None = None, return_kv: bool = False,
                kv_only: bool = False):
        """The stock block, plus: `attention_mask` for self-attention, `kv_prefix` (cached keys/values
        prepended to this block's), `return_kv` (return (hidden_states, (k, v))) and `kv_only` (stop
        after k, v: returns (None, (k, v)))."""
        if attention_mask is None and kv_prefix is None and not (return_kv or kv_only):
            return super().forward(hidden_states, encoder_hidden_states, temb, rotary_emb)
        x = hidden_states
        shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = self._modulation(temb)
        norm_x = (self.norm1(x.float()) * (1 + scale_msa) + shift_msa).type_as(x)
        q, k, v = self._qkv(norm_x, rotary_emb)
        if kv_only:
            return None, (k, v)
        kk, vv = (k, v) if kv_prefix is None else (torch.cat([kv_prefix[0], k], 1), torch.cat([kv_prefix[1], v], 1))
        attn_output = self._attend(q, kk, vv, attention_mask)
        x = (x.float() + attn_output * gate_msa).type_as(x)
        norm_x = self.norm2(x.float()).type_as(x)
        x = x + self.attn2(norm_x, encoder_hidden_states, None, None)
        norm_x = (self.norm3(x.float()) * (1 + c_scale_msa) + c_shift_msa).type_as(x)
        ff_output = self.ffn(norm_x)
        x = (x.float() + ff_output.float() * c_gate_msa).type_as(x)
        return (x, (k, v)) if return_kv else x

    def _modulation(self, temb: torch.Tensor):
        if temb.ndim == 4:
            mods = (self.scale_shift_table.unsqueeze(0) + temb.float()).chunk(6, dim=2)
            return [m.squeeze(2) for m in mods]
        return list((self.scale_shift_table + temb.float()).chunk(6, dim=1))

    def _qkv(self, x: torch.Tensor, rotary_emb):
        attn = self.attn1
        if getattr(attn, "fused_projections", False):
            raise RuntimeError("V4STransformer does not support fused QKV projections; call unfuse_qkv_projections()")
        q = attn.norm_q(attn.to_q(x)).unflatten(2, (attn.heads, -1))
        k = attn.norm_k(attn.to_k(x)).unflatten(2, (attn.heads, -1))
        v = attn.to_v(x).unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            q = _apply_rotary_emb(q, *rotary_emb)
            k = _apply_rotary_emb(k, *rotary_emb)
        return q, k, v

    def _attend(self, q, k, v, mask=None) -> torch.Tensor:
        # torch SDPA directly (diffusers' dispatcher would do the same on CPU) so we can pass a mask.
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
        out = out.transpose(1, 2).flatten(2, 3).type_as(q)
        return self.attn1.to_out[1](self.attn1.to_out[0](out))


class V4STransformer(WanTransformer3DModel):
    """Wan DiT with a clean video context, per-frame RoPE positions, optional cameras and KV cache.

    Extra config: `camera_channels` (values per token of the patchified Plücker map, 6·pt·ph·pw;
    None = no camera layer), `geometry_channels` (channels per latent pixel of the geometry prior;
    None = no such layer) and `context_attention` ("full" as in the paper, or "one_way")."""

    _no_split_modules = ["V4SBlock"]
    _repeated_blocks = ["V4SBlock"]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        camera_channels: int | None = None,
        context_attention: str = "full",
        geometry_channels: int | None = None,
    ) -> None:
        super().__init__(
            patch_size=patch_size,
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            text_dim=text_dim,
            freq_dim=freq_dim,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            cross_attn_norm=cross_attn_norm,
            qk_norm=qk_norm,
            eps=eps,
            image_dim=image_dim,
            added_kv_proj_dim=added_kv_proj_dim,
            rope_max_seq_len=rope_max_seq_len,
            pos_embed_seq_len=pos_embed_seq_len,
        )
        check_choice("context_attention", context_attention, CONTEXT_ATTENTION_MODES)
        for block in self.blocks:  # the stock constructor builds stock blocks; same weights, our forward
            block.__class__ = V4SBlock
        inner_dim = num_attention_heads * attention_head_dim
        self.camera_embedding: nn.Linear | None = None
        self.geometry_embedding: nn.Linear | None = None
        if camera_channels:
            # Zero-initialised so a pretrained model starts out ignoring the cameras (ControlNet-style).
            self.camera_embedding = _zero_linear(camera_channels, inner_dim)
        if geometry_channels:
            self.geometry_embedding = _zero_linear(geometry_channels * math.prod(patch_size), inner_dim)

    def add_geometry_layer(self, channels: int) -> None:
        """Give a loaded model (e.g. a checkpoint trained without it) the zero-initialised geometry-prior
        layer: its output starts out unchanged."""
        if self.geometry_embedding is not None:
            if self.config.geometry_channels != channels:
                raise ValueError(f"this transformer's geometry layer takes {self.config.geometry_channels} channels, "
                                 f"not {channels}")
            return
        ref = self.proj_out.weight
        self.geometry_embedding = _zero_linear(channels * math.prod(self.config.patch_size), ref.shape[1],
                                               device=ref.device, dtype=ref.dtype)
        # a checkpoint saved without the key lists it under _use_default_values, and from_config would then
        # drop it again (diffusers' ConfigMixin): take it off that list
        defaults = [k for k in self.config.get("_use_default_values", []) if k != "geometry_channels"]
        self.register_to_config(geometry_channels=channels, _use_default_values=defaults)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_wan(cls, path: str, subfolder: str | None = "transformer", **overrides: Any) -> V4STransformer:
        """Load a stock diffusers Wan transformer folder, adding the (zero-initialised) V4S layers.

        diffusers leaves weights missing from the checkpoint on the meta device (low_cpu_mem_usage),
        so the camera and geometry layers are materialised here as zeros, on the dtype/device of the loaded
        model."""
        kwargs: dict[str, Any] = dict(overrides)
        if subfolder:
            kwargs["subfolder"] = subfolder
        model = cls.from_pretrained(path, **kwargs)
        ref = model.proj_out.weight
        for name in ("camera_embedding", "geometry_embedding"):
            layer = getattr(model, name)
            if layer is not None and layer.weight.is_meta:
                setattr(model, name, _zero_linear(layer.in_features, layer.out_features, device=ref.device,
                                                  dtype=ref.dtype))
        still_meta = [n for n, p in model.named_parameters() if p.is_meta]
        if still_meta:
            raise RuntimeError(f"{path}: weights missing from the checkpoint: {still_meta[:5]} (not a Wan transformer?)")
        return model

    # ------------------------------------------------------------------ helpers
    def rotary_embedding(self, positions: torch.Tensor, pph: int, ppw: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) of shape (Bp, F·pph·ppw, 1, head_dim) for temporal positions (F,) or (Bp, F).

        Spatial parts come from the stock precomputed tables; the temporal part is computed for the
        given (possibly sparse, possibly > rope_max_seq_len) positions in float64 like the stock table,
        so positions = arange(F) reproduce the stock values bit for bit."""
        rope = self.rope
        key = (positions.detach().cpu().numpy().tobytes(), str(positions.dtype), tuple(positions.shape), pph, ppw,
               str(rope.freqs_cos.device))
        memo = self.__dict__.setdefault("_rope_memo", {})
        if key in memo:  # the same positions come back at every denoising step
            return memo[key]
        if len(memo) > 64:
            memo.clear()
        if positions.ndim == 1:
            positions = positions[None]
        if pph > rope.max_seq_len or ppw > rope.max_seq_len:
            raise ValueError(f"token grid {pph}x{ppw} exceeds rope_max_seq_len={rope.max_seq_len}")
        bp, nf = positions.shape
        device = rope.freqs_cos.device
        pos = positions.to(device=device, dtype=torch.float64).reshape(-1)
        t_cos, t_sin = get_1d_rotary_pos_embed(
            rope.t_dim, pos, 10000.0, use_real=True, repeat_interleave_real=True, freqs_dtype=torch.float64
        )
        split = [rope.t_dim, rope.h_dim, rope.w_dim]
        _, h_cos, w_cos = rope.freqs_cos.split(split, dim=1)
        _, h_sin, w_sin = rope.freqs_sin.split(split, dim=1)
        outs = []
        for t, h, w in ((t_cos, h_cos, w_cos), (t_sin, h_sin, w_sin)):
            t = t.to(h.dtype).view(bp, nf, 1, 1, -1).expand(bp, nf, pph, ppw, -1)
            h = h[:pph].view(1, 1, pph, 1, -1).expand(bp, nf, pph, ppw, -1)
            w = w[:ppw].view(1, 1, 1, ppw, -1).expand(bp, nf, pph, ppw, -1)
            outs.append(torch.cat([t, h, w], dim=-1).reshape(bp, nf * pph * ppw, 1, -1))
        memo[key] = (outs[0], outs[1])
        return memo[key]

    def patchify_camera(self, camera: torch.Tensor) -> torch.Tensor:
        """(B, C, F, H, W) maps on the latent grid (Plücker: C = 6) → (B, F·tokens, C·pt·ph·pw) token features."""
        p_t, p_h, p_w = self.config.patch_size
        b, c, f, h, w = camera.shape
        x = camera.reshape(b, c, f // p_t, p_t, h // p_h, p_h, w // p_w, p_w)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # B, F', H', W', C, pt, ph, pw
        return x.reshape(b, (f // p_t) * (h // p_h) * (w // p_w), c * p_t * p_h * p_w)

    def _embed_conditions(self, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor, tokens_per_frame: int,
                          num_tokens: int, encoder_hidden_states_image: torch.Tensor | None):
        """Time/text embeddings. timestep: (B,) scalar per sample (stock path), (B, F) per latent frame
        (embedded once per frame, then repeated per token: cheaper than per token, same values), or
        (B, L) per token (stock Wan2.2 TI2V path)."""
        ce = self.condition_embedder
        if timestep.ndim == 1:
            temb, proj, ehs, ehs_img = ce(timestep, encoder_hidden_states, encoder_hidden_states_image)
            return temb, proj.unflatten(1, (6, -1)), ehs, ehs_img
        if timestep.shape[1] == num_tokens:
            temb, proj, ehs, ehs_img = ce(timestep.flatten(), encoder_hidden_states, encoder_hidden_states_image,
                                          timestep_seq_len=num_tokens)
            return temb, proj.unflatten(2, (6, -1)), ehs, ehs_img
        nf = timestep.shape[1]
        if nf * tokens_per_frame != num_tokens:
            raise ValueError(f"timestep has {nf} entries per sample: need 1, one per latent frame "
                             f"({num_tokens // tokens_per_frame}) or one per token ({num_tokens})")
        temb, proj, ehs, ehs_img = ce(timestep.flatten(), encoder_hidden_states, encoder_hidden_states_image,
                                      timestep_seq_len=nf)
        temb = temb.repeat_interleave(tokens_per_frame, dim=1)
        proj = proj.unflatten(2, (6, -1)).repeat_interleave(tokens_per_frame, dim=1)
        return temb, proj, ehs, ehs_img

    def _condition(self, name: str, layer: nn.Linear | None, maps: torch.Tensor, expect: tuple[int, ...],
                   dtype: torch.dtype) -> torch.Tensor:
        """Token features of a per-frame conditioning map through its (zero-initialised) layer."""
        if layer is None:
            which = "geometry layer (geometry_channels" if name == "geometry" else "camera layer (camera_channels"
            raise ValueError(f"{name} given but this transformer has no {which}=None)")
        if tuple(maps.shape) != expect:
            raise ValueError(f"{name} must be maps on the latent grid {expect}, got {tuple(maps.shape)}")
        return layer(self.patchify_camera(maps.to(dtype)))

    # ------------------------------------------------------------------ public API
    def _check_latents(self, x: torch.Tensor, name: str) -> None:
        if x.ndim != 5:
            raise ValueError(f"{name} must be (B, C, F, H, W) latents, got shape {tuple(x.shape)}")
        if x.shape[1] != self.config.in_channels:
            raise ValueError(f"{name} has {x.shape[1]} channels but the transformer expects "
                             f"in_channels={self.config.in_channels}: encode frames with the pipeline's codec")
        p_t, p_h, p_w = self.config.patch_size
        if x.shape[2] % p_t or x.shape[3] % p_h or x.shape[4] % p_w:
            raise ValueError(f"{name} frames/height/width {tuple(x.shape[2:])} must be multiples of the patch size "
                             f"{tuple(self.config.patch_size)}")

    @torch.no_grad()
    def build_context_cache(self, context_latents: torch.Tensor, encoder_hidden_states: torch.Tensor,
                            frame_positions: torch.Tensor | None = None,
                            context_camera: torch.Tensor | None = None) -> ContextCache:
        """Run the clean context alone through every block once (t = 0, context attends to context)
        and keep each block's keys/values. Only valid with context_attention="one_way"."""
        if self.config.context_attention != "one_way":
            raise ValueError("the context cache needs context_attention='one_way' (with 'full' attention the "
                             "context tokens also attend to the noisy targets, so they change every step)")
        self._check_latents(context_latents, "context_latents")
        b, _, f, h, w = context_latents.shape
        p_t, p_h, p_w = self.config.patch_size
        pph, ppw = h // p_h, w // p_w
        nf = f // p_t
        if frame_positions is None:
            frame_positions = torch.arange(nf)
        rotary_emb = self.rotary_embedding(frame_positions, pph, ppw)
        x = self.patch_embedding(context_latents).flatten(2).transpose(1, 2).contiguous()
        if context_camera is not None:
            x = x + self._condition("context_camera", self.camera_embedding, context_camera, (b, 6, f, h, w), x.dtype)
        ts = torch.zeros(b, nf, device=x.device)
        _, temb, ehs, _ = self._embed_conditions(ts, encoder_hidden_states, pph * ppw, x.shape[1], None)
        keys, values = [], []
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x, (k, v) = block(x, ehs, temb, rotary_emb, return_kv=True, kv_only=(i == last))
            keys.append(k)
            values.append(v)
        return ContextCache(keys=keys, values=values, num_frames=nf, batch_size=b)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        frame_positions: torch.Tensor | None = None,
        num_context_frames: int = 0,
        camera: torch.Tensor | None = None,
        context_cache: ContextCache | None = None,
        context_camera: torch.Tensor | None = None,
        geometry: torch.Tensor | None = None,
        encoder_hidden_states_image: torch.Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor | Transformer2DModelOutput:
        """Predict the flow for the target frames.

        hidden_states: (B, C, Fc + Ft, H, W) clean context latents followed by noisy target latents
            (just the Ft target latents when `context_cache` is given).
        timestep: (B,) target noise level (context frames get 0 automatically), or (B, F)/(B, L) as in Wan.
        frame_positions: (F,) or (B, F) temporal RoPE positions of the latent frames in hidden_states
            (default 0..F-1).
        camera: (B, 6, Ft, H, W) Plücker maps of the target frames on the latent grid, or None.
        context_camera: (B, 6, Fc, H, W) Plücker maps of the context frames (relative to the current
            view), through the camera layer, or None (the paper's pose-free context). With a cache it
            went into `build_context_cache` instead.
        geometry: (B, geometry_channels, Ft, H, W) geometry prior of the target frames, or None.
        Returns the prediction for the Ft target frames only: (B, C_out, Ft, H, W).
        """
        self._check_latents(hidden_states, "hidden_states")
        b, _, f, h, w = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        nf, pph, ppw = f // p_t, h // p_h, w // p_w
        tpf = pph * ppw
        one_way = self.config.context_attention == "one_way"
        if context_cache is not None:
            if not one_way:
                raise ValueError("context_cache given but context_attention='full'; build the model with "
                                 "context_attention='one_way' or call without a cache")
            if num_context_frames:
                raise ValueError("with a context_cache, hidden_states holds only the target latents: pass num_context_frames=0")
            if context_cache.batch_size != b:
                raise ValueError(f"context cache was built for batch {context_cache.batch_size}, got batch {b}")
        if not 0 <= num_context_frames < nf:
            raise ValueError(f"num_context_frames={num_context_frames} must leave at least one target frame (F={nf})")
        nc = num_context_frames
        if frame_positions is None:
            frame_positions = torch.arange(nf)
        frame_positions = torch.as_tensor(frame_positions)
        if frame_positions.shape[-1] != nf:
            raise ValueError(f"frame_positions has {frame_positions.shape[-1]} entries, hidden_states has {nf} latent frames")

        timestep = torch.as_tensor(timestep, device=hidden_states.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(b)
        # With a cache every token here is a target at the same noise level, so the cheap per-sample
        # modulation path applies (broadcast over tokens). Otherwise context frames are clean (t = 0)
        # and targets noisy: Wan's per-token path.
        if timestep.ndim == 1 and nc > 0:
            timestep = torch.cat([timestep.new_zeros(b, nc), timestep[:, None].expand(b, nf - nc)], dim=1)

        rotary_emb = self.rotary_embedding(frame_positions, pph, ppw)
        x = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()
        nt_shape = (b, 6, f - nc * p_t, h, w)
        add = torch.zeros_like(x[:, nc * tpf:]) if camera is not None or geometry is not None else None
        if camera is not None:
            add = add + self._condition("camera", self.camera_embedding, camera, nt_shape, x.dtype)
        if geometry is not None:
            g_shape = (b, self.config.geometry_channels or 0, f - nc * p_t, h, w)
            add = add + self._condition("geometry", self.geometry_embedding, geometry, g_shape, x.dtype)
        ctx_add = None
        if context_camera is not None:
            if context_cache is not None:
                raise ValueError("with a context_cache the context cameras go into build_context_cache")
            ctx_add = self._condition("context_camera", self.camera_embedding, context_camera, (b, 6, nc * p_t, h, w),
                                      x.dtype)
        if add is not None or ctx_add is not None:
            head, tail = x[:, : nc * tpf], x[:, nc * tpf:]
            x = torch.cat([head if ctx_add is None else head + ctx_add, tail if add is None else tail + add], dim=1)

        temb, timestep_proj, ehs, ehs_img = self._embed_conditions(
            timestep, encoder_hidden_states, tpf, x.shape[1], encoder_hidden_states_image)
        if ehs_img is not None:
            ehs = torch.concat([ehs_img, ehs], dim=1)

        plain = context_cache is None and not (one_way and nc > 0)
        if plain:
            # exactly the stock block loop (full attention, no cache)
            for block in self.blocks:
                if torch.is_grad_enabled() and self.gradient_checkpointing:
                    x = self._gradient_checkpointing_func(block, x, ehs, timestep_proj, rotary_emb)
                else:
                    x = block(x, ehs, timestep_proj, rotary_emb)
        else:
            mask = None
            if context_cache is None:
                # one_way: context queries see only context keys; target queries see everything
                lc = nc * tpf
                mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device)
                mask[:lc, lc:] = False
            for i, block in enumerate(self.blocks):
                prefix = None
                if context_cache is not None:
                    prefix = (context_cache.keys[i], context_cache.values[i])
                if torch.is_grad_enabled() and self.gradient_checkpointing:
                    x = self._gradient_checkpointing_func(block, x, ehs, timestep_proj, rotary_emb, mask, prefix)
                else:
                    x = block(x, ehs, timestep_proj, rotary_emb, attention_mask=mask, kv_prefix=prefix)

        if temb.ndim == 3:
            shift, scale = (self.scale_shift_table.unsqueeze(0).to(temb.device) + temb.unsqueeze(2)).chunk(2, dim=2)
            shift, scale = shift.squeeze(2), scale.squeeze(2)
        else:
            shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        # only the target tokens are decoded: the context is input, not output
        lc = nc * tpf
        if lc:
            x = x[:, lc:]
            if shift.ndim == 3 and shift.shape[1] > 1:
                shift, scale = shift[:, lc:], scale[:, lc:]
        x = (self.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
        x = self.proj_out(x)
        nt = nf - nc
        x = x.reshape(b, nt, pph, ppw, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        output = x.flatten(6, 7).flatten(4, 5).flatten(2, 3)
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)


def _zero_linear(n_in: int, n_out: int, **kw: Any) -> nn.Linear:
    layer = nn.Linear(n_in, n_out, **kw)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def wan22_ti2v_5b_config(**overrides: Any) -> dict[str, Any]:
    """Transformer config of Wan2.2-TI2V-5B (diffusers scripts/convert_wan_to_diffusers.py)."""
    cfg = dict(
        patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48, out_channels=48,
        text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
    )
    cfg.update(overrides)
    return cfg


def count_parameters(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
