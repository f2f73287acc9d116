"""models: the Video4Spatial imagination (diffusers Wan), codecs, text encoders, trainer, clip shards.

Heavy imports are lazy (PEP 562) so `models.types` stays cheap for planners, while
`from models import ImaginationPipeline` (and diffusers' class lookup by library name) still work.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "ImaginationPipeline": "models.pipeline",
    "ImaginationConfig": "models.pipeline",
    "load_default_pipeline": "models.pipeline",
    "tiny_pipeline": "models.pipeline",
    "V4STransformer": "models.transformer",
    "TinyAutoencoder": "models.codecs",
    "WanVAECodec": "models.codecs",
    "MiniLMTextEncoder": "models.text_encoders",
    "UMT5TextEncoder": "models.text_encoders",
    "ClipDataset": "models.clipstore",
    "write_shard": "models.clipstore",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
