"""What the agent already knows, given to the model: context cameras and the warp geometry prior.

The splatting (models.warp) against the real renderer, the zero-initialised layers (a model without
them computes the same), the one-line errors when poses or depth are missing, and a few training
steps with both options from the real tiny transformer.
"""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from synthetic_clips import make_clips

from envs.geometry import pose_to_matrix
from envs.types import Pose
from models.clipstore import write_shard
from models.path_head import PathHead
from models.pipeline import ImaginationPipeline, tiny_pipeline
from models.train import main as train_main
from models.types import VideoContext
from models.warp import composite, splat, warp_frames

torch.set_num_threads(2)
HFOV = 79.0


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / max(mse, 1e-12))


# ------------------------------------------------------------------------------------ the splat
def test_splat_returns_a_frame_in_its_own_camera_and_keeps_the_nearest_point():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    depth = rng.uniform(1.0, 4.0, (1, 16, 16)).astype(np.float32)
    T = pose_to_matrix(Pose((1.0, 1.2, -2.0), 0.7, 0.1))[None]
    img, valid = splat(frame, depth, T, T, HFOV)
    assert valid.all() and np.array_equal(img[0], frame[0])
    # two frames from one camera: a red wall at 1 m in front of a blue one at 3 m; the red one wins
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((16, 16, 3), np.uint8)
    blue[..., 2] = 255
    for order in ((red, blue, 1.0, 3.0), (blue, red, 3.0, 1.0)):
        frames = np.stack(order[:2])
        depths = np.stack([np.full((16, 16), order[2]), np.full((16, 16), order[3])])
        img, _ = splat(frames, depths, np.concatenate([T, T]), T, HFOV)
        assert (img[0, ..., 0] == 255).all() and (img[0, ..., 2] == 0).all()
    # a tie (the same surface in two frames): the later frame wins, whatever the thread count
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            img, _ = splat(np.stack([red, blue]), np.full((2, 16, 16), 2.0), np.concatenate([T, T]), T, HFOV)
            assert (img[0, ..., 2] == 255).all() and (img[0, ..., 0] == 0).all()
    finally:
        torch.set_num_threads(threads)
    # turned 90°: nothing of the frame is in view, all holes, filled from the fallback
    turned = pose_to_matrix(Pose((1.0, 1.2, -2.0), 0.7 + math.pi / 2, 0.1))[None]
    img, valid = warp_frames(frame, depth, T, turned, HFOV, fill=red)
    assert not valid.any() and np.array_equal(img[0], red)


def _reference_cases() -> list[tuple]:
    """Seeded splat inputs: depth ties, invalid (0) depths, depth maps at twice the frames' resolution,
    forward motion (cracks the 2 × 2 footprint fills), a target at a source camera, another size."""
    rng = np.random.default_rng(7)
    cases = []
    for k in range(4):
        n, size = 3 + k, 24 if k % 2 else 16
        frames = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        if k % 2:
            depths = rng.choice(np.array([0.0, 1.0, 2.0, 2.5], np.float32), (n, 2 * size, 2 * size))
        else:
            depths = rng.uniform(0.5, 5.0, (n, size, size)).astype(np.float32)
        src = np.stack([pose_to_matrix(Pose((0.1 * i, 1.2, 0.05 * i), 0.35 * i, 0.0)) for i in range(n)])
        last = (0.1 * (n - 1), 1.2, 0.05 * (n - 1))
        tgt = np.stack([src[-1]] + [pose_to_matrix(Pose((last[0], last[1], last[2] - 0.3 * j), 0.35 * (n - 1) + 0.1 * j,
                                                        0.05)) for j in range(1, 4)])
        cases.append((frames, depths, src, tgt, (20, 20) if k == 2 else None))
    return cases


