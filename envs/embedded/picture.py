"""`python -m envs.embedded.picture [out=docs/rooms.png] [seeds=3,11,24]`: a contact sheet of a few apartments
(top-down map + egocentric 128x128 views centred on objects, upscaled 2x) for docs/rooms.png."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from envs.config import cli_config
from envs.embedded.world import EmbeddedWorld

TILE = 256


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def topdown(world: EmbeddedWorld) -> np.ndarray:
    g = world.navgrid
    img = np.stack([g.to_image()] * 3, axis=-1).astype(np.uint8)
    img = (img * 0.9).astype(np.uint8)
    rng = np.random.default_rng(0)
    for o in world.scene.objects:
        (iz0, ix0), (iz1, ix1) = g.cells_of(np.array([[o.aabb_min[0], o.aabb_min[2]], [o.aabb_max[0], o.aabb_max[2]]]))
        col = tuple(int(c) for c in rng.integers(40, 200, size=3))
        cv2.rectangle(img, (int(ix0), int(iz0)), (int(ix1), int(iz1)), col, -1)
    s = TILE / max(img.shape)
    img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
    for o in world.scene.objects:
        iz, ix = g.cell_of((o.position[0], o.position[2]))
        cv2.putText(img, o.category[:5], (int(ix * s) - 12, int(iz * s) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 1, cv2.LINE_AA)
    canvas = np.full((TILE, TILE, 3), 40, np.uint8)
    canvas[: img.shape[0], : img.shape[1]] = img
    return _label(canvas, f"{world.scene.scene_phrase()[2:]}")


def sheet(seeds: list[int], views: int = 5) -> np.ndarray:
    world = EmbeddedWorld(scene_seed=seeds[0])
    rows = []
    for seed in seeds:
        world.load_scene(seed)
        tiles = [topdown(world)]
        seen: set[str] = set()
        for o in world.scene.objects:
            if o.category in seen or len(tiles) > views:
                continue
            vp = world.view_points(o.instance_id)
            if len(vp) == 0:
                continue
            # stand in front of the object (its local +z), as far back as the view points allow
            c = np.array([o.position[0], o.position[2]])
            front = np.array([np.sin(o.yaw), np.cos(o.yaw)])
            pose = world.centring_pose(o.instance_id, vp[int(np.argmax((vp - c) @ front))])
            rgb = world.render_at(pose, semantic=False).rgb
            big = cv2.resize(rgb, (TILE, TILE), interpolation=cv2.INTER_NEAREST)
            tiles.append(_label(big, f"{o.category} ({o.colour}, {o.room})"))
            seen.add(o.category)
        while len(tiles) < views + 1:
            tiles.append(np.full((TILE, TILE, 3), 40, np.uint8))
        rows.append(np.concatenate(tiles, axis=1))
    world.close()
    return np.concatenate(rows, axis=0)


@dataclass
class PictureConfig:
    out: str = "docs/rooms.png"
    seeds: str = "3,11,24"  # scene seeds, comma-separated


def main(argv: list[str]) -> int:
    cfg = cli_config(PictureConfig, argv)
    seeds = [int(s) for s in cfg.seeds.split(",") if s.strip()]
    out = Path(cfg.out)
    img = sheet(seeds)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
