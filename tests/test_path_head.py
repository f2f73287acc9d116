"""Path-first grounding: the path head (models/path_head.py), its trainer, and `grounding_path="head"`."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.clipstore import write_shard
from models.path_head import PathHead, head_path_waypoints, relative_camera_features
from models.pipeline import ImaginationPipeline, tiny_pipeline
from models.types import VideoContext
from tests.synthetic_clips import make_clip

ROOT = Path(__file__).resolve().parents[1]


def _head(**kw) -> PathHead:
    torch.manual_seed(0)
    return PathHead(hidden=32, layers=1, heads=2, **kw).eval()


def _inputs(n: int = 5):
    g = torch.Generator().manual_seed(1)
    lat = torch.randn(2, n, 16, 8, 8, generator=g)
    yaw = torch.tensor([[0.5, 1.0, -2.0, 3.0, 0.0], [1.5, -1.0, 0.2, 2.5, 0.0]])[:, :n]
    cam = torch.stack([yaw.sin(), yaw.cos(), torch.zeros_like(yaw), torch.zeros_like(yaw), torch.zeros_like(yaw)], -1)
    mask = torch.ones(2, n, dtype=torch.bool)
    mask[1, 0] = False  # a padded frame
    return lat, cam, torch.randn(2, 384, generator=g), mask


def test_head_save_load_round_trip(tmp_path):
    head = _head()
    with torch.no_grad():  # non-zero weights everywhere, so a missing tensor would show
        for p in head.parameters():
            p.add_(0.01 * torch.randn_like(p))
    head.save_pretrained(tmp_path / "path_head", safe_serialization=True)
    assert (tmp_path / "path_head" / "diffusion_pytorch_model.safetensors").exists()
    back = PathHead.from_pretrained(tmp_path / "path_head").eval()
    assert back.config.hidden == 32 and back.config.yaw_bins == 24
    with torch.no_grad():
        a, b = head(*_inputs()), back(*_inputs())
    for k in ("yaw_log_probs", "pitch", "xz", "frame_weights"):
        torch.testing.assert_close(a[k], b[k])
    assert torch.allclose(a["yaw_log_probs"].exp().sum(-1), torch.ones(2))
    assert float(a["frame_weights"][1, 0]) == 0.0  # a padded frame gets no weight


def test_a_frame_votes_for_its_own_bearing():
    """The mixture rolls each frame's yaw distribution by its camera's yaw: rotating every context camera by one
    bin rotates the predicted distribution by one bin (the pose-aware pointer the head is built on)."""
    head = _head()
    lat, cam, text, mask = _inputs()
    step = 2 * math.pi / head.config.yaw_bins
    yaw = torch.atan2(cam[..., 0], cam[..., 1])
    rot = torch.stack([(yaw + step).sin(), (yaw + step).cos(), *cam[..., 2:].unbind(-1)], -1)
    # same frame content and weights: only the bearing moves (weights depend on camera features too, so hold them)
    with torch.no_grad():
        head.pose_in[2].weight.zero_()
        head.pose_in[2].bias.zero_()
        a, b = head(lat, cam, text, mask), head(lat, rot, text, mask)
    torch.testing.assert_close(b["yaw_log_probs"], a["yaw_log_probs"].roll(1, dims=-1))


def test_head_path_waypoints_turn_walk_turn():
    wp = head_path_waypoints(math.radians(90), -0.2, np.array([0.02, -0.03]), path_frames=8, num_frames=12)
    assert wp.shape == (12, 6)
    np.testing.assert_allclose(wp[0], 0, atol=1e-9)
    np.testing.assert_allclose(wp[7:, 3:5], [[math.radians(90), -0.2]] * 5, atol=1e-9)  # held for the box frames
    np.testing.assert_allclose(wp[:, :3], 0, atol=1e-9)  # nearer than MIN_WALK_M: a turn in place
    assert np.all(np.abs(np.diff(wp[:8, 3])) <= math.radians(20) + 1e-9)  # the clips' turn rate
    one = head_path_waypoints(1.0, 0.0, np.zeros(2), path_frames=1, num_frames=4)
    np.testing.assert_allclose(one[0], 0, atol=1e-9)
    np.testing.assert_allclose(one[1:, 3], 1.0, atol=1e-9)
    walk = head_path_waypoints(0.0, 0.0, np.array([0.0, -1.0]), path_frames=8, num_frames=12)
    np.testing.assert_allclose(walk[7, [0, 2]], [0.0, -1.0], atol=1e-9)  # 1 m straight ahead (-z)
    assert np.all(np.diff(-walk[:8, 2]) <= 0.25 + 1e-9)


def test_relative_camera_features():
    c2w = np.tile(np.eye(4), (2, 1, 1))
    c2w[0, :3, :3] = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]  # yaw +90° (turned left)
    c2w[0, :3, 3] = [1.0, 0.0, 2.0]
    f = relative_camera_features(c2w)
    np.testing.assert_allclose(f[1], [0, 1, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(f[0], [1, 0, 0, 1, 2], atol=1e-6)


def _context(clip) -> VideoContext:
    return VideoContext(clip.context_frames, clip.context_indices, clip.context_poses,
                        clip.context_depth.astype(np.float32))


def test_pipeline_grounding_path_head_video_shape_and_save_round_trip(tmp_path):
    base = tiny_pipeline(seed=0, num_inference_steps=1)
    head = PathHead(latent_channels=base.codec.latent_channels // base.codec.temporal_factor, hidden=32, layers=1,
                    heads=2).eval()
    pipe = ImaginationPipeline(base.transformer, base.codec, base.text_encoder, base.scheduler,
                               dataclasses.replace(base.settings, grounding_path="head", context_poses=True),
                               path_head=head)
    clip = make_clip("grounding", seed=3)
    out = pipe(_context(clip), instruction=clip.instruction, num_samples=2, seed=1)
    s = pipe.settings
    assert out.frames.shape == (2, s.num_frames, s.height, s.width, 3) and out.frames.dtype == np.uint8
    assert out.mode == "grounding" and out.waypoints.shape == (s.num_frames, 6)
    end = out.meta["path_head"]
    assert abs(out.waypoints[-1, 3] - end["yaw"]) < 1e-9 and len(end["frame_weights"]) == len(clip.context_frames)
    with pytest.raises(ValueError, match="pose of every context frame"):
        pipe(VideoContext(clip.context_frames, clip.context_indices), instruction=clip.instruction)
    pipe.save_pretrained(tmp_path / "p", torch_dtype=torch.float16)
    assert json.loads((tmp_path / "p" / "model_index.json").read_text())["path_head"] == ["models", "PathHead"]
    back = ImaginationPipeline.from_pretrained(tmp_path / "p")
    assert back.settings.grounding_path == "head" and isinstance(back.path_head, PathHead)
    plain = ImaginationPipeline.from_pretrained(tmp_path / "p", grounding_path="model")
    assert plain(_context(clip), instruction=clip.instruction).meta.get("path_head") is None
    with pytest.raises(ValueError, match="needs a pipeline with a path head"):
        tiny_pipeline(seed=0, grounding_path="head")


def test_trainer_smoke_writes_head_curve_and_pipeline(tmp_path):
    base = tiny_pipeline(seed=0, num_inference_steps=1, context_poses=True)
    base.save_pretrained(tmp_path / "base")
    write_shard([make_clip("grounding", seed=s) for s in range(4)], tmp_path / "clips" / "train-0")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "models.path_head_train", f"data={tmp_path / 'clips'}", f"out={tmp_path / 'run'}",
            f"pipeline={tmp_path / 'base'}", f"export={tmp_path / 'pipe'}", "steps=3", "batch_size=4", "hidden=32",
            "layers=1", "eval_every=3"]
    r = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["clips"] == 4
    assert (tmp_path / "run" / "path_head" / "config.json").exists()
    assert [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [3]
    pipe = ImaginationPipeline.from_pretrained(tmp_path / "pipe")
    assert pipe.settings.grounding_path == "head" and pipe.path_head is not None
    bad = subprocess.run([sys.executable, "-m", "models.path_head_train", "data=x"], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "out=DIR" in bad.stderr


@pytest.mark.parametrize("args, message", [
    (["grounding_path=sideways"], "grounding_path must be one of ['model', 'head']"),
    (["checkpoint=random", "grounding_path=head"], "needs a pipeline with a path head"),
])
def test_eval_bad_grounding_path_is_one_line_exit_2(args, message):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl"}
    r = subprocess.run([sys.executable, "-m", "v4s_agent.eval", "imagination", "split=val", "episodes=1",
                        "navigation=false", "baselines=none", *args], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert message in r.stderr and r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