def test_splat_gives_the_pixels_of_the_vectorised_torch_version():
    """The compiled splat against the output of the torch scatter version it replaced (stored in
    tests/data/warp_reference.npz, written by that version on `_reference_cases`): every pixel and
    every validity bit equal."""
    from pathlib import Path

    ref = np.load(Path(__file__).parent / "data" / "warp_reference.npz")
    for k, (frames, depths, src, tgt, size) in enumerate(_reference_cases()):
        img, valid = splat(frames, depths, src, tgt, HFOV, size)
        assert 0 < valid.mean() < 1  # the case has holes and splatted pixels
        assert np.array_equal(valid, ref[f"valid_{k}"]) and np.array_equal(img, ref[f"images_{k}"]), k


def test_composite_keeps_the_splat_and_fills_the_holes_from_the_model():
    """Splatted pixels come from the cache, holes from the generated frames; the smoothing filter is
    normalised by the splat's coverage, so a flat splat stays flat and the hole fill never bleeds in."""
    rng = np.random.default_rng(0)
    valid = np.ones((2, 8, 8), bool)
    valid[:, :, :3] = False
    gen = rng.integers(0, 256, (3, 2, 8, 8, 3), dtype=np.uint8)  # 3 samples
    warped = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    out = composite(gen, warped, valid)
    assert (out[:, valid] == warped[valid]).all() and (out[:, ~valid] == gen[:, ~valid]).all()
    flat = np.where(valid[..., None], 100, 7).astype(np.uint8).repeat(3, -1)  # 7: the hole fill (current view)
    out = composite(gen, flat, valid, smooth=1.5)
    assert (out[:, valid] == 100).all() and (out[:, ~valid] == gen[:, ~valid]).all()
    smoothed = composite(gen, warped, valid, smooth=1.5)
    assert (smoothed[:, ~valid] == gen[:, ~valid]).all() and not (smoothed[:, valid] == warped[valid]).all()


def test_warp_of_real_renders_predicts_a_new_view():
    """Embedded world, 64²: the render at A splatted to B (0.3 m forward, 10° turn) matches the render
    at B where it lands far better than A itself does, with depth along the viewing axis as the
    renderer gives it."""
    from envs.embedded.config import WorldConfig
    from envs.embedded.world import EmbeddedWorld
    from envs.geometry import apply_relative

    world = EmbeddedWorld(WorldConfig(width=64, height=64, hfov_deg=HFOV, render_semantic=False), scene_seed=100000)
    try:
        xz = world.navgrid.sample_navigable(np.random.default_rng(0))
        a = Pose((float(xz[0]), float(world.cfg.sensor_height), float(xz[1])), 0.3)
        b = apply_relative(a, np.array([0.0, 0.0, -0.3]), np.array([math.radians(10), 0.0, 0.0]))
        oa, ob = world.render_at(a, semantic=False), world.render_at(b, semantic=False)
    finally:
        world.close()
    img, valid = splat(oa.rgb[None], oa.depth[None], pose_to_matrix(a)[None], pose_to_matrix(b)[None], HFOV)
    assert valid.mean() > 0.7
    m = valid[0]
    assert _psnr(img[0][m], ob.rgb[m]) > _psnr(oa.rgb[m], ob.rgb[m]) + 5.0


# ------------------------------------------------------------------------------------ the model
@pytest.fixture(scope="module")
def prior_pipe():
    pipe = tiny_pipeline(seed=0, height=32, width=32, num_frames=6, num_box_frames=2, num_inference_steps=1,
                         guidance_scale=2.0)
    pipe.transformer.add_geometry_layer(pipe.geometry_channels)
    return pipe


def _with(pipe: ImaginationPipeline, **settings) -> ImaginationPipeline:
    return ImaginationPipeline(pipe.transformer, pipe.codec, pipe.text_encoder, pipe.scheduler,
                               replace(pipe.settings, **settings))


def _context(n: int = 4, size: int = 32) -> VideoContext:
    clip = make_clips(1, num_frames=6, num_box_frames=2, num_context=n, size=size)[0]
    return VideoContext(clip.context_frames, clip.context_indices, poses=clip.context_poses,
                        depths=clip.context_depth.astype(np.float32))


