"""`python -m models.path_head_train data=DIR[,DIR...] val=DIR out=DIR [steps=2500 threads=1 ...]` — trains the
path head (models/path_head.py) of a trained pipeline on the grounding clips of `data`, the pipeline frozen.

Label: the last path frame's camera (target_poses[F - num_box_frames - 1]) relative to the current view
(target_poses[0]): yaw (a soft one-hot over the head's bins, σ = 0.7 bin), pitch and floor position (squared
error). Contexts are padded to the longest in the batch and masked (never cut to the shortest: that could drop
the one frame that shows the target). Augmentation: left-right mirroring (latents flipped, yaws and x negated),
a random subset of the older context frames dropped for a share of the clips, latent noise.

Every `eval_every` steps the learning curve gets one line (out/metrics.jsonl): on the `val` clips, the share
whose predicted final yaw is within `tol_deg` of the label (24° ≈ the IF criterion's γ = 0.6 at a 79° hfov),
split by whether the target category is visible in the current view (rendered), with the context and with the
current view only (the first-frame-only baseline). Writes out/path_head/ (safetensors) and, with `export=DIR`,
the pipeline with the head and `grounding_path=head` (fp16 storage, as shipped).
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.config import check_at_least, cli_config, json_command


@dataclass
class PathHeadTrainConfig:
    data: str = ""  # comma list of clip directories (models.data shards); their grounding clips are used
    val: str = ""  # clip directory for the learning curve ("" = none)
    out: str = ""
    pipeline: str = ""  # the trained pipeline whose codec and text encoder the head reads ("" = the shipped one)
    export: str = ""  # write the pipeline + head here, grounding_path=head
    steps: int = 2500
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    hidden: int = 96
    layers: int = 2
    yaw_bins: int = 24
    drop_share: float = 0.3  # share of clips that lose some older context frames
    drop_prob: float = 0.1  # each older frame's chance to go, in those clips
    latent_noise: float = 0.1
    tol_deg: float = 24.0
    eval_every: int = 250
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if not self.data or not self.out:
            raise ValueError("data=DIR[,DIR...] and out=DIR are required")
        check_at_least(self, steps=1, batch_size=1, hidden=1, layers=1, yaw_bins=1, eval_every=1, threads=1)
        if not (0 <= self.drop_share <= 1 and 0 <= self.drop_prob <= 1):
            raise ValueError("drop_share and drop_prob must be probabilities in [0, 1]")


def path_end_label(target_poses: np.ndarray, num_box_frames: int) -> np.ndarray:
    """(yaw, pitch, x, z) of the last path frame's camera relative to the first target frame (the current view)."""
    from scipy.spatial.transform import Rotation

    tp = np.asarray(target_poses, dtype=np.float64)
    T = np.linalg.inv(tp[0]) @ tp[len(tp) - num_box_frames - 1]
    yaw, pitch, _ = Rotation.from_matrix(T[:3, :3]).as_euler("YXZ")
    return np.array([yaw, pitch, T[0, 3], T[2, 3]], dtype=np.float32)


def clip_features(pipe: Any, clips: Any) -> dict[str, Any]:
    """The head's inputs for every clip of an iterable (lists of tensors, one per clip) and the labels (M, 4)."""
    from models.types import VideoContext

    lat, cam, txt, lab = [], [], [], []
    for c in clips:
        ctx = VideoContext(c.context_frames, c.context_indices, c.context_poses)
        a, b, t = pipe.path_head_inputs(ctx, c.instruction)
        lat.append(a.half())
        cam.append(b)
        txt.append(t[0])
        lab.append(path_end_label(c.target_poses, c.num_box_frames))
    return {"lat": lat, "cam": cam, "text": torch.stack(txt), "label": torch.from_numpy(np.stack(lab))}


def in_view_flags(clips: Any, min_pixels: int = 30) -> np.ndarray:
    """Whether an instance of each clip's category is visible in its current view (rendered at 128²)."""
    from envs.embedded.config import WorldConfig
    from envs.embedded.world import EmbeddedWorld
    from envs.geometry import matrix_to_pose
    from models.data import category_in_view

    world, flags = None, []
    for c in clips:
        if world is None:
            world = EmbeddedWorld(WorldConfig(width=128, height=128, render_semantic=True), scene_seed=c.scene_seed)
        world.load_scene(c.scene_seed)
        flags.append(category_in_view(world, matrix_to_pose(c.target_poses[0].astype(np.float64)), c.category,
                                      min_pixels))
    if world is not None:
        world.close()
    return np.asarray(flags, dtype=bool)


