"""Camera intrinsics from a calibration file, and the HFOV our envs expose.

Formats: OpenCV FileStorage YAML/XML as written by `cv2.calibrateCamera` tools (camera_matrix,
image_width, image_height, optional distortion_coefficients), or JSON with either "camera_matrix"
(3x3) or fx, fy, cx, cy, plus width and height.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Calibration:
    K: np.ndarray  # (3, 3)
    width: int
    height: int
    dist: np.ndarray | None = None

    @property
    def hfov_deg(self) -> float:
        return math.degrees(2.0 * math.atan(self.width / (2.0 * float(self.K[0, 0]))))

    def scaled(self, width: int, height: int) -> Calibration:
        """Intrinsics of the same camera after resizing frames to width x height."""
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0] *= sx
        K[1] *= sy
        return Calibration(K, width, height, self.dist)


def _check(K: np.ndarray, w: int, h: int, where: str) -> None:
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{where}: camera matrix must be a finite 3x3 with positive fx, fy")
    if w <= 0 or h <= 0:
        raise ValueError(f"{where}: image width/height must be positive, got {w}x{h}")


def load_calibration(path: str | Path) -> Calibration:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"calibration file {p} not found; fix env.config.calibration_file or leave it empty to use env.config.hfov_deg")
    if p.suffix.lower() == ".json":
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"calibration file {p} is not valid JSON: {e}") from None
        try:
            if "camera_matrix" in d:
                K = np.asarray(d["camera_matrix"], dtype=np.float64).reshape(3, 3)
            else:
                K = np.array([[d["fx"], 0, d["cx"]], [0, d["fy"], d["cy"]], [0, 0, 1]], dtype=np.float64)
            w, h = int(d["width"]), int(d["height"])
        except KeyError as e:
            raise ValueError(f"calibration file {p} lacks {e}; need camera_matrix or fx/fy/cx/cy, plus width/height") from None
        dist = np.asarray(d["dist"], dtype=np.float64) if "dist" in d else None
    else:
        import cv2

        fs = cv2.FileStorage(str(p), cv2.FILE_STORAGE_READ)
        if not fs.isOpened():
            raise ValueError(f"calibration file {p} is not an OpenCV YAML/XML FileStorage")
        try:
            node = fs.getNode("camera_matrix")
            if node.empty():
                raise ValueError(f"calibration file {p} has no camera_matrix")
            K = np.asarray(node.mat(), dtype=np.float64).reshape(3, 3)
            w, h = int(fs.getNode("image_width").real()), int(fs.getNode("image_height").real())
            dn = fs.getNode("distortion_coefficients")
            dist = None if dn.empty() else np.asarray(dn.mat(), dtype=np.float64).reshape(-1)
        finally:
            fs.release()
    _check(K, w, h, str(p))
    return Calibration(K, w, h, dist)
