"""The auxiliary red box (paper Fig. 3), both sides of the convention: drawn on the target in the
trailing frames of training clips (`draw_red_box`), and read back from the last frames of an imagined
video (`detect_red_box`).

The generator draws it imperfectly (blurred, off-colour, broken edges), so detection is a colour
mask followed by a rectangle-*outline* test: each side of the candidate's bounding rectangle must
be covered by red while its interior stays free of red. A filled red blob or scattered red pixels
score low. Finding no box is a normal outcome (returns None), not an error.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from envs.config import check_at_least
from envs.types import Box2D

# Pure red outline drawn on the target in the trailing frames.
# The embedded world never uses saturated red in textures or objects, so the colour is unambiguous.
RED_BOX_RGB = (255, 0, 0)


def red_box_thickness(height: int, width: int) -> int:
    """Outline thickness in pixels: 2 px at 64x64, 4 px at 128x128."""
    return max(1, round(min(height, width) / 32))


def redness(frame: np.ndarray) -> np.ndarray:
    """(..., H, W) float32 in [0, 1] for (..., H, W, 3) RGB: how much red dominates the other channels. A hue-free measure so
    dark or washed-out reds still count, while greys, whites and skin tones stay low."""
    f = frame.astype(np.float32)
    return np.clip((f[..., 0] - np.maximum(f[..., 1], f[..., 2])) / 255.0, 0.0, 1.0)


def draw_red_box(frame: np.ndarray, box: np.ndarray | tuple[float, float, float, float]) -> np.ndarray:
    """Copy of `frame` (H, W, 3) uint8 with a red rectangle outline on box = (x0, y0, x1, y1) pixels
    (x1, y1 exclusive). Boxes are clipped to the image."""
    H, W = frame.shape[:2]
    t = red_box_thickness(H, W)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1 = max(0, min(x0, W - 1)), max(1, min(x1, W))
    y0, y1 = max(0, min(y0, H - 1)), max(1, min(y1, H))
    out = frame.copy()
    red = np.array(RED_BOX_RGB, dtype=np.uint8)
    out[y0 : min(y0 + t, y1), x0:x1] = red
    out[max(y1 - t, y0) : y1, x0:x1] = red
    out[y0:y1, x0 : min(x0 + t, x1)] = red
    out[y0:y1, max(x1 - t, x0) : x1] = red
    return out


@dataclass(frozen=True)
class BoxDetectConfig:
    """Thresholds for red-box detection; defaults were tuned on simulator frames (tests/test_readback_box.py)."""

    redness_threshold: float = 0.4  # (r - max(g, b)) / 255 above which a pixel counts as red
    min_side_px: int = 4  # smaller rectangles cannot be told from a red dot
    close_px: int = 3  # morphological closing bridges small breaks in the outline
    num_last: int = 4  # how many trailing frames to look at (tiny default: 4 box frames of 20)

    def __post_init__(self) -> None:
        if not (0.0 < self.redness_threshold < 1.0):
            raise ValueError(f"redness_threshold must be in (0, 1), got {self.redness_threshold}")
        check_at_least(self, min_side_px=2, close_px=1, num_last=1)


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (F, H, W, 3) or (H, W, 3) RGB, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB (0-255), got {frames.dtype}; convert with (x * 255).astype(np.uint8)")
    if len(frames) == 0:
        raise ValueError("frames is empty; pass at least one frame")
    return frames


def _outline_score(mask: np.ndarray, red: np.ndarray, x0: int, y0: int, x1: int, y1: int, band: int) -> float:
    """Confidence that mask[y0:y1, x0:x1] is a rectangle outline: side coverage x empty interior x colour."""
    sub = mask[y0:y1, x0:x1]
    h, w = sub.shape
    b = min(band, h // 2, w // 2)
    sides = [
        sub[:b, :].any(axis=0).mean(),  # top: share of columns with red in the top band
        sub[h - b :, :].any(axis=0).mean(),
        sub[:, :b].any(axis=1).mean(),
        sub[:, w - b :].any(axis=1).mean(),
    ]
    coverage = float(np.mean(sides)) * min(1.0, float(min(sides)) / 0.4)  # a missing side is not a box
    inner = sub[b + 1 : h - b - 1, b + 1 : w - b - 1]
    fill = float(inner.mean()) if inner.size else 1.0
    ring = sub.copy()
    ring[b : h - b, b : w - b] = False
    colour = float(red[y0:y1, x0:x1][ring].mean()) if ring.any() else 0.0
    return coverage * max(0.0, 1.0 - 2.0 * fill) * min(1.0, colour / 0.45)


def detect_red_box_frame(frame: np.ndarray, cfg: BoxDetectConfig | None = None) -> Box2D | None:
    """Best red rectangle outline in one (H, W, 3) uint8 frame, score in [0, 1], or None."""
    cfg = cfg or BoxDetectConfig()
    frame = _check_frames(frame)[0]
    H, W = frame.shape[:2]
    red = redness(frame)
    mask = (red >= cfg.redness_threshold).astype(np.uint8)
    if mask.sum() < 2 * cfg.min_side_px:
        return None
    closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((cfg.close_px, cfg.close_px), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    cands = [tuple(int(v) for v in stats[i, :4]) for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= cfg.min_side_px]
    if len(cands) > 1:  # an outline broken in two places falls apart; try the union too
        xs0, ys0 = min(c[0] for c in cands), min(c[1] for c in cands)
        xs1, ys1 = max(c[0] + c[2] for c in cands), max(c[1] + c[3] for c in cands)
        cands.append((xs0, ys0, xs1 - xs0, ys1 - ys0))
    band = red_box_thickness(H, W) + 1
    best: Box2D | None = None
    m = mask.astype(bool)
    for x, y, w, h in cands:
        if w < cfg.min_side_px or h < cfg.min_side_px:
            continue
        s = _outline_score(m, red, x, y, x + w, y + h, band)
        if best is None or s > best.score:
            best = Box2D(float(x), float(y), float(x + w), float(y + h), score=float(np.clip(s, 0.0, 1.0)), label="red_box")
    return best


def box_scores(frames: np.ndarray, cfg: BoxDetectConfig | None = None) -> np.ndarray:
    """(F,) per-frame red-box confidence (0 where none) — tells the box frames from the path frames."""
    frames = _check_frames(frames)
    out = np.zeros(len(frames))
    for i, f in enumerate(frames):
        b = detect_red_box_frame(f, cfg)
        out[i] = b.score if b is not None else 0.0
    return out


def detect_red_box(frames: np.ndarray, min_confidence: float = 0.35, cfg: BoxDetectConfig | None = None) -> Box2D | None:
    """The red box in the trailing frames of a video ((F, H, W, 3) or one (H, W, 3) frame).

    Looks at the last `cfg.num_last` frames, keeps the best detection and those agreeing with it
    (IoU > 0.5), and returns their coordinate-wise median with their mean score. None when no
    frame has an outline scoring at least `min_confidence`.
    """
    if not (0.0 <= min_confidence <= 1.0):
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
    cfg = cfg or BoxDetectConfig()
    frames = _check_frames(frames)[-cfg.num_last :]
    dets = [d for d in (detect_red_box_frame(f, cfg) for f in frames) if d is not None and d.score >= min_confidence]
    if not dets:
        return None
    top = max(dets, key=lambda d: d.score)
    agree = [d for d in dets if d.iou(top) > 0.5]
    c = np.median([[d.x0, d.y0, d.x1, d.y1] for d in agree], axis=0)
    score = float(np.mean([d.score for d in agree]))
    return Box2D(float(c[0]), float(c[1]), float(c[2]), float(c[3]), score=score, label="red_box")
