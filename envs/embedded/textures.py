"""Procedural RGB textures for floors, walls and ceilings (numpy + OpenCV).

Why procedural: optical flow and the video generator need non-uniform surfaces to hold on to,
and seeded textures keep every scene reproducible without shipping image files. Hues never
come near saturated red (reserved for the imagined bounding box).
"""
from __future__ import annotations

import colorsys

import cv2
import numpy as np

TEX_SIZE = 128  # pixels; small so a scene builds in well under a second

FLOOR_KINDS = ("wood", "tiles", "carpet", "parquet")
WALL_KINDS = ("plaster", "stripes", "dots", "panels")


def safe_colour(
    rng: np.random.Generator,
    sat: tuple[float, float],
    val: tuple[float, float],
    hue: tuple[float, float] = (25.0, 335.0),
) -> np.ndarray:
    """Random RGB in [0, 1]; hue (degrees) is kept inside [25, 335], i.e. away from red."""
    lo, hi = max(25.0, hue[0]), min(335.0, hue[1])
    h = rng.uniform(lo, hi) / 360.0
    s = rng.uniform(*sat)
    v = rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [-1, 1]: a random coarse grid upsampled bicubically (tileable enough here)."""
    g = rng.uniform(-1.0, 1.0, size=(cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC), -1.0, 1.0)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def make_texture(kind: str, rng: np.random.Generator, base: np.ndarray | None = None, size: int = TEX_SIZE) -> np.ndarray:
    """(size, size, 3) uint8 texture of the given kind around colour `base` (random if None)."""
    n = size
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    fine = rng.uniform(-1.0, 1.0, size=(n, n)).astype(np.float32)
    if kind == "wood":
        base = safe_colour(rng, (0.4, 0.6), (0.45, 0.8), hue=(25, 40)) if base is None else base
        plank_h = n // 8
        plank = (yy // plank_h).astype(int)
        shade = rng.uniform(0.8, 1.15, size=8)[plank % 8]
        offs = rng.uniform(0, 40, size=8)[plank % 8]
        grain = 0.06 * np.sin((xx + offs) * 0.15 + 3.0 * _smooth_noise(rng, n, 6))
        val = shade + grain + 0.03 * fine
        img = base[None, None, :] * val[..., None]
        img[(yy % plank_h) < 1] *= 0.45  # dark seams between planks
        ends = (((xx + offs * 3).astype(int)) % (n // 2)) < 1
        img[ends] *= 0.6
    elif kind == "tiles":
        base = safe_colour(rng, (0.0, 0.25), (0.62, 0.92)) if base is None else base
        t = n // 4
        tile = (yy // t).astype(int) * 4 + (xx // t).astype(int)
        shade = rng.uniform(0.88, 1.08, size=16)[tile]
        img = base[None, None, :] * (shade + 0.03 * fine)[..., None]
        grout = ((yy % t) < 2) | ((xx % t) < 2)
        img[grout] = base * 0.55
    elif kind == "carpet":
        base = safe_colour(rng, (0.15, 0.45), (0.35, 0.7), hue=(35, 260)) if base is None else base
        val = 1.0 + 0.12 * _smooth_noise(rng, n, 8) + 0.12 * fine
        img = base[None, None, :] * val[..., None]
    elif kind == "parquet":
        base = safe_colour(rng, (0.4, 0.6), (0.45, 0.8), hue=(25, 42)) if base is None else base
        b = n // 4
        blk = ((yy // b).astype(int) + (xx // b).astype(int)) % 2
        coord = np.where(blk == 0, xx, yy)
        strip = (coord // (b // 4)).astype(int)
        shade = rng.uniform(0.8, 1.15, size=64)[strip % 64]
        img = base[None, None, :] * (shade + 0.04 * fine)[..., None]
        img[(coord % (b // 4)) < 1] *= 0.55
        img[((yy % b) < 1) | ((xx % b) < 1)] *= 0.5
    elif kind == "plaster":
        base = safe_colour(rng, (0.03, 0.25), (0.72, 0.95)) if base is None else base
        val = 1.0 + 0.07 * _smooth_noise(rng, n, 5) + 0.05 * _smooth_noise(rng, n, 24) + 0.03 * fine
        img = base[None, None, :] * val[..., None]
    elif kind == "stripes":
        base = safe_colour(rng, (0.08, 0.3), (0.68, 0.92)) if base is None else base
        other = np.clip(base * rng.uniform(0.75, 0.88), 0, 1)
        period = n // int(rng.choice([4, 8]))
        band = (xx % period) < period // 2
        img = np.where(band[..., None], base[None, None, :], other[None, None, :])
        img = img * (1.0 + 0.03 * fine)[..., None]
    elif kind == "dots":
        base = safe_colour(rng, (0.05, 0.25), (0.72, 0.92)) if base is None else base
        dot = safe_colour(rng, (0.2, 0.5), (0.35, 0.6))
        p = n // 8
        d2 = ((xx % p) - p / 2) ** 2 + ((yy % p) - p / 2) ** 2
        m = d2 < (p * 0.22) ** 2
        img = np.broadcast_to(base, (n, n, 3)).copy() * (1.0 + 0.03 * fine)[..., None]
        img[m] = dot
    elif kind == "panels":
        base = safe_colour(rng, (0.05, 0.3), (0.62, 0.9)) if base is None else base
        p = n // 2
        img = base[None, None, :] * (1.0 + 0.05 * _smooth_noise(rng, n, 4) + 0.03 * fine)[..., None]
        edge = ((xx % p) < 3) | ((yy % p) < 3)
        img[edge] *= 0.72
        hi = ((xx % p) >= 3) & ((xx % p) < 5) | ((yy % p) >= 3) & ((yy % p) < 5)
        img[hi] = np.clip(img[hi] * 1.15, 0, 1)
    else:
        raise ValueError(f"unknown texture kind {kind!r}; choose one of {FLOOR_KINDS + WALL_KINDS}")
    return _to_uint8(img)
