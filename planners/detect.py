"""Detectors: where the target is in the current view, as a box (the "detect" step of
observe -> remember -> imagine -> read back -> detect -> plan -> act).

One swappable component (`detector=NAME`), used by every planner that must see the target (explore's
approach and stop, imagine's stop and belief, grounding's stop when asked):

- `semantic`: the simulator's instance segmentation. This is *oracle detection*: it isolates what
  imagination adds to navigation. Built for a backend without a semantic sensor (a camera rig), it
  refuses at start with one line naming `detector=imagination`.
- `imagination`: the model's own grounding used as a detector (Video4Spatial's notion of grounding):
  a grounding rollout from the current view fires when its box frames show a confident red box and
  its read-back camera path is (nearly) zero, i.e. the imagination says "the target is right here",
  in at least `min_votes` of its samples with the same box (independently seeded samples agree: a
  weak model's box that follows its noise rather than the view does not fire). The box's pixels that
  stand above the floor (by the current depth) are its mask, so the stop rule measures the range to
  an object, not to the floor in front of it. It works on every backend.

`DETECTORS` is the registry. A detector is a class built from (its config dataclass, env,
imagination) with `reset(episode, obs)` at the start of an episode and `__call__(obs, memory, video)
-> Box2D | None` per step. To add one, define both in a module and call
`DETECTORS.register(name, DetectorClass, DetectorConfig)` there (in this package, or in a
`v4s_plugin_*` module outside it); `make_detector(name, cfg, env=..., imagination=...)` builds it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from envs.config import check
from envs.registry import Registry
from envs.types import Box2D, Episode, Observation
from models.types import Imagination, ImaginedVideo

if TYPE_CHECKING:
    from models.memory import Memory


class Detector(Protocol):
    name: str
    oracle: bool  # True when it reads simulator ground truth (labelled "oracle detection")

    def reset(self, episode: Episode, obs: Observation | None = None) -> None: ...

    def __call__(self, obs: Observation, memory: Memory | None = None, video: ImaginedVideo | None = None) -> Box2D | None:
        """The target's box in `obs` pixels, or None. `video`: a grounding rollout already imagined
        from this view (the imagination detector then reads it instead of imagining again)."""
        ...


def has_semantic_sensor(env: Any) -> bool:
    """Whether the backend renders instance ids (embedded: render_semantic; habitat: semantic)."""
    if hasattr(env, "has_semantic"):
        return bool(env.has_semantic)
    cfg = getattr(env, "cfg", None) or getattr(env, "config", None)
    return bool(getattr(cfg, "render_semantic", False) or getattr(cfg, "semantic", False))


def semantic_box(semantic: np.ndarray | None, instance_ids: tuple[int, ...], min_pixels: int = 6) -> Box2D | None:
    """Box around the target's pixels in an instance-id image (simulators only)."""
    if semantic is None or not instance_ids:
        return None
    mask = np.isin(semantic, np.asarray(instance_ids))
    if int(mask.sum()) < min_pixels:
        return None
    ys, xs = np.nonzero(mask)
    return Box2D(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1), 1.0, "target", mask=mask)


@dataclass
class SemanticDetectorConfig:
    name: str = "semantic"
    min_pixels: int = 6  # fewer target pixels are noise at the frame border


class SemanticDetector:
    """Oracle detection: the simulator's instance-id image tells the target's pixels (embedded
    world, Habitat with semantics)."""

    name = "semantic"
    oracle = True

    def __init__(self, cfg: SemanticDetectorConfig | None = None, env: Any = None, imagination: Any = None) -> None:
        from planners.base import PlannerError

        if env is not None and not has_semantic_sensor(env):
            raise PlannerError(f"detector=semantic needs a semantic sensor, which {type(env).__name__} has not; use detector=imagination")
        self.cfg = cfg or SemanticDetectorConfig()
        self._targets: tuple[int, ...] = ()

    def reset(self, episode: Episode, obs: Observation | None = None) -> None:
        self._targets = tuple(episode.target_instance_ids)

    def __call__(self, obs: Observation, memory: Memory | None = None, video: ImaginedVideo | None = None) -> Box2D | None:
        return semantic_box(obs.semantic, self._targets, self.cfg.min_pixels)


