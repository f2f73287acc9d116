"""Train the tiny codec on simulator renders: `python -m models.codec_train [key=value ...]`.

Renders `frames` views at random navigable poses of `scenes` train-split scenes of the embedded world
(resized to 64² with INTER_AREA exactly as the pipeline resizes the agent's camera), draws red boxes
on a third of them (the model must reproduce the auxiliary box), trains, and measures reconstruction
PSNR on renders of val-split scenes. Writes the codec + `metrics.json` to `out`
(default models/checkpoints/tiny-codec). `source=synthetic` trains on procedural images instead.
Prints one JSON line (psnr_val, psnr_train, steps, frames, seconds).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from models.codecs import TinyAutoencoder, measure_psnr, synthetic_frames, train_tiny_codec
from models.conditioning import resize_frames
from models.pipeline import TINY_CODEC_CHECKPOINT
from models.types import draw_red_box


def render_frames(split: str, scenes: int, per_scene: int, size: int = 64, seed: int = 0,
                  box_fraction: float = 1 / 3) -> np.ndarray:
    """uint8 (scenes·per_scene, size, size, 3) renders at random navigable poses."""
    from envs.embedded.world import EmbeddedWorld
    from envs.splits import split_seeds
    from envs.types import Pose

    rng = np.random.default_rng(seed)
    world = None
    out = []
    for s in split_seeds(split, scenes):
        world = world or EmbeddedWorld(scene_seed=s)
        world.load_scene(s)
        h = world.cfg.sensor_height
        for _ in range(per_scene):
            x, z = world.navgrid.sample_navigable(rng)
            pose = Pose((float(x), h, float(z)), float(rng.uniform(-np.pi, np.pi)), float(rng.uniform(-0.3, 0.2)))
            out.append(world.render_at(pose, semantic=False).rgb)
        print(f"rendered scene {s}: {len(out)} frames", file=sys.stderr, flush=True)
    frames = resize_frames(np.stack(out), size, size)
    for i in np.flatnonzero(rng.random(len(frames)) < box_fraction):
        x0, y0 = rng.uniform(0, size * 0.6, 2)
        w, h = rng.uniform(size * 0.15, size * 0.4, 2)
        frames[i] = draw_red_box(frames[i], (x0, y0, x0 + w, y0 + h))
    return frames


def main(argv: list[str] | None = None) -> dict:
    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv))
    steps = int(args.pop("steps", 1500))
    scenes = int(args.pop("scenes", 16))
    per_scene = int(args.pop("per_scene", 200))
    source = args.pop("source", "sim")
    out = Path(args.pop("out", str(TINY_CODEC_CHECKPOINT)))
    threads = int(args.pop("threads", 0))
    batch = int(args.pop("batch_size", 32))
    if args:
        raise SystemExit(f"unknown options {sorted(args)}; known: steps scenes per_scene source out threads batch_size")
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    if source == "sim":
        train = render_frames("train", scenes, per_scene, seed=0)
        val = render_frames("val", 4, 32, seed=1)
    elif source == "synthetic":
        train, val = synthetic_frames(scenes * per_scene, seed=0), synthetic_frames(128, seed=1)
    else:
        raise SystemExit(f"source must be sim or synthetic, got {source!r}")
    codec = train_tiny_codec(train, steps=steps, batch_size=batch)
    res = {"psnr_val": round(measure_psnr(codec, val), 2), "psnr_train": round(measure_psnr(codec, train[:256]), 2),
           "steps": steps, "frames": len(train), "source": source, "seconds": round(time.perf_counter() - t0, 1)}
    codec.save_pretrained(out, safe_serialization=True)
    (out / "metrics.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res), flush=True)
    return res


if __name__ == "__main__":
    main()
