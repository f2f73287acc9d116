"""Inverse dynamics: a small CNN that reads (dforward, dyaw) off a pair of consecutive frames.

Unlike the flow fit it needs no depth (a plain-webcam rig, or frames far from the current view),
and its metric scale is learnt from the simulator. Trained on frame pairs rendered in train-split
scenes with random small moves (dforward in [0, 0.3] m, dyaw in [-35, 35] deg, the path step
convention of planners/readback/path.py); weights in safetensors with their config as metadata.
Test-time augmentation: the mirrored pair must give the same dforward and the opposite dyaw; their
disagreement is the confidence.
"""
from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from envs.config import check_at_least
from planners.readback.path import PathEstimate, step_matrix

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "inverse_dynamics.safetensors"
MAX_FORWARD = 0.3  # metres; the training range of dforward
MAX_YAW = math.radians(35.0)  # the training range of |dyaw|


@dataclass(frozen=True)
class IDMConfig:
    size: int = 64  # input resolution (frames are resized to size x size with INTER_AREA)
    width: int = 32  # channels of the first conv layer

    def __post_init__(self) -> None:
        if self.size < 32 or self.size % 16:
            raise ValueError(f"size must be a multiple of 16, >= 32, got {self.size}")
        check_at_least(self, width=4)


class InverseDynamics(nn.Module):
    """(B, 2, H, W, 3) uint8 frame pairs -> (B, 2) (dforward m, dyaw rad). Input: both frames and
    their difference; a flattened head (not global pooling) keeps where in the image things move,
    which is what tells a forward move (expansion) from a turn (uniform shift)."""

    def __init__(self, cfg: IDMConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or IDMConfig()
        w = self.cfg.width

        def block(i: int, o: int, k: int = 3) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, k, stride=2, padding=k // 2), nn.GroupNorm(8, o), nn.ReLU(inplace=True))

        self.features = nn.Sequential(block(9, w, 5), block(w, 2 * w), block(2 * w, 3 * w), block(3 * w, 4 * w))
        s = self.cfg.size // 16
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * s * s, 128), nn.ReLU(inplace=True), nn.Linear(128, 2))
        self.register_buffer("scale", torch.tensor([MAX_FORWARD, MAX_YAW], dtype=torch.float32))

    def prepare(self, pairs: torch.Tensor) -> torch.Tensor:
        x = pairs.float() / 127.5 - 1.0  # (B, 2, H, W, 3)
        a, b = x[:, 0].permute(0, 3, 1, 2), x[:, 1].permute(0, 3, 1, 2)
        return torch.cat([a, b, b - a], dim=1)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        """Normalised output (dforward / 0.3 m, dyaw / 35 deg); multiply by `self.scale` for units."""
        return self.head(self.features(self.prepare(pairs)))

    @torch.no_grad()
    def predict(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2, H, W, 3) uint8 -> (steps (N, 2) in metres/radians, mirror disagreement (N, 2))."""
        self.eval()
        t = torch.from_numpy(np.ascontiguousarray(pairs))
        y = self(t) * self.scale
        ym = self(torch.flip(t, dims=[3])) * self.scale  # mirrored images: same forward, opposite yaw
        ym = ym * torch.tensor([1.0, -1.0])
        return (0.5 * (y + ym)).numpy().astype(np.float64), (y - ym).abs().numpy().astype(np.float64)


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def save_idm(model: InverseDynamics, path: str | Path, meta: dict | None = None) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    md = {"config": json.dumps(asdict(model.cfg)), "meta": json.dumps(meta or {})}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=md)


def load_idm(path: str | Path) -> InverseDynamics:
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no inverse-dynamics weights at {path}; train them with "
                                "`python -m planners.readback.inverse_dynamics --out PATH`")
    with safe_open(str(path), "pt") as f:
        md = f.metadata() or {}
    model = InverseDynamics(IDMConfig(**json.loads(md.get("config", "{}"))))
    model.load_state_dict(load_file(str(path)))
    model.meta = json.loads(md.get("meta", "{}"))
    return model.eval()


_DEFAULT: InverseDynamics | None = None


def load_default_idm() -> InverseDynamics:
    """The checkpoint shipped with the package (trained here on CPU, see its `meta`)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_idm(DEFAULT_WEIGHTS)
    return _DEFAULT