@dataclass
class ImaginationDetectorConfig:
    """Samples per rollout, the box confidence it needs, how short the read-back path must be to count
    as "the target is here", and how many samples must agree on the box."""

    name: str = "imagination"
    num_samples: int = 2
    min_box_score: float = 0.3
    near_translation: float = 0.3  # metres
    readback: str = "flow"  # a name of planners.readback.READBACKS (true: poses an oracle imagination reports)
    context_frames: int = 8
    min_votes: int = 1  # samples whose boxes agree (IoU >= agree_iou) before it fires; <= num_samples
    agree_iou: float = 0.5
    min_object_share: float = 0.0  # share of the box's pixels that must stand above the floor (by depth), else no fire

    def __post_init__(self) -> None:
        from planners.readback import READBACKS

        check(self.num_samples >= 1, f"detector.num_samples must be >= 1, got {self.num_samples}")
        check(0.0 <= self.min_box_score <= 1.0, f"detector.min_box_score must be in [0, 1], got {self.min_box_score}")
        check(self.near_translation > 0, f"detector.near_translation must be > 0 metres, got {self.near_translation}")
        check(self.readback in READBACKS, f"detector.readback must be one of {READBACKS.names()}, got {self.readback!r}")
        check(1 <= self.min_votes <= self.num_samples, f"detector.min_votes must be in [1, num_samples={self.num_samples}], got {self.min_votes}")
        check(0.0 < self.agree_iou <= 1.0, f"detector.agree_iou must be in (0, 1], got {self.agree_iou}")
        check(0.0 <= self.min_object_share <= 1.0, f"detector.min_object_share must be in [0, 1], got {self.min_object_share}")