def pad(lat: list[torch.Tensor], cam: list[torch.Tensor], keep: list[np.ndarray] | None = None
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch contexts of different lengths: zero-padded latents (B, N, C, h, w) and cameras, and the mask."""
    if keep is not None:
        lat, cam = [a[k] for a, k in zip(lat, keep)], [b[k] for b, k in zip(cam, keep)]
    n = max(len(a) for a in lat)
    L = torch.zeros(len(lat), n, *lat[0].shape[1:])
    C = torch.zeros(len(lat), n, cam[0].shape[-1])
    M = torch.zeros(len(lat), n, dtype=torch.bool)
    for i, (a, b) in enumerate(zip(lat, cam)):
        L[i, :len(a)], C[i, :len(b)], M[i, :len(a)] = a.float(), b, True
    return L, C, M


def soft_yaw_target(yaw: torch.Tensor, bins: int, sigma_bins: float = 0.7) -> torch.Tensor:
    centres = torch.arange(bins, dtype=torch.float32) * (2 * math.pi / bins)
    d = torch.remainder(yaw[:, None] - centres[None] + math.pi, 2 * math.pi) - math.pi
    t = torch.exp(-0.5 * (d / (sigma_bins * 2 * math.pi / bins)) ** 2)
    return t / t.sum(-1, keepdim=True)


def yaw_error(head: Any, out: dict[str, torch.Tensor], label: torch.Tensor) -> torch.Tensor:
    """|predicted − true| final yaw (radians, wrapped)."""
    return (torch.remainder(head.final_yaw(out["yaw_log_probs"]) - label[:, 0] + math.pi, 2 * math.pi) - math.pi).abs()


@torch.no_grad()
def evaluate(head: Any, feats: dict[str, Any], in_view: np.ndarray, tol: float) -> dict[str, Any]:
    """Share of clips with the final yaw within `tol` radians, in / out of view, full context and current only."""
    head.eval()
    res: dict[str, Any] = {}
    for name, keep in (("context", None), ("current_only", [np.array([len(a) - 1]) for a in feats["lat"]])):
        lat, cam, mask = pad(feats["lat"], feats["cam"], keep)
        out = head(lat, cam, feats["text"], mask)
        hit = (yaw_error(head, out, feats["label"]) <= tol).numpy()
        for part, m in (("in_view", in_view), ("out_of_view", ~in_view)):
            k = int(m.sum())
            p = float(hit[m].mean()) if k else float("nan")
            res[f"yaw_acc_{part}_{name}"] = p
            res[f"yaw_acc_{part}_{name}_se"] = math.sqrt(p * (1 - p) / k) if k else float("nan")
    res["cases_in_view"], res["cases_out_of_view"] = int(in_view.sum()), int((~in_view).sum())
    head.train()
    return res


def train(cfg: PathHeadTrainConfig) -> dict[str, Any]:
    from models.clipstore import ClipDataset
    from models.path_head import PathHead
    from models.pipeline import ImaginationPipeline, load_default_pipeline

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    pipe = ImaginationPipeline.from_pretrained(cfg.pipeline) if cfg.pipeline else load_default_pipeline()
    # context latents repeat each frame's code temporal_factor times (a static chunk): the head reads one
    head = PathHead(latent_channels=pipe.codec.latent_channels // pipe.codec.temporal_factor,
                    text_dim=pipe.text_encoder.dim, hidden=cfg.hidden, layers=cfg.layers, yaw_bins=cfg.yaw_bins)
    pipe.register_modules(path_head=head)
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tr = clip_features(pipe, (c for d in cfg.data.split(",") for c in ClipDataset(d.strip(), mode="grounding")))
    n_train = len(tr["lat"])
    va = va_view = None
    if cfg.val:
        val_clips = list(ClipDataset(cfg.val, mode="grounding"))
        va, va_view = clip_features(pipe, val_clips), in_view_flags(val_clips)
    print(f"features: {n_train} train, {0 if va is None else len(va['lat'])} val clips "
          f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, cfg.steps // 20)  # linear warm-up, then cosine decay
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    log = (out_dir / "metrics.jsonl").open("w")
    tol = math.radians(cfg.tol_deg)
    row: dict[str, Any] = {}
    for step in range(1, cfg.steps + 1):
        ix = rng.integers(0, n_train, cfg.batch_size)
        keep = []
        for i in ix:  # drop some older frames in a share of the clips; the current view always stays
            n = len(tr["lat"][i])
            k = np.ones(n, bool)
            if rng.random() < cfg.drop_share:
                k[:-1] = rng.random(n - 1) >= cfg.drop_prob
            keep.append(np.flatnonzero(k))
        lat, cam, mask = pad([tr["lat"][i] for i in ix], [tr["cam"][i] for i in ix], keep)
        label = tr["label"][ix].clone()
        if rng.random() < 0.5:  # mirror left-right
            lat = lat.flip(-1)
            cam[..., 0] *= -1
            cam[..., 3] *= -1
            label[:, 0] *= -1
            label[:, 2] *= -1
        lat = lat + cfg.latent_noise * torch.randn_like(lat)
        out = head(lat, cam, tr["text"][ix], mask)
        loss = -(soft_yaw_target(label[:, 0], cfg.yaw_bins) * out["yaw_log_probs"]).sum(-1).mean()
        loss = loss + ((out["pitch"] - label[:, 1]) ** 2).mean() + 0.5 * ((out["xz"] - label[:, 2:]) ** 2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            row = {"step": step, "loss": loss.item(), "seconds": time.perf_counter() - t0}
            if va is not None:
                row.update(evaluate(head, va, va_view, tol))
            log.write(json.dumps(row) + "\n")
            log.flush()
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), file=sys.stderr)
    head.eval().save_pretrained(out_dir / "path_head", safe_serialization=True)
    (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    if cfg.export:
        pipe.settings = replace(pipe.settings, grounding_path="head")
        pipe.save_pretrained(cfg.export, torch_dtype=torch.float16)
    return {"out": str(out_dir), "clips": n_train, **row}


def main(argv: list[str] | None = None) -> int:
    cfg = cli_config(PathHeadTrainConfig, list(sys.argv[1:] if argv is None else argv))
    return json_command(lambda: train(cfg), errors=(FileNotFoundError, ValueError))


if __name__ == "__main__":
    raise SystemExit(main())
