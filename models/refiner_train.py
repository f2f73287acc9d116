"""`python -m models.refiner_train data=DIR[,DIR...] val=DIR out=DIR [steps=4000 threads=1 ...]` — trains the cache
refiner (models/cache_refiner.py) of a trained pipeline on the navigation clips of `data`, the pipeline frozen.

First, once: every navigation clip's rollout is run through the pipeline as it is (its own steps and guidance, the
sampling seeds `seeds`; `composite` off, so the decoded frames) and, per target frame, the model's decoded frame, the
filtered cache (the pipeline's `composite_smooth`, holes from the current view), the validity mask, the current view
and the ground truth (the clip's frame resized to the model resolution) are stored in
`frames-{train,val}.safetensors` under `frames` (default `out`; reused by any run with the same pipeline, clips and seeds). Then the refiner trains with the mean squared error of
the refined frame against the truth on target frames 1..F−1 (frame 0 is the given current view; the eval scores the
same frames), Adam with a cosine decay, batches of frames drawn at random, left-right mirroring.

`inputs=no_model` trains the same net with the model's frame replaced by the filtered cache: the ablation that says
what the imagination adds to a learned inpainter. Every `eval_every` steps the learning curve gets one line
(out/metrics.jsonl, appended): on the `val` clips, PSNR per frame averaged per clip then over clips (as the eval),
for the refined frames and, at the start, for the filtered cache and the `composite=warp` frames. Writes out/refiner/
(safetensors) and, with `export=DIR`, the pipeline with the refiner and `composite=refine` (fp16 storage, as shipped).
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.config import check_at_least, check_choice, cli_config, json_command

FIELDS = ("decoded", "cache", "valid", "current", "truth")


@dataclass
class RefinerTrainConfig:
    data: str = ""  # comma list of clip directories (models.data shards); their navigation clips are used
    val: str = ""  # clip directory for the learning curve ("" = none)
    eval_every: int = 250  # steps between two points of the learning curve
    out: str = ""
    frames: str = ""  # where the precomputed rollout frames are kept ("" = out): two runs on one pipeline share them
    pipeline: str = ""  # the trained pipeline whose rollouts the refiner corrects ("" = the shipped one)
    export: str = ""  # write the pipeline + refiner here, composite=refine
    inputs: str = "model"  # "model" | "no_model" (the ablation: the model's frame replaced by the filtered cache)
    seeds: int = 1  # sampling seeds per clip (0..seeds-1): more rollouts of the same clip, a data augmentation
    steps: int = 4000
    batch_size: int = 32  # frames
    lr: float = 1e-3
    channels: int = 16
    levels: int = 3
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if not self.data or not self.out:
            raise ValueError("data=DIR[,DIR...] and out=DIR are required")
        check_at_least(self, seeds=1, steps=1, batch_size=1, channels=1, levels=1, eval_every=1, threads=1)
        check_choice("inputs", self.inputs, ("model", "no_model"))
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@torch.no_grad()
def rollout_frames(pipe: Any, clips: Any, seeds: int) -> dict[str, np.ndarray]:
    """Per navigation clip, what the refiner reads and the truth (uint8): decoded (M, seeds, F, H, W, 3), cache
    (M, F, H, W, 3), valid (M, F, H, W), current (M, H, W, 3), truth (M, F, H, W, 3)."""
    from envs.geometry import matrices_to_waypoints
    from models.conditioning import relative_to, resize_frames, waypoints_to_c2w
    from models.types import VideoContext
    from models.warp import filtered_cache

    s = pipe.settings
    plain = replace(s, composite="none")
    out: dict[str, list[np.ndarray]] = {k: [] for k in FIELDS}
    for c in clips:
        if c.context_depth is None or c.context_poses is None:
            raise ValueError("the refiner needs navigation clips with context depth and poses "
                             "(regenerate them with python -m models.data)")
        ctx = VideoContext(resize_frames(c.context_frames, s.height, s.width), c.context_indices,
                           np.asarray(c.context_poses, dtype=np.float64), c.context_depth.astype(np.float32))
        wp = matrices_to_waypoints(relative_to(np.asarray(c.target_poses, dtype=np.float64)))
        pipe.settings = plain  # the decoded frames, before any composite
        try:
            out["decoded"].append(np.stack([pipe.generate(ctx, None, wp, seed=k).frames[0] for k in range(seeds)]))
        finally:
            pipe.settings = s
        images, valid = pipe.warp_view(ctx, relative_to(waypoints_to_c2w(wp)))
        out["cache"].append(filtered_cache(images, valid, s.composite_smooth))
        out["valid"].append(valid.astype(np.uint8))
        out["current"].append(ctx.frames[-1])
        out["truth"].append(resize_frames(c.target_frames, s.height, s.width))
    return {k: np.stack(v) for k, v in out.items()}


def cached_frames(pipe: Any, dirs: str, seeds: int, file: Path, key: str) -> dict[str, np.ndarray]:
    """`rollout_frames` of the navigation clips of `dirs`, stored in `file` (safetensors) and reused when its
    `key` (pipeline, clips, seeds) matches."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from models.clipstore import ClipDataset

    if file.exists():
        with safe_open(str(file), "np") as f:
            if (f.metadata() or {}).get("key") == key:
                return {k: f.get_tensor(k) for k in FIELDS}
    clips = [c for d in dirs.split(",") for c in ClipDataset(d.strip(), mode="navigation")]
    if not clips:
        raise ValueError(f"no navigation clips under {dirs}")
    t0 = time.perf_counter()
    arrays = rollout_frames(pipe, clips, seeds)
    print(f"rollouts: {len(clips)} clips × {seeds} seeds from {dirs} ({time.perf_counter() - t0:.0f} s)",
          file=sys.stderr, flush=True)
    save_file(arrays, str(file), metadata={"key": key})
    return arrays


