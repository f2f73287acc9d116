"""Codec box probe: `python -m models.codec_probe data=CLIPS_DIR [sizes=32,48,64 codec=DIR]`.

Why: IF_box needs the red outline to survive the codec at the model's resolution, whatever the
transformer learns. Per size this takes the final view of every grounding clip of `data` (the last
path frame: the box frames repeat it), resizes it, draws the red box there as the data generator
does, runs one codec round trip and counts the boxes `detect_red_box` finds on the true box
(IoU >= 0.3). A size the codec cannot carry the box at is ruled out before any training.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import cv2
import numpy as np

from envs.config import cli_config


@dataclass
class CodecProbeConfig:
    data: str = ""
    sizes: str = "32,48,64"
    codec: str = ""  # "" = the shipped checkpoint's codec

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("data=DIR is required (a folder of clip shards, e.g. runs/data/val)")
        try:
            ok = all(8 <= s <= 512 and s % 8 == 0 for s in self.size_values)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"sizes must be comma-separated multiples of 8 in [8, 512], got {self.sizes!r}")

    @property
    def size_values(self) -> list[int]:
        return [int(s) for s in self.sizes.split(",")]


def final_views(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    """(final view without the box, its box in that view's pixels) of every grounding clip."""
    out = []
    for k in range(len(dataset)):
        clip = dataset[k]
        if clip.num_box_frames and clip.target_box is not None:
            view = clip.target_frames[len(clip.target_frames) - clip.num_box_frames - 1]
            out.append((view, np.asarray(clip.target_box, dtype=np.float32)))
    return out


def box_recall_by_size(codec, views: list[tuple[np.ndarray, np.ndarray]], sizes: list[int]) -> dict[int, float]:
    from models.codec_train import box_recall
    from models.red_box import draw_red_box

    result = {}
    for size in sizes:
        boxed = []
        for view, box in views:
            h = view.shape[0]
            frame = cv2.resize(view, (size, size), interpolation=cv2.INTER_AREA if size < h else cv2.INTER_LINEAR)
            b = box * size / h
            boxed.append((draw_red_box(frame, b), b))
        result[size] = box_recall(codec, boxed)
    return result


def main(argv: list[str] | None = None) -> dict:
    import torch

    from models.clipstore import ClipDataset
    from models.codecs import TinyAutoencoder
    from models.pipeline import DEFAULT_CHECKPOINT

    cfg = cli_config(CodecProbeConfig, sys.argv[1:] if argv is None else argv)
    codec_dir = cfg.codec or str(DEFAULT_CHECKPOINT / "codec")
    codec = TinyAutoencoder.from_pretrained(codec_dir, torch_dtype=torch.float32)
    views = final_views(ClipDataset(cfg.data))
    if not views:
        raise SystemExit(f"models.codec_probe: no grounding clips with a box under {cfg.data}")
    recall = box_recall_by_size(codec, views, cfg.size_values)
    res = {"box_recall": {str(k): round(v, 3) for k, v in recall.items()}, "clips": len(views), "data": cfg.data,
           "codec": codec_dir}
    print(json.dumps(res), flush=True)
    return res


if __name__ == "__main__":
    main()
