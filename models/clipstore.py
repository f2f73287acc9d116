"""Clip shards on disk: `NAME.safetensors` (the arrays) + `NAME.json` (strings and scalars). Never pickle.

One shard holds many `models.types.Clip`s. Tensor keys are `"{i}/{field}"`; the sidecar holds
`{"format": "v4s-clips", "version": 1, "clips": [{mode, instruction, num_box_frames, ...}, ...]}`.
`ClipDataset(root)` indexes every shard under a directory tree and reads clips lazily.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from models.types import Clip

FORMAT = "v4s-clips"
VERSION = 1
_ARRAY_FIELDS = ("context_frames", "context_indices", "target_frames", "target_poses", "target_box", "context_poses",
                 "context_depth")
_META_FIELDS = ("mode", "instruction", "num_box_frames", "scene_seed", "category", "instance_id")


def _stem(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def _validate(clip: Clip, i: int) -> None:
    def bad(msg: str) -> ValueError:
        return ValueError(f"clip {i}: {msg}")

    if clip.mode not in ("grounding", "navigation"):
        raise bad(f"mode must be 'grounding' or 'navigation', got {clip.mode!r}")
    for name in ("context_frames", "target_frames"):
        a = getattr(clip, name)
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3:
            raise bad(f"{name} must be uint8 (N, H, W, 3), got {getattr(a, 'dtype', type(a))} {getattr(a, 'shape', '')}")
    n, f = len(clip.context_frames), len(clip.target_frames)
    if np.asarray(clip.context_indices).shape != (n,):
        raise bad(f"context_indices must have one entry per context frame ({n})")
    if np.asarray(clip.target_poses).shape != (f, 4, 4):
        raise bad(f"target_poses must be (F, 4, 4) = ({f}, 4, 4), got {np.asarray(clip.target_poses).shape}")
    if not 0 <= clip.num_box_frames < f:
        raise bad(f"num_box_frames={clip.num_box_frames} must be in [0, {f})")
    if clip.target_box is not None and np.asarray(clip.target_box).shape != (4,):
        raise bad("target_box must be (4,) x0, y0, x1, y1 or None")
    if clip.context_poses is not None and np.asarray(clip.context_poses).shape != (n, 4, 4):
        raise bad(f"context_poses must be (N, 4, 4) = ({n}, 4, 4), got {np.asarray(clip.context_poses).shape}")
    if clip.context_depth is not None and np.asarray(clip.context_depth).shape != clip.context_frames.shape[:3]:
        raise bad(f"context_depth must be (N, H, W) = {clip.context_frames.shape[:3]}, got "
                  f"{np.asarray(clip.context_depth).shape}")


def write_shard(clips: list[Clip], path: str | Path) -> None:
    """Write clips to `path.safetensors` + `path.json` (a `.safetensors`/`.json` suffix is ignored)."""
    if not clips:
        raise ValueError("write_shard needs at least one clip")
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    meta = []
    for i, c in enumerate(clips):
        _validate(c, i)
        tensors[f"{i}/context_frames"] = np.ascontiguousarray(c.context_frames)
        tensors[f"{i}/context_indices"] = np.asarray(c.context_indices, dtype=np.int64)
        tensors[f"{i}/target_frames"] = np.ascontiguousarray(c.target_frames)
        tensors[f"{i}/target_poses"] = np.asarray(c.target_poses, dtype=np.float32)
        if c.target_box is not None:
            tensors[f"{i}/target_box"] = np.asarray(c.target_box, dtype=np.float32)
        if c.context_poses is not None:
            tensors[f"{i}/context_poses"] = np.asarray(c.context_poses, dtype=np.float32)
        if c.context_depth is not None:
            tensors[f"{i}/context_depth"] = np.asarray(c.context_depth, dtype=np.float16)
        meta.append({k: getattr(c, k) for k in _META_FIELDS})
    tmp = stem.with_name(stem.name + ".tmp.safetensors")
    save_file(tensors, str(tmp))
    tmp.replace(stem.with_suffix(".safetensors"))  # atomic: readers never see half a shard
    stem.with_suffix(".json").write_text(json.dumps({"format": FORMAT, "version": VERSION, "clips": meta}))


def read_shard(path: str | Path) -> list[Clip]:
    stem = _stem(path)
    meta = _read_meta(stem)
    return [_read_clip(stem, i, m) for i, m in enumerate(meta)]


def _read_meta(stem: Path) -> list[dict]:
    side = stem.with_suffix(".json")
    if not side.exists():
        raise FileNotFoundError(f"{side} missing: every shard needs its JSON sidecar (write with write_shard)")
    doc = json.loads(side.read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{side} is not a {FORMAT} sidecar (format={doc.get('format')!r})")
    return doc["clips"]


def _read_clip(stem: Path, i: int, meta: dict) -> Clip:
    with safe_open(str(stem.with_suffix(".safetensors")), framework="np") as f:
        keys = set(f.keys())
        arr = {k: f.get_tensor(f"{i}/{k}") for k in _ARRAY_FIELDS if f"{i}/{k}" in keys}
    return Clip(
        mode=meta["mode"], context_frames=arr["context_frames"], context_indices=arr["context_indices"],
        target_frames=arr["target_frames"], target_poses=arr["target_poses"], instruction=meta["instruction"],
        num_box_frames=int(meta["num_box_frames"]), target_box=arr.get("target_box"),
        scene_seed=int(meta["scene_seed"]), category=meta["category"], instance_id=int(meta["instance_id"]),
        context_poses=arr.get("context_poses"), context_depth=arr.get("context_depth"))


class ClipDataset(torch.utils.data.Dataset):
    """Every clip of every shard under `root` (recursively), optionally only one mode."""

    def __init__(self, root: str | Path, mode: str | None = None) -> None:
        self.root = Path(root)
        if mode not in (None, "grounding", "navigation"):
            raise ValueError(f"mode must be None, 'grounding' or 'navigation', got {mode!r}")
        if not self.root.exists():
            raise FileNotFoundError(f"clip directory {self.root} does not exist")
        shards = sorted(p.with_suffix("") for p in self.root.rglob("*.safetensors") if not p.name.endswith(".tmp.safetensors"))
        self.index: list[tuple[Path, int, dict]] = []
        for stem in shards:
            for i, m in enumerate(_read_meta(stem)):
                if mode is None or m["mode"] == mode:
                    self.index.append((stem, i, m))
        if not self.index:
            raise ValueError(f"no {mode or ''} clips found under {self.root} (expected NAME.safetensors + NAME.json "
                             f"shards written by models.clipstore.write_shard)")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx: int) -> Clip:
        stem, i, meta = self.index[idx]
        return _read_clip(stem, i, meta)

    def modes(self) -> list[str]:
        return [m["mode"] for _, _, m in self.index]
