"""Core decisions pinned at their boundaries: each test fails if the one rule it names is changed.

The stop rule, the ObjectNav success rule, the evaluator's IF threshold, the red-box outline test,
the nav grid's segment check, and training/sampling conditioning parity. Each of these was once
mutated by hand (one-line bugs such as `gamma/2` -> `gamma`, `<=` -> `<`, a skipped end point, a
trainer RoPE call with the wrong temporal factor) and the rest of the suite stayed green.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.geometry import intrinsics_from_hfov, target_centred
from envs.metrics import objectnav_metrics
from envs.navgrid import NavGrid
from envs.types import Box2D
from models.red_box import detect_red_box, detect_red_box_frame, draw_red_box
from planners.base import is_centred, should_stop


def _box_at(cx: float, cy: float, w: float, h: float) -> Box2D:
    return Box2D(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


# ---------------------------------------------------------------- STOP rule (frame-relative)
def test_stop_centring_rule_is_half_gamma_of_the_frame():
    W = H = 100
    g = 0.6  # allowed offset: gamma/2 * W = 30 px from the centre
    assert is_centred(_box_at(50 + 29, 50, 4, 4), W, H, g)
    assert is_centred(_box_at(50 - 29, 50, 4, 4), W, H, g)
    assert not is_centred(_box_at(50 + 31, 50, 4, 4), W, H, g)  # gamma * W would accept 60 px
    assert not is_centred(_box_at(50 - 31, 50, 4, 4), W, H, g)
    assert not is_centred(_box_at(95, 50, 4, 4), W, H, g)
    # vertical only when asked
    assert is_centred(_box_at(50, 90, 4, 4), W, H, g)
    assert not is_centred(_box_at(50, 90, 4, 4), W, H, g, vertical=True)
    assert is_centred(_box_at(50, 50 + 29, 4, 4), W, H, g, vertical=True)
    # exactly at the limit counts as centred (gamma 0.5: 25 px, exact in floating point)
    assert is_centred(_box_at(75, 50, 4, 4), W, H, 0.5) and is_centred(_box_at(25, 50, 4, 4), W, H, 0.5)
    assert is_centred(_box_at(50, 75, 4, 4), W, H, 0.5, vertical=True)
    assert not is_centred(_box_at(50, 75.01, 4, 4), W, H, 0.5, vertical=True)


def test_stop_rule_needs_the_target_centred_and_within_stop_distance():
    W = H = 64
    depth = np.full((H, W), 0.75, np.float32)
    centred, aside = _box_at(32, 32, 10, 10), _box_at(60, 32, 6, 6)
    assert should_stop(centred, depth, W, H, 0.6, 1.0)
    assert should_stop(centred, depth, W, H, 0.6, 0.75)  # at the distance exactly
    assert not should_stop(centred, depth, W, H, 0.6, 0.74)
    assert not should_stop(aside, depth, W, H, 0.6, 1.0)  # near but not centred
    assert not should_stop(None, depth, W, H, 0.6, 1.0)
    assert not should_stop(centred, None, W, H, 0.6, 1.0)  # no depth: distance unknown
    far = depth.copy()
    far[27:37, 27:37] = np.nan
    assert not should_stop(centred, far, W, H, 0.6, 1.0)  # no valid depth inside the box
    # with intrinsics, a thin object (9 % of its box at 0.5 m, a wall at 2 m behind) is judged by its near part
    thin = np.full((H, W), 2.0, np.float32)
    thin[30:36, 29:35] = 0.5
    box, K = _box_at(32, 32, 20, 20), intrinsics_from_hfov(79.0, W, H)
    assert should_stop(box, thin, W, H, 0.6, 1.0, K)
    assert not should_stop(box, thin, W, H, 0.6, 1.0)


def test_if_criterion_is_half_gamma_of_the_box():
    W = H = 100
    # box 20 px wide: gamma/2 * 20 = 6 px allowed
    assert target_centred(_box_at(55.9, 50, 20, 20), W, H, 0.6)
    assert not target_centred(_box_at(56.1, 50, 20, 20), W, H, 0.6)
    assert not target_centred(_box_at(50, 56.1, 20, 20), W, H, 0.6)
    # exactly at the limit counts (gamma 0.5 of a 20 px box: 5 px, exact in floating point)
    assert target_centred(_box_at(55, 50, 20, 20), W, H, 0.5) and target_centred(_box_at(50, 45, 20, 20), W, H, 0.5)
    assert target_centred(_box_at(50, 54.5, 20, 20), W, H, 0.5)  # the vertical limit scales with the box height
    assert not target_centred(_box_at(50, 50.5, 20, 0.5), W, H, 0.5)
    assert target_centred(_box_at(50, 50, 20, 20), W, H, 2.0)
    for gamma in (0.0, 2.01):
        with pytest.raises(ValueError, match=r"gamma must be in \(0, 2\]"):
            target_centred(_box_at(50, 50, 20, 20), W, H, gamma)
    assert target_centred(_box_at(0.5, 0.5, 1, 1), 1, 1, 0.6)  # a 1-pixel frame is a frame
    for w, h in ((0, 100), (100, 0)):
        with pytest.raises(ValueError, match="frame size must be positive"):
            target_centred(_box_at(50, 50, 20, 20), w, h, 0.6)


def test_eval_uses_the_papers_gamma():
    """The evaluator's IF threshold is the paper's gamma = 0.6: a box 7 px off-centre with a 20 px
    width is not centred (gamma 0.8 would accept up to 8 px)."""
    from v4s_agent.eval_imagination import ImaginationEvalConfig

    g = ImaginationEvalConfig().gamma
    assert g == 0.6
    assert not target_centred(_box_at(57, 50, 20, 20), 100, 100, g)
    assert not target_centred(_box_at(57, 50, 20, 20), 100, 100)  # the default is the paper's gamma too


# ---------------------------------------------------------------- ObjectNav success
def test_success_rule_boundary():
    """habitat-lab ObjectNav success: STOP with the geodesic distance to a view point strictly below
    success_distance. Pinned at the boundary so a change of the comparison is caught."""
    sd = 0.1

    def success(d: float, stop: bool = True) -> float:
        return objectnav_metrics(stop, d, 2.0, 3.0, 10, success_distance=sd).success

    assert success(0.0) == 1.0
    assert success(0.0999) == 1.0
    assert success(0.1001) == 0.0
    assert success(0.0, stop=False) == 0.0
    assert success(float("inf")) == 0.0
    assert success(sd) == 0.0  # strict, as habitat-lab: d < success_distance


def test_spl_caps_efficiency_at_one():
    m = objectnav_metrics(True, 0.0, 4.0, 2.0, 10)  # path shorter than the geodesic (grid overestimate)
    assert m.spl == pytest.approx(1.0)
    m = objectnav_metrics(True, 0.0, 2.0, 4.0, 10)
    assert m.spl == pytest.approx(0.5)


def test_objectnav_metrics_fields():
    m = objectnav_metrics(True, 0.5, 2.0, 4.0, 17, collisions=3)
    assert (m.success, m.spl) == (0.0, 0.0)
    assert m.soft_spl == pytest.approx((1.0 - 0.5 / 2.0) * 2.0 / 4.0)  # progress x efficiency
    assert (m.distance_to_goal, m.path_length, m.num_steps, m.collisions) == (0.5, 4.0, 17, 3)
    assert m.extra == {"called_stop": 1.0, "start_distance": 2.0}
    m = objectnav_metrics(False, 0.05, 1.0, 1.0, 5)  # defaults: no collisions, habitat's 0.1 m
    assert (m.success, m.collisions, m.extra["called_stop"]) == (0.0, 0, 0.0)
    assert m.soft_spl == pytest.approx(0.95)  # Soft-SPL needs no STOP
    assert objectnav_metrics(True, 0.05, 1.0, 1.0, 5).success == 1.0
    assert objectnav_metrics(True, 3.0, 1.0, 1.0, 5).soft_spl == 0.0  # farther than at the start: 0, not negative
    assert objectnav_metrics(True, float("inf"), 1.0, 1.0, 5).soft_spl == 0.0
    for d0 in (0.0, float("inf"), float("nan")):  # no usable start distance: SPL undefined
        m = objectnav_metrics(True, 0.05, d0, 1.0, 5)
        assert np.isnan(m.spl) and np.isnan(m.soft_spl) and m.success == 1.0


# ---------------------------------------------------------------- nav grid collision
def test_segment_free_checks_the_end_point():
    """A move that ends just off the floor is blocked, even though every earlier sample is on it."""
    free = np.zeros((12, 12), bool)
    free[1:11, 1:11] = True
    g = NavGrid(free, origin_xz=(0.0, 0.0), resolution=0.1, agent_radius=0.0)
    edge = 1.1  # navigable cells cover x in [0.1, 1.1)
    assert g.segment_free((0.5, 0.5), (edge - 0.01, 0.5))
    assert not g.is_navigable((edge + 0.01, 0.5))
    assert not g.segment_free((0.5, 0.5), (edge + 0.01, 0.5))
    assert not g.segment_free((0.5, 0.5), (0.5, edge + 0.01))
    assert not g.segment_free((edge + 0.01, 0.5), (0.5, 0.5))  # the start point too
    # a wall in the middle of an otherwise free segment
    free2 = free.copy()
    free2[5, 1:11] = False
    g2 = NavGrid(free2, origin_xz=(0.0, 0.0), resolution=0.1, agent_radius=0.0)
    assert not g2.segment_free((0.5, 0.3), (0.5, 0.8))
    assert g2.segment_free((0.5, 0.7), (0.5, 0.9))


# ---------------------------------------------------------------- red-box read-back
def _grey(size: int = 64) -> np.ndarray:
    return np.full((size, size, 3), 110, np.uint8)


def test_red_box_needs_all_four_sides():
    frame = draw_red_box(_grey(), (16, 16, 48, 48))
    box = detect_red_box_frame(frame)
    assert box is not None and box.score > 0.8
    assert abs(box.x0 - 16) <= 1 and abs(box.x1 - 48) <= 1
    assert detect_red_box(frame) is not None
    # erase the right side: three sides of a rectangle are not a box
    open_box = frame.copy()
    open_box[:, 45:] = _grey()[:, 45:]
    b = detect_red_box_frame(open_box)
    assert b is None or b.score < 0.35  # below detect_red_box's min_confidence
    assert detect_red_box(open_box) is None


# ---------------------------------------------------------------- training / sampling parity
class _Recorder:
    """Forward pre-hook on the real transformer: records what each call gets."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls: list[dict] = []
        self.handle = module.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        hidden, timestep = args[0], args[1]
        self.calls.append({"hidden": hidden.detach().clone(), "timestep": timestep.detach().clone(),
                           "positions": kwargs["frame_positions"].detach().clone(),
                           **{k: None if kwargs.get(k) is None else kwargs[k].detach().clone()
                              for k in ("camera", "context_camera", "geometry")}})


