"""`PathHead`: where a grounding path ends, predicted from the context (path-first grounding).

Generating the whole grounding video end to end, the tiny model does not learn where to turn: out of view the
target is ~90° away and its paths turn 6-14°, either side. The head splits grounding into WHERE and WHAT: it
reads every context frame (its codec latent, its camera relative to the current view) and the instruction, and
predicts the final camera of the grounding path relative to the current view. The pipeline then renders the path
in navigation mode along those cameras (`grounding_path="head"`) and lets the model draw the red-box frames.

Yaw is a distribution over `yaw_bins` bins of the full circle, made as a mixture over context frames: each frame
scores how much it shows the instruction's object (softmax over frames) and gives a distribution of the final yaw
in its own camera's yaw frame, rolled by its yaw relative to the current view. So the object detector is shared by
all bearings, and a frame seen 90° to the left votes for 90° to the left (a pose-aware pointer over the context).
Pitch and the final position (x right, z backward in the current camera (it looks along −z), metres) are the mixture's means.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

MIN_WALK_M = 0.1  # a predicted final position nearer than this is a turn in place (out of view, paths turn ~90°)
POSE_FEATURES = 5  # sin yaw, cos yaw, pitch, x, z of each context camera relative to the current view


def relative_camera_features(c2w: np.ndarray) -> np.ndarray:
    """(N, 5) (sin yaw, cos yaw, pitch, x, z) of each camera-to-world (N, 4, 4) relative to the last one."""
    from scipy.spatial.transform import Rotation

    c2w = np.asarray(c2w, dtype=np.float64)
    rel = np.linalg.inv(c2w[-1])[None] @ c2w
    ypr = Rotation.from_matrix(rel[:, :3, :3]).as_euler("YXZ")
    return np.stack([np.sin(ypr[:, 0]), np.cos(ypr[:, 0]), ypr[:, 1], rel[:, 0, 3], rel[:, 2, 3]], 1).astype(np.float32)


class PathHead(ModelMixin, ConfigMixin):
    """Context latents + cameras + instruction → final camera of the grounding path (see module docstring)."""

    @register_to_config
    def __init__(self, latent_channels: int = 16, text_dim: int = 384, hidden: int = 96, layers: int = 2,
                 heads: int = 4, yaw_bins: int = 24, dropout: float = 0.1) -> None:
        super().__init__()
        h = hidden
        self.text_in = nn.Linear(text_dim, h)
        self.film = nn.Linear(h, 2 * h)
        self.conv_in = nn.Conv2d(latent_channels, h, 3, padding=1)
        self.conv = nn.Sequential(nn.GELU(), nn.Conv2d(h, h, 3, padding=1), nn.GELU())
        self.pose_in = nn.Sequential(nn.Linear(POSE_FEATURES, h), nn.GELU(), nn.Linear(h, h))
        layer = nn.TransformerEncoderLayer(h, heads, 2 * h, dropout=dropout, batch_first=True, norm_first=True)
        self.mix = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.score = nn.Linear(h, 1)
        self.local_yaw = nn.Linear(h, yaw_bins)
        self.regress = nn.Linear(h, 3)  # pitch (rad), x, z (m, current camera frame)

    @property
    def bin_width(self) -> float:
        return 2 * math.pi / self.config.yaw_bins

    def forward(self, latents: torch.Tensor, cameras: torch.Tensor, text: torch.Tensor,
                mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """latents (B, N, C, h, w) per context frame, cameras (B, N, 5) (`relative_camera_features`), text
        (B, text_dim) pooled instruction embedding, mask (B, N) True where a frame is real (padding False).
        Returns yaw_log_probs (B, yaw_bins) over the final yaw relative to the current view (bin k centred on
        k·2π/bins, wrapped), pitch (B,), xz (B, 2), frame_weights (B, N)."""
        B, N = latents.shape[:2]
        if mask is None:
            mask = torch.ones(B, N, dtype=torch.bool, device=latents.device)
        t = self.text_in(text)  # B, h
        g, b = self.film(t).chunk(2, dim=-1)
        x = self.conv_in(latents.flatten(0, 1))  # BN, h, hh, ww
        x = x * (1 + g.repeat_interleave(N, 0)[:, :, None, None]) + b.repeat_interleave(N, 0)[:, :, None, None]
        x = self.conv(x)
        x = torch.cat([x.mean((2, 3)), x.amax((2, 3))], 0).view(2, B, N, -1).sum(0)
        tok = x + self.pose_in(cameras) + t[:, None]
        tok = self.mix(tok, src_key_padding_mask=~mask)
        score = self.score(tok)[..., 0].masked_fill(~mask, float("-inf"))
        w = score.softmax(-1)  # B, N
        local = self.local_yaw(tok).log_softmax(-1)  # B, N, K in each frame's own yaw frame
        K = self.config.yaw_bins
        yaw = torch.atan2(cameras[..., 0], cameras[..., 1])
        shift = torch.round(yaw / self.bin_width).long() % K  # B, N
        idx = (torch.arange(K, device=latents.device)[None, None] - shift[..., None]) % K
        rolled = local.gather(-1, idx)  # rolled[k] = local[k - shift]
        logp = torch.logsumexp(rolled + torch.log(w.clamp_min(1e-12))[..., None], dim=1)
        reg = (self.regress(tok) * w[..., None]).sum(1)
        return {"yaw_log_probs": logp, "pitch": reg[:, 0], "xz": reg[:, 1:], "frame_weights": w}

    def final_yaw(self, yaw_log_probs: torch.Tensor) -> torch.Tensor:
        """(B,) radians in (-π, π]: the most likely bin, refined by the circular mean of it and its neighbours."""
        K = self.config.yaw_bins
        p = yaw_log_probs.exp()
        k = p.argmax(-1)
        near = (k[:, None] + torch.arange(-1, 2, device=p.device)[None]) % K
        ang = near.float() * self.bin_width
        pw = p.gather(-1, near)
        return torch.atan2((pw * ang.sin()).sum(-1), (pw * ang.cos()).sum(-1))


def pooled_text(text_encoder: Any, instruction: str) -> torch.Tensor:
    """(1, dim) the instruction's token embeddings averaged over its tokens (padding rows are zero)."""
    tokens = text_encoder.encode([instruction])[0].float()
    real = tokens.abs().sum(-1) > 0
    return tokens[real].mean(0, keepdim=True) if real.any() else tokens.mean(0, keepdim=True)