class ImaginationDetector:
    """The model's grounding as a detector: fires on a rollout from the current view whose box frames
    show a confident red box and whose read-back path is (nearly) zero, in `min_votes` samples that
    agree on the box. Returns the best-supported such box (ties: the higher score), scaled to
    observation pixels."""

    name = "imagination"
    oracle = False

    def __init__(self, cfg: ImaginationDetectorConfig | None = None, env: Any = None, imagination: Imagination | None = None) -> None:
        from envs.base import intrinsics_of
        from envs.geometry import intrinsics_from_hfov
        from planners.base import PlannerError

        if imagination is None:
            raise PlannerError("detector=imagination needs an imagination; pick model=tiny (or model=oracle_noisy), "
                               "or detector=semantic on a simulator")
        self.cfg = cfg or ImaginationDetectorConfig()
        self.imagination = imagination
        self.K_img = intrinsics_from_hfov(env.hfov_deg, imagination.width, imagination.height)
        self.K_obs = intrinsics_of(env)
        # the camera's height above the floor: with depth, it tells the box's object pixels from floor
        self.camera_height: float | None = getattr(getattr(env, "cfg", None), "sensor_height", None)
        self._instruction = ""
        self._calls = 0

    def reset(self, episode: Episode, obs: Observation | None = None) -> None:
        from planners.grounding import instruction_for

        self._instruction = instruction_for(episode, obs) if obs is not None else instruction_for(episode, Observation(np.zeros((1, 1, 3), np.uint8)))
        self._calls = 0

    def imagine(self, memory: Memory) -> ImaginedVideo | None:
        """One grounding rollout from the current view (None when the imagination fails)."""
        from planners.base import check_video

        img = self.imagination
        ctx = memory.select_context(min(self.cfg.context_frames, memory.cfg.max_context), size=(img.height, img.width))
        self._calls += 1
        try:
            video = img.ground(ctx, self._instruction, num_samples=self.cfg.num_samples, seed=self._calls)
        except KeyboardInterrupt:
            raise
        except Exception:  # a model fault means "not seen", never a crashed episode
            return None
        return None if check_video(video, img.height, img.width) else video

    def __call__(self, obs: Observation, memory: Memory | None = None, video: ImaginedVideo | None = None) -> Box2D | None:
        if video is None:
            video = self.imagine(memory) if memory is not None else None
            if video is None:
                return None
        return self.box_of(video, obs)

    def box_of(self, video: ImaginedVideo, obs: Observation) -> Box2D | None:
        from models.red_box import detect_red_box
        from planners.base import path_length_xz
        from planners.grounding import read_back_path

        here: list[Box2D] = []  # samples that say "the target is right here"
        for s, frames in enumerate(video.frames):
            box = detect_red_box(frames, min_confidence=self.cfg.min_box_score)
            if box is None:
                continue
            try:
                path = read_back_path(self.cfg.readback, frames, obs.depth, self.K_img, video, s)
            except ValueError:
                continue
            if np.all(np.isfinite(path.poses_rel)) and path_length_xz(path.poses_rel) <= self.cfg.near_translation:
                here.append(box)
        votes = [(sum(b.iou(o) >= self.cfg.agree_iou for o in here), b.score, i) for i, b in enumerate(here)]
        if not votes or max(votes)[0] < self.cfg.min_votes:
            return None
        best = here[max(votes)[2]]
        H, W = obs.rgb.shape[:2]
        return self.object_pixels(best.scaled(W / self.imagination.width, H / self.imagination.height), obs)

    def object_pixels(self, box: Box2D, obs: Observation) -> Box2D | None:
        """`box` with a mask of its pixels that stand above the floor by the current depth (the stop
        rule then measures the range to those, not to the floor in front of them); None when fewer
        than `min_object_share` of its pixels do (a box on bare floor frames no object). Unchanged
        without depth or a known camera height."""
        from envs.geometry import backproject_depth, pose_to_matrix

        if obs.depth is None or self.camera_height is None or obs.depth.shape != obs.rgb.shape[:2]:
            return box
        H, W = obs.depth.shape
        x0, x1, y0, y1 = box.pixel_bounds(W, H)
        pts = backproject_depth(obs.depth.astype(np.float32), self.K_obs)[y0:y1, x0:x1]
        R = pose_to_matrix(obs.pose)[:3, :3] if obs.pose is not None else np.eye(3)
        height = self.camera_height + pts.reshape(-1, 3) @ R[1]  # world up component of each point, from the floor
        d = obs.depth[y0:y1, x0:x1].reshape(-1)
        above = (height > OBJECT_MIN_HEIGHT) & np.isfinite(d) & (d > 0)
        if above.sum() < max(3, self.cfg.min_object_share * len(above)):
            return None
        mask = np.zeros((H, W), dtype=bool)
        mask[y0:y1, x0:x1] = above.reshape(y1 - y0, x1 - x0)
        return Box2D(box.x0, box.y0, box.x1, box.y1, box.score, box.label, box.instance_id, mask=mask)


OBJECT_MIN_HEIGHT = 0.1  # metres above the floor from which a box's pixel counts as object, not floor

DETECTORS = Registry("detector", key="detector")
DETECTORS.register("semantic", SemanticDetector, SemanticDetectorConfig)
DETECTORS.register("imagination", ImaginationDetector, ImaginationDetectorConfig)


def make_detector(name: str, cfg: Any = None, *, env: Any = None, imagination: Imagination | None = None) -> Detector:
    """The detector registered as `name`, with `cfg` (its config dataclass; defaults when None),
    for `env` (checked: semantic needs a semantic sensor) and `imagination` (the imagination detector's)."""
    entry = DETECTORS.get(name)
    return entry.load()(cfg if cfg is not None else entry.config_class()(), env, imagination)