@pytest.mark.parametrize("context_latents,priors", [("frame", False), ("group", False), ("group", True)])
def test_training_and_sampling_build_the_same_conditioning(context_latents, priors):
    """One navigation clip through the trainer's batch builder and through the sampler: identical
    RoPE positions, context latents and camera maps (with `priors`: context cameras and the warp
    geometry prior too), and the same timestep convention (t = 1000·σ, x_t = (1 − σ)·x0 + σ·noise)."""
    from synthetic_clips import make_clip

    from models.conditioning import waypoints_to_c2w
    from models.pipeline import tiny_pipeline
    from models.train import ClipEncoder, TrainConfig, _shift, flow_loss, make_batch, sample_sigmas
    from models.types import VideoContext

    pipe = tiny_pipeline(seed=0, num_frames=8, num_box_frames=0, height=32, width=32, context_latents=context_latents)
    assert pipe.codec.temporal_factor > 1  # else a trainer using factor 1 would not be caught
    clip = make_clip("navigation", seed=3, size=32, num_frames=8, num_context=6)
    rng = np.random.default_rng(0)
    way = np.zeros((8, 6))
    way[:, 0] = np.cumsum(rng.uniform(0, 0.1, 8)) - 0.05
    way[:, 2] = -np.linspace(0, 0.5, 8)
    way[:, 3] = np.linspace(0, 0.6, 8)
    way[0] = 0.0
    T0 = np.eye(4)
    T0[:3, 3] = [1.0, 0.2, -2.0]
    clip.target_poses = (T0[None] @ waypoints_to_c2w(way)).astype(np.float32)
    # the context's cameras in the same world: the current view (last context frame) is the first target
    clip.context_poses = (T0[None] @ np.linalg.inv(clip.context_poses[-1])[None] @ clip.context_poses).astype(np.float32)
    if priors:
        from dataclasses import replace

        from models.pipeline import ImaginationPipeline

        pipe.transformer.add_geometry_layer(pipe.geometry_channels)
        pipe = ImaginationPipeline(pipe.transformer, pipe.codec, pipe.text_encoder, pipe.scheduler,
                                   replace(pipe.settings, context_poses=True, geometry_prior="warp"))

    cfg = TrainConfig(data="unused", out="unused", max_context_frames=16)
    batch = make_batch(pipe, ClipEncoder(pipe, [clip]), [0], cfg, np.random.default_rng(0), dropout=False)
    rec = _Recorder(pipe.transformer)
    try:
        gen = torch.Generator().manual_seed(7)
        flow_loss(pipe.transformer, batch, gen, _shift(pipe), "cpu")
        train_call = rec.calls.pop()
        pipe(VideoContext(clip.context_frames, clip.context_indices, poses=clip.context_poses,
                          depths=clip.context_depth), waypoints=way, num_inference_steps=2, seed=0,
             use_context_cache=False)
        sample_calls = list(rec.calls)
    finally:
        rec.handle.remove()
    nc = batch["num_context_frames"]
    tf = pipe.codec.temporal_factor
    ctx_idx = clip.context_indices.astype(float)
    if context_latents == "group":  # 6 frames -> 3 latents, each at its run's last source index
        ctx_idx = ctx_idx[tf - 1 :: tf]
    assert nc == len(ctx_idx) == (len(clip.context_indices) // tf if context_latents == "group" else 6)
    for call in sample_calls:
        torch.testing.assert_close(call["positions"].double(), train_call["positions"][0].double(), rtol=0, atol=0)
        torch.testing.assert_close(call["camera"][0].float(), train_call["camera"][0].float(), rtol=0, atol=1e-6)
        torch.testing.assert_close(call["hidden"][0, :, :nc].float(), train_call["hidden"][0, :, :nc].float(),
                                   rtol=0, atol=1e-2)  # training keeps fp16 latents
        for key in ("context_camera", "geometry"):
            assert (call[key] is None) == (train_call[key] is None) == (not priors), key
            if priors:  # training keeps them in fp16
                torch.testing.assert_close(call[key][0].float(), train_call[key][0].float(), rtol=0, atol=2e-2)
    if priors:  # real signals: the context cameras differ, the warp covers part of the targets
        assert train_call["context_camera"].std(dim=2).abs().max() > 0.1
        assert 0.0 < train_call["geometry"][0, -1].mean() <= 1.0
    # RoPE: context at (index - first) / temporal factor, targets from the last context + gap
    want_ctx = (ctx_idx - ctx_idx[0]) / tf
    np.testing.assert_array_equal(train_call["positions"][0, :nc].numpy(), want_ctx)
    fl = batch["x0"].shape[2]
    np.testing.assert_array_equal(train_call["positions"][0, nc:].numpy(),
                                  want_ctx[-1] + pipe.settings.rope_gap + np.arange(fl))
    # timesteps: the sampler passes 1000·σ of the scheduler; training passes 1000·σ of its x_t
    sig = pipe.scheduler.sigmas[:-1].float()
    got = torch.stack([c["timestep"][0].float() for c in sample_calls])
    torch.testing.assert_close(got, sig * 1000, rtol=1e-5, atol=1e-3)
    gen = torch.Generator().manual_seed(7)
    x0 = batch["x0"]
    noise = torch.randn(x0.shape, generator=gen)
    sigma = sample_sigmas(1, _shift(pipe), gen)
    torch.testing.assert_close(train_call["timestep"].float(), sigma * 1000)
    xt = (1 - sigma) * x0 + sigma * noise
    torch.testing.assert_close(train_call["hidden"][:, :, nc:], xt)
