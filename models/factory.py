"""Model registry + factory: `make_imagination(cfg)` loads the imagination named by `model=`.

`tiny`: the shipped checkpoint; `random`: a random-init tiny pipeline (tests, wiring checks); `none`:
planners that never imagine (explore; the oracle renders its own); `remote`: an imagination server
(`python -m v4s_agent.serve`, client in models/remote.py). Add one with
`MODELS.register(name, loader, config_cls)`, where loader(cfg) returns an `Imagination` (models.types).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.config import check
from envs.registry import Registry
from models.types import GROUNDING_PATHS


class ModelUnavailableError(RuntimeError):
    """The imagination cannot be loaded (missing checkpoint, broken install): one line with the fix."""


@dataclass
class ModelConfig:
    """Which imagination to load, and how to sample from it."""

    name: str = "tiny"
    checkpoint: str = "models/checkpoints/v4s-tiny"
    num_inference_steps: int | None = None  # None: the checkpoint's default
    seed: int = 0
    # None: the checkpoint's own; "model" | "head": how grounding paths are made (models.pipeline.ImaginationConfig)
    grounding_path: str | None = None

    def __post_init__(self) -> None:
        check(self.name in MODELS, f"unknown model {self.name!r}; choose one of {MODELS.names()} (model=NAME)")
        check(self.num_inference_steps is None or self.num_inference_steps >= 1, "model.num_inference_steps must be >= 1 (or null for the default)")
        check(self.grounding_path in (None, *GROUNDING_PATHS),
              f"model.grounding_path must be one of {list(GROUNDING_PATHS)} (or null for the checkpoint's own), "
              f"got {self.grounding_path!r}")


def resolve_checkpoint(path: str) -> Path:
    """A relative checkpoint path is looked up from the working directory first, then from the
    install root, so the shipped `models/checkpoints/v4s-tiny` works from any directory."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    installed = Path(__file__).resolve().parent.parent / p
    return installed if installed.exists() else p


def _pipeline_module() -> Any:
    try:
        from models import pipeline
    except ImportError as e:
        raise ModelUnavailableError(f"models.pipeline cannot be imported ({e}); use a planner without imagination (planner=explore|oracle)") from None
    return pipeline


def _settings(model: ModelConfig) -> dict[str, Any]:
    """The ImaginationConfig fields `model` overrides."""
    out: dict[str, Any] = {} if model.num_inference_steps is None else {"num_inference_steps": int(model.num_inference_steps)}
    if model.grounding_path is not None:
        out["grounding_path"] = model.grounding_path
    return out


def load_checkpoint(model: ModelConfig) -> Any:
    """The trained pipeline saved at `model.checkpoint`."""
    ckpt = resolve_checkpoint(model.checkpoint)
    if not ckpt.exists():
        raise ModelUnavailableError(f"checkpoint {ckpt} not found; train it (see README) or pass model=random / planner=oracle|explore")
    mp = _pipeline_module()
    try:
        return mp.load_default_pipeline(path=str(ckpt), **_settings(model))
    except (FileNotFoundError, OSError, ValueError) as e:
        raise ModelUnavailableError(f"cannot load checkpoint {ckpt}: {str(e).splitlines()[0]}") from None


def random_pipeline(model: ModelConfig) -> Any:
    """A random-init tiny pipeline: its videos are noise, its shapes and timings are real."""
    try:
        return _pipeline_module().tiny_pipeline(model.seed, **_settings(model))
    except ValueError as e:  # e.g. grounding_path=head: a random pipeline has no path head
        raise ModelUnavailableError(f"model=random: {str(e).splitlines()[0]}") from None


def no_imagination(model: ModelConfig) -> None:
    return None


MODELS = Registry("model", key="model")
MODELS.register("tiny", load_checkpoint, ModelConfig)
MODELS.register("random", random_pipeline, ModelConfig)
MODELS.register("none", no_imagination, ModelConfig)
MODELS.register("remote", "models.remote.load_remote", "models.remote.RemoteModelConfig")  # python -m v4s_agent.serve


def make_imagination(model: ModelConfig) -> Any:
    """The imagination named by `model.name` (None for `none`)."""
    return MODELS.get(model.name).load()(model)
