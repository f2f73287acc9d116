"""Text encoders: offline MiniLM (tiny model) and UMT5 from a local Wan-layout folder."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.pipeline import shared_minilm
from models.text_encoders import UMT5TextEncoder, load_text_encoder

torch.set_num_threads(2)


def _pool(e: torch.Tensor) -> torch.Tensor:
    n = (e.abs().sum(-1) > 0).sum()
    return e.sum(0) / n


def test_minilm_zero_padded_cached_and_semantic():
    te = shared_minilm()
    e = te.encode(["a sofa", "a couch", "a toilet", ""])
    assert e.shape == (4, 32, 384) and te.dim == 384
    assert (e[0].abs().sum(-1) > 0).sum() == 4  # [CLS] a sofa [SEP]; padding rows are exactly zero
    assert torch.count_nonzero(e[0, 4:]) == 0
    # unseen words land near seen ones: "couch" is closer to "sofa" than "toilet" is
    sim = lambda a, b: F.cosine_similarity(_pool(e[a]), _pool(e[b]), dim=0)  # noqa: E731
    assert sim(0, 1) > sim(0, 2) + 0.1
    assert "a couch" in te._cache
    torch.testing.assert_close(te.encode("a couch")[0], e[1])
    with pytest.raises(TypeError, match="strings"):
        te.encode([None])


def test_umt5_from_local_wan_folder(tmp_path):
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

    minilm = shared_minilm()  # a real tokenizer stands in for the UMT5 sentencepiece one
    tok = minilm.tokenizer
    cfg = UMT5Config(vocab_size=tok.vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
    torch.manual_seed(0)
    UMT5EncoderModel(cfg).save_pretrained(tmp_path / "text_encoder")
    tok.save_pretrained(tmp_path / "tokenizer")
    te = UMT5TextEncoder.from_pretrained(tmp_path, max_length=16)
    e = te.encode(["find the sofa", ""])
    assert e.shape == (2, 16, 32) and te.dim == 32
    n_tokens = len(AutoTokenizer.from_pretrained(tmp_path / "tokenizer")("find the sofa").input_ids)
    assert torch.count_nonzero(e[0, n_tokens:]) == 0 and torch.count_nonzero(e[0, :n_tokens]) > 0
    with pytest.raises(FileNotFoundError, match="text_encoder"):
        UMT5TextEncoder.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown text encoder"):
        load_text_encoder("clip")


def test_minilm_loads_without_a_second_progress_bar(capfd):
    """The run's stderr has one progress bar: the tiny encoder's load draws none, and leaves transformers'
    own setting as it was for other loads."""
    from transformers.utils import logging as hf_logging

    from models.text_encoders import MiniLMTextEncoder

    hf_logging.enable_progress_bar()
    capfd.readouterr()
    MiniLMTextEncoder()
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()