def idm_path(frames: np.ndarray, model: InverseDynamics | None = None) -> PathEstimate:
    """Camera path of a video (F, H, W, 3) uint8 from per-pair inverse dynamics. Confidence is
    1 - the mirrored-pair disagreement relative to the training ranges."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (F, H, W, 3), got {frames.dtype} {frames.shape}")
    if len(frames) < 2:
        raise ValueError(f"need at least 2 frames to read a path, got {len(frames)}")
    model = model or load_default_idm()
    f = _resize(frames, model.cfg.size)
    pairs = np.stack([f[:-1], f[1:]], axis=1)
    with torch.inference_mode():
        steps, dis = model.predict(pairs)
    steps[:, 0] = np.clip(steps[:, 0], 0.0, None)  # the agent never reverses
    rel = dis / np.array([MAX_FORWARD, MAX_YAW])
    conf = float(np.clip(1.0 - rel.mean() * 2.0, 0.0, 1.0))
    return PathEstimate.from_steps(steps, conf, "idm")


# ------------------------------------------------------------------------------------ training data
def idm_readback(frames: np.ndarray, depth: np.ndarray | None, K: np.ndarray, poses: np.ndarray | None = None,
                 cfg: None = None) -> PathEstimate:
    """The `idm` read-back (planners.readback.READBACKS): the shipped model, no depth needed."""
    return idm_path(frames)


class _SharedWorld:
    """One EmbeddedWorld (one GL context) moved from scene to scene."""

    def __init__(self) -> None:
        self.world = None

    def __call__(self, scene_seed: int, render_size: int):
        from envs.embedded.config import WorldConfig
        from envs.embedded.world import EmbeddedWorld

        if self.world is None or self.world.width != render_size:
            self.world = EmbeddedWorld(WorldConfig(width=render_size, height=render_size), scene_seed=scene_seed)
        self.world.load_scene(scene_seed)
        return self.world


def _navigable_xz(world, rng: np.random.Generator) -> np.ndarray:
    p = np.asarray(world.navgrid.sample_navigable(rng), dtype=np.float64).reshape(-1)
    return p[[0, 2]] if p.size == 3 else p[:2]


def frame_pairs(scene_seeds: list[int], pairs_per_scene: int, size: int = 64, render_size: int = 128, seed: int = 0,
                world_factory: Callable[[int, int], object] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Simulator frame pairs with random small moves: ((N, 2, size, size, 3) uint8, (N, 2) steps).
    Rendered at `render_size` and area-downsampled, as the video model's training clips are; the
    second pose stays on navigable floor (else the move is shortened to a turn in place)."""
    from envs.geometry import matrix_to_pose, pose_to_matrix
    from envs.types import Pose

    make = world_factory or _SharedWorld()
    rng = np.random.default_rng(seed)
    X, Y = [], []
    for s in scene_seeds:
        world = make(int(s), render_size)
        h = float(getattr(getattr(world, "cfg", None), "sensor_height", 0.88))
        for _ in range(pairs_per_scene):
            xz = _navigable_xz(world, rng)
            p0 = Pose((float(xz[0]), h, float(xz[1])), float(rng.uniform(-np.pi, np.pi)))
            df, dy = float(rng.uniform(0.0, MAX_FORWARD)), float(rng.uniform(-MAX_YAW, MAX_YAW))
            p1 = matrix_to_pose(pose_to_matrix(p0) @ step_matrix(df, dy))
            if not world.navgrid.is_navigable(np.array([p1.position[0], p1.position[2]])):
                df = 0.0
                p1 = matrix_to_pose(pose_to_matrix(p0) @ step_matrix(0.0, dy))
            a, b = world.render_at(p0).rgb, world.render_at(p1).rgb
            X.append(_resize(np.stack([a, b]), size))
            Y.append((df, dy))
    return np.stack(X).astype(np.uint8), np.asarray(Y, dtype=np.float64)


