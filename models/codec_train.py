"""Train the tiny codec: `python -m models.codec_train [key=value ...]`.

`source=sim` (default) renders views at random navigable poses of `scenes` train-split scenes of the
embedded world (resized to 64² with INTER_AREA exactly as the pipeline resizes the agent's camera),
draws red boxes on a third of them (the model must reproduce the auxiliary box), trains from scratch,
and measures reconstruction PSNR on renders of val-split scenes. `source=clips data=DIR` takes the
frames of training clip shards instead (every third target frame plus the red-box frames, i.e.
exactly what the generator must decode). `source=synthetic` trains on procedural images.

`init=DIR freeze_encoder=true red_weight=10` fine-tunes the decoder of an existing codec: the latent
space is unchanged, so a transformer trained on it stays valid, while the red box survives decoding
(the shipped codec was made this way: see checkpoints/tiny-codec/metrics.json). Writes the codec + `metrics.json`
to `out` (default models/checkpoints/tiny-codec). Prints one JSON line (psnr_val, psnr_train,
box_recall_val when boxes are known, steps, frames, seconds).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from envs.config import cli_config
from models.codecs import (
    TinyAutoencoder,
    frames_to_tensor,
    measure_psnr,
    synthetic_frames,
    tensor_to_frames,
    train_tiny_codec,
)
from models.conditioning import resize_frames
from models.pipeline import TINY_CODEC_CHECKPOINT
from models.red_box import draw_red_box


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


def clip_frames(root: str | Path, max_shards: int = 0) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Frames of clip shards under `root`: every third target frame and the two last box frames of
    each grounding clip, plus (last box frame, its box) pairs for measuring box recall."""
    from models.clipstore import ClipDataset

    ds = ClipDataset(root)
    stems = sorted({stem for stem, _, _ in ds.index})
    keep = set(stems[:max_shards]) if max_shards else set(stems)
    frames, boxed = [], []
    for k, (stem, _, _) in enumerate(ds.index):
        if stem not in keep:
            continue
        clip = ds[k]
        frames.append(clip.target_frames[::3])
        if clip.num_box_frames and clip.target_box is not None:
            frames.append(clip.target_frames[-2:])
            boxed.append((clip.target_frames[-1], np.asarray(clip.target_box, dtype=np.float32)))
    return np.concatenate(frames), boxed


@torch.no_grad()
def box_recall(codec: TinyAutoencoder, boxed: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Share of red-box frames whose box `detect_red_box` finds after one codec round trip, on the
    true box (IoU >= 0.3): the codec's part of the IF_box metric."""
    from envs.types import Box2D
    from models.red_box import detect_red_box

    if not boxed:
        return float("nan")
    x = frames_to_tensor(np.stack([f for f, _ in boxed]))
    rec = tensor_to_frames(torch.cat([codec.decode_images(codec.encode_images(x[i : i + 64])) for i in range(0, len(x), 64)]))
    hits = 0
    for f, (_, b) in zip(rec, boxed):
        d = detect_red_box(f)
        hits += d is not None and d.iou(Box2D(*map(float, b))) >= 0.3
    return hits / len(boxed)


@dataclass
class CodecTrainConfig:
    steps: int = 1500
    scenes: int = 16  # source=sim
    per_scene: int = 200  # source=sim
    source: str = "sim"  # sim | clips | synthetic
    data: str = ""  # source=clips: training clip shards
    val_data: str = ""  # source=clips: validation clip shards
    max_shards: int = 0  # source=clips: use only the first N shards (0 = all)
    init: str = ""  # start from this codec folder instead of a fresh one
    freeze_encoder: bool = False  # train the decoder only (keeps the latent space)
    red_weight: float = 0.0  # extra loss weight on saturated-red pixels
    lr: float = 2e-3
    batch_size: int = 32
    threads: int = 0
    out: str = str(TINY_CODEC_CHECKPOINT)

    def __post_init__(self) -> None:
        if self.source not in ("sim", "clips", "synthetic"):
            raise ValueError(f"source must be sim, clips or synthetic, got {self.source!r}")
        if self.source == "clips" and not (self.data and self.val_data):
            raise ValueError("source=clips needs data=DIR and val_data=DIR (clip shards from python -m models.data)")
        if self.freeze_encoder and not self.init:
            raise ValueError("freeze_encoder=true needs init=DIR, the codec whose encoder to keep")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")


def main(argv: list[str] | None = None) -> dict:
    cfg = cli_config(CodecTrainConfig, sys.argv[1:] if argv is None else argv)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    boxed: list = []
    if cfg.source == "sim":
        train = render_frames("train", cfg.scenes, cfg.per_scene, seed=0)
        val = render_frames("val", 4, 32, seed=1)
    elif cfg.source == "clips":
        train, _ = clip_frames(cfg.data, cfg.max_shards)
        val, boxed = clip_frames(cfg.val_data)
    else:
        train, val = synthetic_frames(cfg.scenes * cfg.per_scene, seed=0), synthetic_frames(128, seed=1)
    codec = TinyAutoencoder.from_pretrained(cfg.init).float() if cfg.init else None
    codec = train_tiny_codec(train, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, codec=codec,
                             red_weight=cfg.red_weight, freeze_encoder=cfg.freeze_encoder)
    res = {"psnr_val": round(measure_psnr(codec, val), 2), "psnr_train": round(measure_psnr(codec, train[:256]), 2)}
    if boxed:
        res["box_recall_val"] = round(box_recall(codec, boxed), 3)
    res.update({"steps": cfg.steps, "frames": len(train), "source": cfg.source,
                "seconds": round(time.perf_counter() - t0, 1), "config": dataclasses.asdict(cfg)})
    out = Path(cfg.out)
    codec.save_pretrained(out, safe_serialization=True)
    (out / "metrics.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res), flush=True)
    return res


if __name__ == "__main__":
    main()
