"""Scene generation: determinism, splits, categories, colours (no GL needed)."""
from __future__ import annotations

import colorsys

import numpy as np
import pytest

from envs.embedded.categories import CATEGORIES, COLOUR_VARIANTS, OBJECTNAV_CATEGORIES, PALETTE, category_phrase
from envs.embedded.config import WorldConfig
from envs.embedded.scene import generate_scene
from envs.splits import SPLITS, split_seeds


def _is_saturated_red(rgb: np.ndarray) -> np.ndarray:
    """The read-back's notion of 'box red': hue within 20 deg of red, saturation > 0.6, value > 0.4."""
    rgb = np.asarray(rgb, dtype=np.float64).reshape(-1, 3)
    if rgb.max() > 1.0:
        rgb = rgb / 255.0
    hsv = np.array([colorsys.rgb_to_hsv(*c) for c in rgb])
    hue = hsv[:, 0] * 360.0
    return ((hue < 20) | (hue > 340)) & (hsv[:, 1] > 0.6) & (hsv[:, 2] > 0.4)


def test_same_seed_same_scene_and_different_seeds_differ():
    a, b, c = generate_scene(7), generate_scene(7), generate_scene(8)
    assert [(o.category, tuple(o.position)) for o in a.objects] == [(o.category, tuple(o.position)) for o in b.objects]
    assert all(np.array_equal(a.textures[k], b.textures[k]) for k in a.textures)
    assert [(o.category, tuple(o.position)) for o in a.objects] != [(o.category, tuple(o.position)) for o in c.objects]


def test_splits_disjoint():
    sets = {k: set(v) for k, v in SPLITS.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert split_seeds("test", 3) == [200_000, 200_001, 200_002]


def test_categories_and_phrases():
    assert len(CATEGORIES) >= 12 and set(OBJECTNAV_CATEGORIES) <= set(CATEGORIES)
    assert category_phrase("tv_monitor") == "a tv monitor" and category_phrase("plant") == "a potted plant"
    with pytest.raises(ValueError, match="unknown category 'spaceship'"):
        category_phrase("spaceship")


def test_every_objectnav_category_appears_with_several_colours():
    seen: dict[str, set[str]] = {}
    rooms = set()
    for seed in range(25):
        s = generate_scene(seed)
        assert 1 <= len(s.rooms) <= 5
        rooms.add(len(s.rooms))
        ids = [o.instance_id for o in s.objects]
        assert ids == list(range(1, len(ids) + 1))
        for o in s.objects:
            seen.setdefault(o.category, set()).add(o.colour)
            assert np.all(o.aabb_min <= o.position) and np.all(o.position <= o.aabb_max)
            assert o.aabb_min[1] >= -1e-6  # on the floor, not below it
    assert set(OBJECTNAV_CATEGORIES) <= set(seen), set(OBJECTNAV_CATEGORIES) - set(seen)
    assert len(seen) >= 12
    assert all(len(v) >= 2 for k, v in seen.items()), seen
    assert len(rooms) >= 4


def test_colour_alone_does_not_give_the_category_away():
    owners: dict[str, set[str]] = {}
    for cat, cols in COLOUR_VARIANTS.items():
        assert 2 <= len(cols) <= 3
        for c in cols:
            owners.setdefault(c, set()).add(cat)
    # every ObjectNav category shares at least one of its colours with another category
    for cat in OBJECTNAV_CATEGORIES:
        assert any(len(owners[c]) > 1 for c in COLOUR_VARIANTS[cat]), cat


def test_no_saturated_red_in_palette_textures_or_parts():
    assert not _is_saturated_red(np.array(list(PALETTE.values()))).any()
    for seed in range(5):
        s = generate_scene(seed)
        for name, tex in s.textures.items():
            sub = tex[::8, ::8].reshape(-1, 3)
            assert not _is_saturated_red(sub).any(), name
        assert not _is_saturated_red(np.array([p.rgb for p in s.parts])).any()


def test_realistic_sizes():
    s = [generate_scene(k) for k in range(12)]
    size = {}
    for sc in s:
        for o in sc.objects:
            size.setdefault(o.category, []).append(o.aabb_max - o.aabb_min)
    bed = np.array(size["bed"])
    assert np.all(np.sort(bed[:, [0, 2]], axis=1)[:, 1] > 1.8)  # ~2 m long
    chair = np.array(size["chair"])
    assert np.all(chair[:, 1] > 0.75) and np.all(chair[:, 1] < 1.1)


def test_bad_config_and_seed_messages():
    with pytest.raises(ValueError, match="hfov_deg"):
        WorldConfig(hfov_deg=200)
    with pytest.raises(ValueError, match="unknown world config key"):
        WorldConfig.from_any({"widht": 64})
    with pytest.raises(ValueError, match="non-negative int"):
        generate_scene(-1)
    assert WorldConfig.from_any({"width": 64, "height": 64}).width == 64