def evaluate_idm(model: InverseDynamics, X: np.ndarray, Y: np.ndarray) -> dict[str, float]:
    """Mean/90th-percentile absolute errors (forward m, yaw deg) on pairs X with truth Y."""
    pred = np.concatenate([model.predict(X[i : i + 256])[0] for i in range(0, len(X), 256)])
    pred[:, 0] = np.clip(pred[:, 0], 0.0, None)
    e = np.abs(pred - Y)
    return {"fwd_mae_m": float(e[:, 0].mean()), "fwd_p90_m": float(np.percentile(e[:, 0], 90)),
            "yaw_mae_deg": float(np.degrees(e[:, 1]).mean()), "yaw_p90_deg": float(np.degrees(np.percentile(e[:, 1], 90))),
            "n": int(len(X))}


def train_inverse_dynamics(out: str | Path, steps: int = 4000, train_scenes: int = 200, pairs_per_scene: int = 60,
                           val_scenes: int = 20, batch: int = 64, lr: float = 2e-3, seed: int = 0,
                           cfg: IDMConfig | None = None, world_factory=None, log=print) -> dict[str, float]:
    """Render pairs from train-split scenes, train, measure on val-split scenes, save to `out`.
    Returns the validation metrics (also stored in the checkpoint's metadata)."""
    from envs.splits import split_seeds

    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got {steps}, {batch}")
    torch.manual_seed(seed)
    cfg = cfg or IDMConfig()
    t0 = time.time()
    Xtr, Ytr = frame_pairs(split_seeds("train", train_scenes), pairs_per_scene, cfg.size, seed=seed, world_factory=world_factory)
    Xva, Yva = frame_pairs(split_seeds("val", val_scenes), pairs_per_scene, cfg.size, seed=seed + 1, world_factory=world_factory)
    log(f"[idm] rendered {len(Xtr)} train / {len(Xva)} val pairs in {time.time() - t0:.0f}s")
    model = InverseDynamics(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(seed)
    Xt, Yt = torch.from_numpy(Xtr), torch.from_numpy(Ytr).float()
    scale = model.scale
    t1 = time.time()
    for it in range(steps):
        model.train()
        idx = torch.from_numpy(rng.integers(0, len(Xt), batch))
        x, y = Xt[idx].clone(), Yt[idx].clone()
        flip = torch.from_numpy(rng.random(batch) < 0.5)
        x[flip] = torch.flip(x[flip], dims=[3])  # mirror: same forward, opposite yaw
        y[flip, 1] = -y[flip, 1]
        gain = torch.from_numpy(rng.uniform(0.8, 1.2, (batch, 1, 1, 1, 1))).float()  # same exposure change on both frames
        x = (x.float() * gain).clamp(0, 255).to(torch.uint8)
        loss = nn.functional.smooth_l1_loss(model(x), y / scale, beta=0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % 200 == 0 or it == steps - 1:
            log(f"[idm] step {it} loss {loss.item():.4f} ({time.time() - t1:.0f}s)")
    model.eval()
    metrics = evaluate_idm(model, Xva, Yva)
    metrics.update(train_pairs=int(len(Xtr)), steps=int(steps), train_seconds=round(time.time() - t1, 1))
    log(f"[idm] val: {json.dumps(metrics)}")
    save_idm(model, out, meta=metrics)
    return metrics


@dataclass
class IDMTrainConfig:
    """`python -m planners.readback.inverse_dynamics out=... steps=4000 train_scenes=200 ...`."""

    out: str = str(DEFAULT_WEIGHTS)
    steps: int = 4000
    train_scenes: int = 200
    pairs_per_scene: int = 60
    val_scenes: int = 20
    seed: int = 0


def main(argv: list[str] | None = None) -> int:
    from envs.config import cli_config

    a = cli_config(IDMTrainConfig, sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(1)
    m = train_inverse_dynamics(a.out, a.steps, a.train_scenes, a.pairs_per_scene, a.val_scenes, seed=a.seed,
                               log=lambda s: print(s, file=sys.stderr, flush=True))
    print(json.dumps(m))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