def test_zero_layers_leave_the_model_unchanged_and_cache_agrees(prior_pipe):
    """A fresh geometry layer is zero: navigation with the warp prior equals navigation without it.
    Context cameras go through the camera layer (here made non-zero): they change the video, and the
    context cache gives what the full pass gives."""
    ctx = _context()
    wp = np.zeros((6, 6))
    wp[:, 2] = -0.1 * np.arange(6)
    plain = _with(prior_pipe)(ctx, waypoints=wp, seed=1).frames
    warped = _with(prior_pipe, geometry_prior="warp")
    out = warped(ctx, waypoints=wp, seed=1)
    assert np.array_equal(out.frames, plain) and out.meta["geometry_seconds"] > 0
    # composite=warp: the same rollout with the pixels the splat knows put back, once per sample
    from models.conditioning import relative_to, waypoints_to_c2w

    wp[:, 3] = 0.3 * np.arange(6)  # and turns: the view leaves the context, there are holes
    images, valid = warped.warp_view(ctx, relative_to(waypoints_to_c2w(wp)))
    both = _with(prior_pipe, geometry_prior="warp", composite="warp")(ctx, waypoints=wp, seed=1, num_samples=2).frames
    two = warped(ctx, waypoints=wp, seed=1, num_samples=2).frames
    assert 0 < valid.mean() < 1
    assert np.array_equal(both, composite(two, images, valid)) and not np.array_equal(both, two)
    cam = prior_pipe.transformer.camera_embedding
    with torch.no_grad():
        cam.weight.normal_(0, 0.5)
    try:
        posed = _with(prior_pipe, context_poses=True)
        a = posed(ctx, instruction="a sofa", seed=1, use_context_cache=True).frames
        b = posed(ctx, instruction="a sofa", seed=1, use_context_cache=False).frames
        assert np.abs(a.astype(int) - b).max() <= 1
        assert not np.array_equal(a, _with(prior_pipe)(ctx, instruction="a sofa", seed=1).frames)
    finally:
        with torch.no_grad():
            cam.weight.zero_()


def test_missing_poses_or_depth_is_one_clear_error(prior_pipe):
    ctx = _context()
    wp = np.zeros((6, 6))
    no_depth = VideoContext(ctx.frames, ctx.indices, poses=ctx.poses)
    with pytest.raises(ValueError, match="needs the context frames' depth: this camera gives none"):
        _with(prior_pipe, geometry_prior="warp")(no_depth, waypoints=wp)
    with pytest.raises(ValueError, match="context_poses=true needs the pose of every context frame"):
        _with(prior_pipe, context_poses=True)(VideoContext(ctx.frames, ctx.indices), instruction="a sofa")
    _with(prior_pipe, geometry_prior="warp")(no_depth, instruction="a sofa")  # grounding needs no depth
    with pytest.raises(ValueError, match="geometry layer"):
        _with(tiny_pipeline(seed=0, height=32, width=32, num_frames=6, num_box_frames=2), geometry_prior="warp")


