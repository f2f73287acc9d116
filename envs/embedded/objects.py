"""Furniture built from primitive parts (boxes, cylinders, ellipsoids, capsules).

Each category has its own silhouette (several parts) so that shape, not colour, identifies it.
Object-local frame (Habitat convention): x right, y up from the floor, the object's front faces
+z, the footprint is centred on the origin. Sizes are realistic (bed ~2 x 1.6 m, chair ~0.5 m).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from envs.embedded.categories import COLOUR_VARIANTS, PALETTE


def rot_y(theta: float) -> np.ndarray:
    """Rotation about Habitat +Y (yaw): local +z goes to (sin t, 0, cos t)."""
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


# Local rotations that point a cylinder/capsule axis (local +y) along another axis.
AXIS_ROT = {
    "y": np.eye(3),
    "x": np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),  # local y -> world x
    "z": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),  # local y -> world z
}


@dataclass
class Part:
    """One primitive in the Habitat world frame.

    kind: box | cylinder | ellipsoid | capsule. half: local half extents (x, y, z); cylinders and
    capsules have their axis along local y with half = (r, half_length, r). rot: local->world.
    material: name of a textured material (structure) or None (plain rgb). instance_id 0 = structure.
    """

    kind: str
    centre: np.ndarray
    half: np.ndarray
    rot: np.ndarray
    rgb: tuple[float, float, float]
    material: str | None = None
    instance_id: int = 0

    def aabb(self) -> tuple[np.ndarray, np.ndarray]:
        h = np.asarray(self.half, dtype=np.float64).copy()
        if self.kind == "capsule":
            h[1] += h[0]
        ext = np.abs(self.rot) @ h
        return self.centre - ext, self.centre + ext


@dataclass
class ObjectBuilder:
    """Collects parts in the object-local frame."""

    parts: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, tuple[float, float, float]]] = field(default_factory=list)

    def box(self, c, h, rgb) -> None:
        self.parts.append(("box", np.asarray(c, float), np.asarray(h, float), np.eye(3), tuple(rgb)))

    def cyl(self, c, r, hh, rgb, axis: str = "y") -> None:
        self.parts.append(("cylinder", np.asarray(c, float), np.array([r, hh, r]), AXIS_ROT[axis], tuple(rgb)))

    def cap(self, c, r, hh, rgb, axis: str = "y") -> None:
        self.parts.append(("capsule", np.asarray(c, float), np.array([r, hh, r]), AXIS_ROT[axis], tuple(rgb)))

    def ell(self, c, radii, rgb) -> None:
        self.parts.append(("ellipsoid", np.asarray(c, float), np.asarray(radii, float), np.eye(3), tuple(rgb)))

    def place(self, pos_xz: np.ndarray, yaw: float, instance_id: int) -> list[Part]:
        R = rot_y(yaw)
        t = np.array([pos_xz[0], 0.0, pos_xz[1]])
        return [Part(k, R @ c + t, h, R @ r, rgb, None, instance_id) for k, c, h, r, rgb in self.parts]

    def footprint(self) -> tuple[float, float]:
        """Local half extents (hx, hz) of the footprint."""
        lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
        for k, c, h, r, rgb in self.parts:
            p = Part(k, c, h, r, rgb)
            a, b = p.aabb()
            lo, hi = np.minimum(lo, a), np.maximum(hi, b)
        return float(max(-lo[0], hi[0])), float(max(-lo[2], hi[2]))


def _c(name: str, rng: np.random.Generator, jitter: float = 0.05) -> np.ndarray:
    return np.clip(np.asarray(PALETTE[name]) * rng.uniform(1.0 - jitter, 1.0 + jitter), 0.0, 1.0)


def _wood(rng: np.random.Generator) -> np.ndarray:
    return _c(str(rng.choice(["light wood", "dark wood", "brown"])), rng)


def chair(b: ObjectBuilder, rng: np.random.Generator, col: np.ndarray) -> None:
    w, sh = rng.uniform(0.44, 0.5), rng.uniform(0.43, 0.48)
    legs = _c(str(rng.choice(["dark wood", "black", "grey", "light wood"])), rng)
    for sx in (-1, 1):
        for sz in (-1, 1):
            b.box((sx * (w / 2 - 0.03), sh / 2, sz * (w / 2 - 0.03)), (0.022, sh / 2, 0.022), legs)
    b.box((0, sh + 0.03, 0), (w / 2, 0.03, w / 2), col)  # seat
    bh = rng.uniform(0.4, 0.5)
    for sx in (-1, 1):  # back posts
        b.box((sx * (w / 2 - 0.03), sh + 0.06 + bh / 2, -w / 2 + 0.025), (0.022, bh / 2, 0.022), legs)
    b.box((0, sh + 0.06 + bh * 0.62, -w / 2 + 0.025), (w / 2, bh * 0.36, 0.025), col)  # backrest


def table(b: ObjectBuilder, rng: np.random.Generator, col: np.ndarray, size=None) -> None:
    hx, hz = size if size is not None else (rng.uniform(0.5, 0.7), rng.uniform(0.4, 0.48))
    h = rng.uniform(0.72, 0.76)
    legs = col * 0.7 if rng.uniform() < 0.5 else _c("black", rng)
    b.box((0, h - 0.02, 0), (hx, 0.025, hz), col)
    for sx in (-1, 1):
        for sz in (-1, 1):
            b.box((sx * (hx - 0.05), (h - 0.045) / 2, sz * (hz - 0.05)), (0.03, (h - 0.045) / 2, 0.03), legs)
    b.box((0, h - 0.08, -hz + 0.05), (hx - 0.05, 0.035, 0.01), legs)  # apron


def coffee_table(b: ObjectBuilder, rng: np.random.Generator, col: np.ndarray) -> None:
    hx, hz, h = rng.uniform(0.45, 0.6), rng.uniform(0.28, 0.35), rng.uniform(0.4, 0.46)
    b.box((0, h - 0.025, 0), (hx, 0.025, hz), col)
    b.box((0, 0.12, 0), (hx - 0.04, 0.015, hz - 0.04), col * 0.85)  # lower shelf
    for sx in (-1, 1):
        for sz in (-1, 1):
            b.box((sx * (hx - 0.04), (h - 0.05) / 2, sz * (hz - 0.04)), (0.025, (h - 0.05) / 2, 0.025), col * 0.7)


def sofa(b: ObjectBuilder, rng: np.random.Generator, col: np.ndarray) -> None:
    hx, hz = rng.uniform(0.85, 1.1), rng.uniform(0.42, 0.48)
    feet = _c("black", rng)
    for sx in (-1, 1):
        for sz in (-1, 1):
            b.box((sx * (hx - 0.08), 0.04, sz * (hz - 0.08)), (0.03, 0.04, 0.03), feet)
    b.box((0, 0.26, 0), (hx, 0.18, hz), col * 0.9)  # base
    arm = 0.16
    n = 3 if hx > 0.95 else 2
    cw = (2 * (hx - arm)) / n
    for i in range(n):  # seat cushions, slightly lighter, small gaps between them
        x = -hx + arm + cw * (i + 0.5)
        b.box((x, 0.5, 0.06), (cw / 2 - 0.01, 0.06, hz - 0.1), np.clip(col * 1.08, 0, 1))
    b.box((0, 0.68, -hz + 0.12), (hx, 0.26, 0.12), col)  # backrest
    for i in range(n):  # back cushions
        x = -hx + arm + cw * (i + 0.5)
        b.box((x, 0.72, -hz + 0.28), (cw / 2 - 0.02, 0.17, 0.05), np.clip(col * 1.12, 0, 1))
    for sx in (-1, 1):  # arms
        b.box((sx * (hx - arm / 2), 0.5, 0.0), (arm / 2, 0.14, hz), col)
        b.cyl((sx * (hx - arm / 2), 0.64, 0.0), arm / 2, hz, col, axis="z")


def bed(b: ObjectBuilder, rng: np.random.Generator, col: np.ndarray) -> None:
    hx, hz = rng.uniform(0.7, 0.85), rng.uniform(0.98, 1.05)
    frame = _wood(rng)
    white = _c("white", rng)
    b.box((0, 0.2, 0.03), (hx, 0.12, hz - 0.03), frame)  # frame
    for sx in (-1, 1):
        b.box((sx * (hx - 0.05), 0.05, hz - 0.05), (0.04, 0.05, 0.04), frame)
    b.box((0, 0.41, 0.03), (hx - 0.04, 0.09, hz - 0.07), white)  # mattress
    b.box((0, 0.46, 0.28), (hx - 0.02, 0.07, hz - 0.3), col)  # blanket over the lower part
    b.box((0, 0.47, hz - 0.05), (hx - 0.02, 0.06, 0.03), col * 0.9)
    for sx in (-1, 1):  # pillows
        b.ell((sx * hx * 0.45, 0.53, -hz + 0.3), (hx * 0.38, 0.07, 0.17), white)
    b.box((0, 0.55, -hz + 0.03), (hx + 0.02, 0.55, 0.04), frame)  # headboard


def plant(b: ObjectBuilder, rng: np.random.Generator, col: np.ndarray) -> None:
    r, h = rng.uniform(0.14, 0.19), rng.uniform(0.3, 0.4)
    b.cyl((0, h / 2, 0), r, h / 2, col)  # pot
    b.cyl((0, h - 0.03, 0), r + 0.015, 0.03, col * 0.85)  # rim
    b.cyl((0, h + 0.005, 0), r - 0.01, 0.01, (0.22, 0.15, 0.09))  # soil
    b.cyl((0, h + 0.2, 0), 0.02, 0.2, (0.3, 0.22, 0.12))  # stem
    greens = [(0.16, 0.42, 0.16), (0.22, 0.52, 0.2), (0.12, 0.34, 0.14), (0.28, 0.5, 0.18)]
    n = int(rng.integers(5, 8))
    for i in range(n):  # foliage blobs on a spiral
        a = 2 * np.pi * i / n + rng.uniform(-0.3, 0.3)
        rad = rng.uniform(0.08, 0.18)
        y = h + rng.uniform(0.25, 0.65)
        s = rng.uniform(0.1, 0.15)
        b.ell((rad * np.cos(a), y, rad * np.sin(a)), (s, s * 1.3, s), greens[i % 4])
    b.ell((0, h + 0.75, 0), (0.12, 0.16, 0.12), greens[1])


def toilet(b: ObjectBuilder, rng: np.random.Generator, col: np.ndarray) -> None:
    b.box((0, 0.18, 0.02), (0.13, 0.18, 0.16), col)  # pedestal
    b.ell((0, 0.36, 0.06), (0.19, 0.08, 0.26), col)  # bowl
    b.ell((0, 0.44, 0.06), (0.19, 0.025, 0.25), col * 0.93)  # seat
    b.box((0, 0.6, -0.22), (0.2, 0.2, 0.09), col)  # tank
    b.box((0, 0.81, -0.22), (0.21, 0.015, 0.1), col * 0.95)  # tank lid
    b.cyl((0.1, 0.76, -0.12), 0.012, 0.03, (0.7, 0.7, 0.72), axis="z")  # flush lever


def tv_monitor(b: ObjectBuilder, rng: np.random.Generator, col: np.ndarray) -> None:
    cw = rng.uniform(0.6, 0.75)
    console = _wood(rng)
    b.box((0, 0.22, 0), (cw, 0.2, 0.2), console)  # media console
    b.box((-cw / 2, 0.22, 0.201), (cw / 2 - 0.03, 0.16, 0.003), console * 0.8)
    b.box((cw / 2, 0.22, 0.201), (cw / 2 - 0.03, 0.16, 0.003), console * 0.8)
    sw, sh = rng.uniform(0.5, 0.62), rng.uniform(0.3, 0.36)
    y0 = 0.42
    b.box((0, y0 + 0.015, -0.02), (0.18, 0.015, 0.09), col)  # foot
    b.box((0, y0 + 0.1, -0.06), (0.04, 0.09, 0.02), col)  # neck
    cy = y0 + 0.12 + sh
    b.box((0, cy, -0.03), (sw + 0.025, sh + 0.025, 0.03), col)  # bezel
    b.box((0, cy, 0.001), (sw, sh, 0.003), (0.05, 0.07, 0.1))  # dark screen
    b.box((sw * 0.3, cy + sh * 0.4, 0.005), (sw * 0.45, sh * 0.35, 0.001), (0.1, 0.13, 0.19))  # glare


def cabinet(b: ObjectBuilder, rng: np.random.Generator, col: np.ndarray) -> None:
    hx, hz, h = rng.uniform(0.4, 0.55), rng.uniform(0.22, 0.27), rng.uniform(0.8, 0.95)
    b.box((0, h / 2 + 0.05, 0), (hx, h / 2, hz), col)
    for sx in (-1, 1):
        for sz in (-1, 1):
            b.box((sx * (hx - 0.04), 0.025, sz * (hz - 0.04)), (0.025, 0.025, 0.025), col * 0.6)
    n = 3
    dh = (h - 0.08) / n
    knob = _c(str(rng.choice(["grey", "light grey", "black"])), rng)
    for i in range(n):
        y = 0.09 + dh * (i + 0.5)
        b.box((0, y, hz + 0.006), (hx - 0.03, dh / 2 - 0.012, 0.006), np.clip(col * 1.07, 0, 1))
        b.box((0, y, hz + 0.02), (0.07, 0.012, 0.01), knob)
    b.box((0, h + 0.06, 0), (hx + 0.01, 0.012, hz + 0.01), col * 0.85)  # top


def lamp(b: ObjectBuilder, rng: np.random.Generator, col: np.ndarray) -> None:
    metal = _c(str(rng.choice(["black", "grey", "light grey"])), rng)
    h = rng.uniform(1.45, 1.65)
    b.cyl((0, 0.015, 0), 0.16, 0.015, metal)
    b.cyl((0, h / 2, 0), 0.016, h / 2, metal)
    b.cyl((0, h + 0.12, 0), rng.uniform(0.18, 0.22), 0.15, col)  # shade
    b.cyl((0, h + 0.28, 0), 0.06, 0.012, col * 0.9)


def bookshelf(b: ObjectBuilder, rng: np.random.Generator, col: np.ndarray) -> None:
    hx, hz, h = rng.uniform(0.4, 0.5), 0.17, rng.uniform(1.7, 1.95)
    t = 0.02
    for sx in (-1, 1):
        b.box((sx * (hx - t), h / 2, 0), (t, h / 2, hz), col)
    b.box((0, h / 2, -hz + 0.01), (hx - 2 * t, h / 2, 0.01), col * 0.8)  # back
    n = 5
    book_cols = ["blue", "green", "teal", "yellow", "navy", "purple", "beige", "olive", "white", "brown"]
    for i in range(n + 1):
        y = t + i * (h - 2 * t) / n
        b.box((0, y, 0), (hx - 2 * t, t, hz), col)
        if i < n:  # books: a few coloured blocks per shelf
            sh = (h - 2 * t) / n
            x = -hx + 2 * t + 0.01
            while True:
                bw = rng.uniform(0.08, 0.22)
                if x + bw > hx - 2 * t - 0.01:
                    break
                bh = sh * rng.uniform(0.55, 0.8)
                bc = _c(str(rng.choice(book_cols)), rng, 0.1)
                b.box((x + bw / 2, y + t + bh / 2, 0.02), (bw / 2 - 0.004, bh / 2, hz - 0.05), bc)
                x += bw + rng.uniform(0.0, 0.06)


def bathtub(b: ObjectBuilder, rng: np.random.Generator, col: np.ndarray) -> None:
    hx, hz, h = rng.uniform(0.78, 0.86), rng.uniform(0.36, 0.4), rng.uniform(0.52, 0.58)
    inner = _c("white", rng)
    t = 0.07
    b.box((0, h / 2, hz - t / 2), (hx, h / 2, t / 2), col)  # front
    b.box((0, h / 2, -hz + t / 2), (hx, h / 2, t / 2), col)  # back
    for sx in (-1, 1):
        b.box((sx * (hx - t / 2), h / 2, 0), (t / 2, h / 2, hz - t), col)
    b.box((0, 0.12, 0), (hx - t, 0.12, hz - t), inner)  # basin floor
    b.box((0, 0.23, 0), (hx - t, 0.005, hz - t), (0.55, 0.68, 0.78))  # water
    metal = _c("light grey", rng)
    b.cyl((-hx + 0.15, h + 0.1, -hz + 0.05), 0.018, 0.1, metal)  # tap
    b.cyl((-hx + 0.15, h + 0.19, -hz + 0.12), 0.015, 0.07, metal, axis="z")


def refrigerator(b: ObjectBuilder, rng: np.random.Generator, col: np.ndarray) -> None:
    hx, hz, h = rng.uniform(0.33, 0.4), rng.uniform(0.32, 0.36), rng.uniform(1.75, 1.95)
    b.box((0, h / 2 + 0.02, 0), (hx, h / 2, hz), col)
    b.box((0, 0.01, 0), (hx - 0.03, 0.01, hz - 0.03), (0.1, 0.1, 0.1))
    split = h * 0.62
    shade = np.clip(col * 0.94, 0, 1)
    b.box((0, split / 2 + 0.03, hz + 0.012), (hx - 0.01, split / 2 - 0.015, 0.012), shade)  # fridge door
    b.box((0, split + (h - split) / 2 + 0.03, hz + 0.012), (hx - 0.01, (h - split) / 2 - 0.015, 0.012), shade)
    handle = _c("grey", rng) if col.mean() > 0.4 else _c("light grey", rng)
    b.cap((hx - 0.07, split - 0.3, hz + 0.05), 0.015, 0.22, handle)
    b.cap((hx - 0.07, split + 0.25, hz + 0.05), 0.015, 0.14, handle)


BUILDERS: dict[str, Callable[[ObjectBuilder, np.random.Generator, np.ndarray], None]] = {
    "chair": chair,
    "table": table,
    "sofa": sofa,
    "bed": bed,
    "plant": plant,
    "toilet": toilet,
    "tv_monitor": tv_monitor,
    "cabinet": cabinet,
    "lamp": lamp,
    "bookshelf": bookshelf,
    "bathtub": bathtub,
    "refrigerator": refrigerator,
}


def build_object(category: str, rng: np.random.Generator, variant: str | None = None, kind: str = "") -> tuple[ObjectBuilder, str]:
    """Parts of one object of `category` (local frame) and its colour-variant name.

    kind="coffee" gives the low living-room table."""
    variant = str(rng.choice(COLOUR_VARIANTS[category])) if variant is None else variant
    col = _c(variant, rng)
    b = ObjectBuilder()
    if category == "table" and kind == "coffee":
        coffee_table(b, rng, col)
    else:
        BUILDERS[category](b, rng, col)
    return b, variant
