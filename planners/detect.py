"""Detectors: where the target is in the current view, as a box (the "detect" step of
observe -> remember -> imagine -> read back -> detect -> plan -> act).

`DETECTORS` is the registry. A detector is a class built from its config dataclass with
`reset(episode)` at the start of an episode and `__call__(obs) -> Box2D | None` per step. To add one,
define both in a module and call `DETECTORS.register(name, DetectorClass, DetectorConfig)` there
(in this package, or in a `v4s_plugin_*` module outside it); `make_detector(name)` builds it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from envs.registry import Registry
from envs.types import Box2D, Episode, Observation


class Detector(Protocol):
    def reset(self, episode: Episode) -> None: ...

    def __call__(self, obs: Observation) -> Box2D | None: ...


def semantic_box(semantic: np.ndarray | None, instance_ids: tuple[int, ...], min_pixels: int = 6) -> Box2D | None:
    """Box around the target's pixels in an instance-id image (simulators only)."""
    if semantic is None or not instance_ids:
        return None
    mask = np.isin(semantic, np.asarray(instance_ids))
    if int(mask.sum()) < min_pixels:
        return None
    ys, xs = np.nonzero(mask)
    return Box2D(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1), 1.0, "target")


@dataclass
class SemanticDetectorConfig:
    min_pixels: int = 6  # fewer target pixels are noise at the frame border


class SemanticDetector:
    """The simulator's instance-id image tells the target's pixels (embedded world, Habitat with semantics)."""

    def __init__(self, cfg: SemanticDetectorConfig | None = None) -> None:
        self.cfg = cfg or SemanticDetectorConfig()
        self._targets: tuple[int, ...] = ()

    def reset(self, episode: Episode) -> None:
        self._targets = tuple(episode.target_instance_ids)

    def __call__(self, obs: Observation) -> Box2D | None:
        return semantic_box(obs.semantic, self._targets, self.cfg.min_pixels)


DETECTORS = Registry("detector", key="detector")
DETECTORS.register("semantic", SemanticDetector, SemanticDetectorConfig)


def make_detector(name: str, cfg: Any = None) -> Detector:
    """The detector registered as `name`, with `cfg` (its config dataclass; defaults when None)."""
    entry = DETECTORS.get(name)
    return entry.load()(cfg if cfg is not None else entry.config_class()())