def test_training_with_both_priors_from_a_checkpoint_without_them(tmp_path):
    """Fine-tune a saved pipeline (no geometry layer) with context_poses and the warp prior: the layer
    is added at zero, trained, exported and reloaded with the settings; clips without depth are one
    line and exit code 2."""
    kw = dict(num_frames=6, num_box_frames=2, num_context=4, size=32)
    write_shard(make_clips(4, **kw), tmp_path / "clips" / "s0")
    base = tiny_pipeline(seed=0, height=32, width=32, num_frames=6, num_box_frames=2)
    head = PathHead(latent_channels=base.codec.latent_channels // base.codec.temporal_factor, hidden=32, layers=1,
                    heads=2)  # a shipped pipeline grounds along its path head's path: the fine-tune keeps the head
    base = ImaginationPipeline(base.transformer, base.codec, base.text_encoder, base.scheduler,
                               replace(base.settings, grounding_path="head"), path_head=head)
    base.save_pretrained(tmp_path / "base")
    cfg_file = tmp_path / "base" / "transformer" / "config.json"  # as saved before the geometry layer existed
    cfg_file.write_text(json.dumps({k: v for k, v in json.loads(cfg_file.read_text()).items() if k != "geometry_channels"}))
    out = tmp_path / "run"
    args = [f"data={tmp_path / 'clips'}", f"out={out}", f"init={tmp_path / 'base'}", "steps=3", "batch_size=2",
            "warmup_steps=1", "lr=1e-2", "log_every=1", "context_poses=true", "geometry_prior=warp",
            "export_fp16=false"]
    assert train_main(args) == 0
    pipe = ImaginationPipeline.from_pretrained(out / "pipeline")
    assert pipe.settings.context_poses and pipe.settings.geometry_prior == "warp"
    assert pipe.settings.grounding_path == "head"
    torch.testing.assert_close(pipe.path_head.state_dict(), head.state_dict())
    assert pipe.transformer.geometry_embedding.weight.abs().sum() > 0  # it learned from the prior
    ctx = _context()
    assert pipe(ctx, waypoints=np.zeros((6, 6))).frames.shape == (1, 6, 32, 32, 3)
    old = make_clips(2, **kw)
    for c in old:
        c.context_depth = None
    write_shard(old, tmp_path / "old" / "s0")
    assert train_main([f"data={tmp_path / 'old'}", f"out={tmp_path / 'r2'}", "geometry_prior=warp", "steps=1"]) == 2
    assert json.loads((out / "train_config.json").read_text())["geometry_prior"] == "warp"


def test_hole_weight_weights_the_navigation_loss_where_the_cache_has_holes(tmp_path, prior_pipe):
    """hole_weight=β weights each navigation latent pixel by 1 + β(1 − the warp prior's validity) and leaves
    grounding clips at 1; β=0 is the plain MSE, and the batch's random draws do not depend on β."""
    from models.clipstore import ClipDataset
    from models.train import ClipEncoder, TrainConfig, flow_loss, make_batch

    write_shard(make_clips(4, num_frames=6, num_box_frames=2, num_context=4, size=32), tmp_path / "clips" / "s0")
    encoder = ClipEncoder(_with(prior_pipe, geometry_prior="warp"), ClipDataset(tmp_path / "clips"))
    pipe = encoder.pipe

    def batch_and_loss(beta: float, weight: torch.Tensor | None = None) -> tuple[dict, torch.Tensor]:
        cfg = TrainConfig(data=str(tmp_path / "clips"), out=str(tmp_path / "run"), geometry_prior="warp",
                          hole_weight=beta)
        batch = make_batch(pipe, encoder, [0, 1, 2, 3], cfg, np.random.default_rng(0))
        if weight is not None:
            batch["loss_weight"] = weight
        with torch.no_grad():
            return batch, flow_loss(pipe.transformer, batch, torch.Generator().manual_seed(0), 1.0, "cpu")

    plain, loss0 = batch_and_loss(0.0)
    weighted, loss5 = batch_and_loss(5.0)
    assert plain["loss_weight"] is None
    for key in ("ctx", "x0", "positions", "geometry"):
        assert torch.equal(plain[key], weighted[key])
    w = weighted["loss_weight"]  # clips alternate grounding / navigation
    validity = torch.stack([encoder(i).geometry[-1].float() for i in (1, 3)])
    assert validity.min() < 0.99 and validity.max() > 0.01  # the synthetic views have holes and cover pixels
    assert torch.equal(w[[0, 2]], torch.ones_like(w[[0, 2]]))
    torch.testing.assert_close(w[[1, 3], 0], 1 + 5 * (1 - validity))
    assert abs(loss5.item() - loss0.item()) > 1e-4 * loss0.item()
    _, uniform = batch_and_loss(0.0, weight=torch.full_like(w, 3.0))  # the weighted mean of uniform weights
    torch.testing.assert_close(uniform, loss0)
    with pytest.raises(ValueError, match="geometry_prior=warp"):
        TrainConfig(data="d", out="o", hole_weight=1.0)