def head_path_waypoints(yaw: float, pitch: float, xz: np.ndarray, path_frames: int, num_frames: int) -> np.ndarray:
    """(num_frames, 6) egocentric waypoints of a grounding path that ends at the head's camera: the
    training clips' shape (models.data.route_poses: turn to face the end, walk there, turn and tilt to the final
    yaw and pitch), `path_frames` poses evenly spaced in metres + turning at the clips' turn cost, then the final
    camera held for the box frames (a one-frame path is the current view). A final position closer than `MIN_WALK_M` is a turn in place."""
    from envs.geometry import relative_pose
    from envs.types import Pose
    from models.data import ClipGenConfig, route_poses

    turn_cost = ClipGenConfig.max_step_m / math.radians(ClipGenConfig.max_turn_deg)
    start = Pose((0.0, 0.0, 0.0), 0.0, 0.0)
    x, z = (0.0, 0.0) if float(np.hypot(*xz)) < MIN_WALK_M else (float(xz[0]), float(xz[1]))
    end = Pose((x, 0.0, z), float(yaw), float(pitch))
    # a one-frame path is the current view alone (it cannot move); the rows after it hold the end camera
    poses = route_poses(start, np.zeros((0, 2)), end, path_frames, turn_cost) if path_frames > 1 else [start]
    poses += [end] * (num_frames - path_frames)
    out = np.zeros((num_frames, 6))
    for i, p in enumerate(poses):
        out[i, :3], out[i, 3:] = relative_pose(start, p)
    return out
