"""Object categories of the embedded world and the words used for them in instructions.

The first six are Habitat's HM3D ObjectNav goal categories. Colour variants are drawn from one
shared palette so that colour alone never gives a category away; no colour is saturated red
(pure red is reserved for the imagined bounding box, models.red_box.RED_BOX_RGB).
"""
from __future__ import annotations

OBJECTNAV_CATEGORIES: tuple[str, ...] = ("chair", "bed", "plant", "toilet", "tv_monitor", "sofa")

CATEGORIES: tuple[str, ...] = OBJECTNAV_CATEGORIES + (
    "table",
    "cabinet",
    "lamp",
    "bookshelf",
    "bathtub",
    "refrigerator",
)

_PHRASES: dict[str, str] = {
    "chair": "a chair",
    "bed": "a bed",
    "plant": "a potted plant",
    "toilet": "a toilet",
    "tv_monitor": "a tv monitor",
    "sofa": "a sofa",
    "table": "a table",
    "cabinet": "a cabinet",
    "lamp": "a floor lamp",
    "bookshelf": "a bookshelf",
    "bathtub": "a bathtub",
    "refrigerator": "a refrigerator",
}

# Shared palette (linear-ish RGB in [0, 1]); hue/saturation keep clear of red (see module doc).
PALETTE: dict[str, tuple[float, float, float]] = {
    "white": (0.90, 0.90, 0.88),
    "light grey": (0.70, 0.71, 0.73),
    "grey": (0.47, 0.48, 0.50),
    "black": (0.13, 0.13, 0.14),
    "beige": (0.84, 0.77, 0.62),
    "brown": (0.42, 0.30, 0.20),
    "light wood": (0.74, 0.59, 0.40),
    "dark wood": (0.33, 0.23, 0.15),
    "blue": (0.22, 0.36, 0.68),
    "navy": (0.14, 0.19, 0.38),
    "green": (0.30, 0.52, 0.30),
    "teal": (0.18, 0.52, 0.52),
    "yellow": (0.86, 0.74, 0.30),
    "purple": (0.44, 0.32, 0.58),
    "olive": (0.48, 0.48, 0.24),
}

# 2-3 colour variants per category, overlapping across categories.
COLOUR_VARIANTS: dict[str, tuple[str, ...]] = {
    "chair": ("blue", "light wood", "black"),
    "bed": ("blue", "beige", "green"),
    "plant": ("white", "grey", "navy"),  # pot colour; foliage is always green
    "toilet": ("white", "light grey", "beige"),
    "tv_monitor": ("black", "grey", "white"),  # bezel; the console below takes a wood colour
    "sofa": ("grey", "teal", "brown"),
    "table": ("light wood", "dark wood", "white"),
    "cabinet": ("white", "dark wood", "teal"),
    "lamp": ("beige", "yellow", "white"),
    "bookshelf": ("dark wood", "white", "light wood"),
    "bathtub": ("white", "light grey", "blue"),
    "refrigerator": ("white", "light grey", "black"),
}


def check_category(category: str) -> str:
    """Return `category` if known, else raise one clear ValueError naming the valid ones."""
    if category not in _PHRASES:
        raise ValueError(f"unknown category {category!r}; choose one of {list(CATEGORIES)}")
    return category


def category_index(category: str) -> int:
    return CATEGORIES.index(check_category(category))


def category_phrase(category: str) -> str:
    """Natural words with an article for the instruction template, e.g. 'a tv monitor'."""
    return _PHRASES[check_category(category)]
