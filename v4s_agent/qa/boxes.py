"""Box normalisation to integer [0, 1000] coordinates and the paper's object-level filters.

World2VLM keeps detections with confidence >= 0.3, NMS IoU 0.5, area ratio in [0.01, 0.6] and a 1%
border margin. Our boxes come from instance segmentation (one box per instance, score 1.0), so NMS
never has anything to suppress; confidence, area and margin are applied as written.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from envs.types import Box2D

NormBox = tuple[int, int, int, int]
_BOX_RE = re.compile(r"\[\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)\s*\]")


def normalise(box: Box2D, width: int, height: int) -> NormBox:
    """Pixel box (x1, y1 exclusive) -> integer [x1, y1, x2, y2] in [0, 1000]."""
    s = np.array([box.x0 / width, box.y0 / height, box.x1 / width, box.y1 / height]) * 1000.0
    return tuple(int(v) for v in np.clip(np.round(s), 0, 1000))  # type: ignore[return-value]


def box_text(b: NormBox) -> str:
    return f"[{b[0]}, {b[1]}, {b[2]}, {b[3]}]"


def parse_boxes(text: str) -> list[NormBox]:
    """All '[x1, y1, x2, y2]' integer boxes in a string, in order."""
    return [tuple(int(g) for g in m.groups()) for m in _BOX_RE.finditer(text)]  # type: ignore[misc]


def box_is_valid(b: NormBox) -> bool:
    return len(b) == 4 and all(0 <= v <= 1000 for v in b) and b[0] < b[2] and b[1] < b[3]


def iou(a: NormBox, b: NormBox) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class BoxFilter:
    """The paper's object-level filter, in normalised coordinates."""

    min_area: float = 0.01
    max_area: float = 0.6
    border: float = 0.01
    min_score: float = 0.3

    def __post_init__(self) -> None:
        if not (0.0 <= self.min_area < self.max_area <= 1.0):
            raise ValueError(f"need 0 <= min_area < max_area <= 1, got {self.min_area}, {self.max_area}")
        if not (0.0 <= self.border < 0.5):
            raise ValueError(f"border must be in [0, 0.5), got {self.border}")
        if not (0.0 <= self.min_score <= 1.0):
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")

    def reason(self, b: NormBox, score: float = 1.0) -> str | None:
        """None if the box passes, else why not: invalid_box, low_score, area_small, area_large, border."""
        if not box_is_valid(b):
            return "invalid_box"
        if score < self.min_score:
            return "low_score"
        area = (b[2] - b[0]) * (b[3] - b[1]) / 1e6
        if area < self.min_area:
            return "area_small"
        if area > self.max_area:
            return "area_large"
        m = self.border * 1000.0
        if b[0] < m or b[1] < m or b[2] > 1000 - m or b[3] > 1000 - m:
            return "border"
        return None