def frame_batch(refiner: Any, d: dict[str, np.ndarray], clip: np.ndarray, seed: np.ndarray, frame: np.ndarray
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The refiner's inputs (B, 10, H, W), base frames and truth (B, 3, H, W) in [-1, 1] for (clip, seed, frame)."""
    from models.cache_refiner import to_unit

    x, base = refiner.inputs(d["decoded"][clip, seed, frame], d["cache"][clip, frame], d["valid"][clip, frame],
                             d["current"][clip])
    return x, base, to_unit(d["truth"][clip, frame])


@torch.no_grad()
def psnr_per_clip(refiner: Any, d: dict[str, np.ndarray], which: str = "refined") -> np.ndarray:
    """(M,) PSNR per clip (sampling seed 0, frames 1..F−1, the mean of per-frame PSNRs) of `which`: the refined
    frames, the base frames (`composite=warp`, or the cache for a no_model refiner) or the filtered cache."""
    from models.cache_refiner import to_unit

    refiner.eval()
    m, f = d["truth"].shape[:2]
    out = np.zeros(m)
    for i in range(m):
        frames = np.arange(1, f)
        x, base, truth = frame_batch(refiner, d, np.full(f - 1, i), np.zeros(f - 1, int), frames)
        y = base + refiner(x) if which == "refined" else base if which == "base" else to_unit(d["cache"][i, frames])
        q = ((y + 1) * 127.5).round().clamp(0, 255)  # as uint8 frames, like the eval
        mse = ((q - (truth + 1) * 127.5) ** 2).mean((1, 2, 3)).clamp_min(1e-10)
        out[i] = float((10 * torch.log10(255.0**2 / mse)).mean())
    refiner.train()
    return out


def train(cfg: RefinerTrainConfig) -> dict[str, Any]:
    from models.cache_refiner import CacheRefiner
    from models.pipeline import DEFAULT_CHECKPOINT, ImaginationPipeline

    torch.set_num_threads(cfg.threads)
    source = Path(cfg.pipeline) if cfg.pipeline else DEFAULT_CHECKPOINT
    pipe = ImaginationPipeline.from_pretrained(source)
    if pipe.settings.composite == "none":
        raise ValueError(f"the pipeline at {source} has composite=none: the refiner corrects a composite "
                         f"(set composite=warp and composite_smooth in its model_index.json)")
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in source.rglob("*") if p.is_file() and "refiner" not in p.parts)
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in files if p.suffix in (".safetensors", ".json")))
    key = lambda dirs: json.dumps({"pipeline": digest.hexdigest()[:16], "data": dirs, "seeds": cfg.seeds})  # noqa: E731
    frames_dir = Path(cfg.frames or cfg.out)
    frames_dir.mkdir(parents=True, exist_ok=True)
    tr = cached_frames(pipe, cfg.data, cfg.seeds, frames_dir / "frames-train.safetensors", key(cfg.data))
    va = cached_frames(pipe, cfg.val, 1, frames_dir / "frames-val.safetensors", key(cfg.val)) if cfg.val else None
    m, s, f = tr["decoded"].shape[:3]
    torch.manual_seed(cfg.seed)  # the refiner's initial weights and the batches
    rng = np.random.default_rng(cfg.seed)
    refiner = CacheRefiner(channels=cfg.channels, levels=cfg.levels, inputs=cfg.inputs).train()
    opt = torch.optim.Adam(refiner.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, cfg.steps) / cfg.steps)))
    log = (out_dir / "metrics.jsonl").open("a")  # appended: a rerun adds its curve after the last one
    t0 = time.perf_counter()

    def write(row: dict[str, Any]) -> None:
        log.write(json.dumps(row) + "\n")
        log.flush()
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), file=sys.stderr)

    row: dict[str, Any] = {"step": 0, "inputs": cfg.inputs, "clips": int(m), "seeds": int(s)}
    if va is not None:
        for which in ("cache", "base", "refined"):
            p = psnr_per_clip(refiner, va, which)
            row[f"val_psnr_{which}"], row[f"val_psnr_{which}_se"] = float(p.mean()), float(p.std(ddof=1) / math.sqrt(len(p)))
        row["val_clips"] = len(va["truth"])
    write(row)
    for step in range(1, cfg.steps + 1):
        clip, seed = rng.integers(0, m, cfg.batch_size), rng.integers(0, s, cfg.batch_size)
        x, base, truth = frame_batch(refiner, tr, clip, seed, rng.integers(1, f, cfg.batch_size))
        if rng.random() < 0.5:  # mirror left-right: every input and the truth together
            x, base, truth = x.flip(-1), base.flip(-1), truth.flip(-1)
        loss = ((base + refiner(x) - truth) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            row = {"step": step, "inputs": cfg.inputs, "loss": loss.item(), "seconds": time.perf_counter() - t0}
            if va is not None:
                p = psnr_per_clip(refiner, va)
                row["val_psnr_refined"], row["val_psnr_refined_se"] = float(p.mean()), float(p.std(ddof=1) / math.sqrt(len(p)))
            write(row)
    refiner.eval().save_pretrained(out_dir / "refiner", safe_serialization=True)
    (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    if cfg.export:
        pipe.register_modules(refiner=refiner)
        pipe.settings = replace(pipe.settings, composite="refine")
        pipe.save_pretrained(cfg.export, torch_dtype=torch.float16)
    return {"out": str(out_dir), "clips": int(m), **row}


def main(argv: list[str] | None = None) -> int:
    cfg = cli_config(RefinerTrainConfig, list(sys.argv[1:] if argv is None else argv))
    return json_command(lambda: train(cfg), errors=(FileNotFoundError, ValueError))


if __name__ == "__main__":
    raise SystemExit(main())
