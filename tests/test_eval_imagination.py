"""`eval imagination` (v4s_agent/eval_imagination.py): metric definitions and one end-to-end case."""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math

import numpy as np
import pytest

from envs.geometry import intrinsics_from_hfov
from v4s_agent.eval_imagination import (
    ImaginationEvalConfig,
    psnr_uint8,
    spatial_distance,
    ssim_uint8,
)


def _scene_frame(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from models.codecs import synthetic_frames

    img = synthetic_frames(1, 64, seed)[0]
    depth = np.full((64, 64), 2.0, np.float32)
    return img, depth


def test_image_metrics():
    a, _ = _scene_frame()
    assert psnr_uint8(a, a) == 100.0
    assert ssim_uint8(a, a) == pytest.approx(1.0)
    noisy = np.clip(a.astype(int) + np.random.default_rng(0).normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert 15 < psnr_uint8(a, noisy) < 30
    assert ssim_uint8(a, noisy) < 0.9
    # 10 dB per factor 10 in MSE
    b = np.zeros_like(a)
    c = np.full_like(a, 255)
    assert psnr_uint8(b, c) == pytest.approx(0.0)


def test_spatial_distance_orders_consistency():
    K = intrinsics_from_hfov(79, 64, 64)
    img, depth = _scene_frame(3)
    same = spatial_distance(img, img, depth, K, 0.15, 1.0)
    shifted = spatial_distance(np.roll(img, 3, axis=1), img, depth, K, 0.15, 1.0)
    noise = np.random.default_rng(1).integers(0, 256, img.shape, dtype=np.uint8)
    halluc = spatial_distance(noise, img, depth, K, 0.15, 1.0)
    assert same < 0.02
    # a 3 px shift at 2 m: 3 / fx * 2 m ≈ 0.15 m for matched pixels (plus a few unmatched at the border)
    fx = K[0, 0]
    assert 0.5 * 3 / fx * 2.0 < shifted < 0.4
    assert halluc > 0.6 and halluc <= 1.0


def test_config_errors():
    with pytest.raises(ValueError, match="unknown key"):
        ImaginationEvalConfig.from_argv(["bogus=1"])
    with pytest.raises(ValueError, match="readback"):
        ImaginationEvalConfig.from_argv(["readback=magic"])
    with pytest.raises(ValueError, match="baseline"):
        ImaginationEvalConfig.from_argv(["baselines=copy_last,nope"])
    with pytest.raises(ValueError, match="split"):
        ImaginationEvalConfig.from_argv(["split=nope"])
    cfg = ImaginationEvalConfig.from_argv(["episodes=3", "navigation=false", "baselines=oracle"])
    assert cfg.episodes == 3 and cfg.navigation is False and cfg.baseline_list() == ["oracle"]


def test_end_to_end_random_model():
    """One case with an untrained tiny model (1 sampling step): every key, sane ranges, and the
    oracle (simulator renders) is centred with its box found and low SD."""
    from models.pipeline import tiny_pipeline
    from v4s_agent.eval_imagination import evaluate

    cfg = ImaginationEvalConfig(episodes=1, steps=1, seed=0)
    out = evaluate(cfg, pipe=tiny_pipeline(seed=0), progress=False)
    for k in ("IF", "IF_box", "IF_sd", "SD", "psnr_nav", "ssim_nav", "psnr_copy_last", "psnr_oracle",
              "IF_first_frame_only", "IF_no_context_cfg", "IF_oracle", "IF_copy_last", "SD_oracle", "episodes",
              "seconds"):
        assert k in out, k
    for k, v in out.items():
        if v is None or k.endswith("_se"):  # a split without cases; standard errors are checked below
            assert v is None or v >= 0.0, (k, v)
            continue
        if k.startswith(("IF", "ssim")) or k == "box_found":
            assert 0.0 <= v <= 1.0, (k, v)
        if k.startswith("SD"):
            assert 0.0 <= v <= cfg.sd_unmatched_m, (k, v)
        if k.startswith("psnr_nav_minus_"):  # paired gains: the model's PSNR minus the baseline's, case by case
            assert v == pytest.approx(out["psnr_nav"] - out["psnr_" + k.removeprefix("psnr_nav_minus_")]), k
            continue
        if k.startswith("psnr"):  # psnr_*_per_frame: one value per frame index
            for x in v if isinstance(v, list) else [v]:
                assert 0.0 < x <= 100.0 and math.isfinite(x), (k, v)
    assert out["episodes"] == 1
    assert out["IF_oracle"] == 1.0 and out["IF_box_oracle"] == 1.0
    assert out["SD_oracle"] < 0.2
    assert out["IF_box"] == 0.0  # an untrained model draws no red box
    # context use: the split by where the target is, with case counts and standard errors
    assert out["cases_in_view"] + out["cases_out_of_view"] == out["episodes"] == 1
    where = "in_view" if out["cases_in_view"] else "out_of_view"
    other = "out_of_view" if out["cases_in_view"] else "in_view"
    for m in ("", "_copy_last", "_first_frame_only", "_oracle"):
        assert out[f"IF_{where}{m}"] == out[f"IF{m}"] and out[f"IF_{other}{m}"] is None
        assert out[f"IF_box_{where}{m}"] == out[f"IF_box{m}"]
    assert out["IF_se"] == 0.0 and out["psnr_nav_se"] == 0.0  # one case: no spread yet
    # the warp baseline (navigation only) knows the scene's geometry: it beats repeating the current view
    assert "IF_warp" not in out
    assert out["psnr_warp"] > out["psnr_copy_last"] + 2.0
    assert out["psnr_warp_filtered"] == out["psnr_warp"]  # this pipeline's composite filter is off (σ 0)
    assert out["skipped"] == 0 and out["skipped_reasons"] == {}


def test_skipped_episode_is_counted_with_its_reason():
    from dataclasses import replace

    from envs.embedded.task import make_episodes
    from models.pipeline import tiny_pipeline
    from v4s_agent.eval_imagination import _worker_evaluator, case_record, close_worker

    cfg = ImaginationEvalConfig(episodes=1, steps=1, seed=0, baselines="none")
    ev = _worker_evaluator(cfg, tiny_pipeline(seed=0))
    try:
        episode = replace(make_episodes("test", 1, seed=0)[0], target_category="unicorn")
        rec = case_record(ev, ["model"], episode, 0)
    finally:
        close_worker()
    assert rec["skipped"] and rec["reason"].startswith("no unicorn reachable within one clip")


def test_out_of_view_cases_have_the_target_only_in_the_context():
    """out_of_view=0.5 draws every other case with no instance of the target category in the current view
    (ground-truth segmentation) and the target in an older context frame; the others stay natural draws."""
    from envs.embedded.task import make_episodes
    from models.pipeline import tiny_pipeline
    from v4s_agent.eval_imagination import _worker_evaluator, close_worker

    cfg = ImaginationEvalConfig(episodes=2, seed=0, out_of_view=0.5, baselines="none")
    ev = _worker_evaluator(cfg, tiny_pipeline(seed=0))
    try:
        assert [ev.out_of_view_case(k) for k in range(6)] == [False, True] * 3
        w = ev.world
        for k, ep in enumerate(make_episodes("test", 4, seed=0)[:4]):
            if not ev.out_of_view_case(k):
                continue
            case = ev.make_case(ep, k)
            same = [o.instance_id for o in w.scene.objects if o.category == case.category]

            def most(pose, ids):
                sem = w.render_at(pose, semantic=True).semantic
                return max(int(np.count_nonzero(sem == i)) for i in ids)

            assert not case.target_in_view and case.target_in_context
            assert most(case.station.current, same) < cfg.min_target_pixels
            older = [case.station.poses[i] for i in case.context.indices[:-1]]
            assert max(most(p, [case.target.instance_id]) for p in older) >= cfg.min_target_pixels
    finally:
        close_worker()
    with pytest.raises(ValueError, match="out_of_view"):
        ImaginationEvalConfig(out_of_view=1.5)


def test_score_size_scores_navigation_at_a_common_resolution():
    """score_size resizes the generated frames and renders the truth at that size, so models of
    different resolutions are compared on one grid: an upsampled 64² video misses the detail a 128²
    render has, so the same oracle video scores lower there."""
    from models.pipeline import tiny_pipeline
    from v4s_agent.eval_imagination import evaluate

    pipe = tiny_pipeline(seed=0)
    common = dict(episodes=1, steps=1, seed=0, baselines="oracle")
    own = evaluate(ImaginationEvalConfig(**common), pipe=pipe, progress=False)
    up = evaluate(ImaginationEvalConfig(**common, score_size=128), pipe=pipe, progress=False)
    assert own["IF_oracle"] == up["IF_oracle"] == 1.0  # grounding metrics do not depend on it
    assert up["psnr_oracle"] < own["psnr_oracle"] - 0.5
    assert len(own["psnr_oracle_per_frame"]) == int(pipe.num_frames) - 1
    assert np.mean(own["psnr_oracle_per_frame"]) == pytest.approx(own["psnr_oracle"], abs=1e-3)
    with pytest.raises(ValueError, match="score_size"):
        ImaginationEvalConfig(score_size=8)


def test_nav_horizon_scores_a_common_prefix_of_frames():
    """nav_horizon scores frames 1..H only, so models that generate clips of different lengths are
    compared on the same horizon; the per-frame curve is the same frames either way."""
    from models.pipeline import tiny_pipeline
    from v4s_agent.eval_imagination import Evaluator, evaluate

    pipe = tiny_pipeline(seed=0)
    common = dict(episodes=1, steps=1, seed=0, baselines="none")
    full = evaluate(ImaginationEvalConfig(**common), pipe=pipe, progress=False)
    short = evaluate(ImaginationEvalConfig(**common, nav_horizon=2), pipe=pipe, progress=False)
    F = int(pipe.num_frames)
    assert full["nav_horizon"] == len(full["psnr_nav_per_frame"]) == F - 1
    assert short["nav_horizon"] == len(short["psnr_nav_per_frame"]) == 2
    assert short["psnr_nav_per_frame"] == full["psnr_nav_per_frame"][:2]
    assert short["psnr_nav"] == pytest.approx(np.mean(short["psnr_nav_per_frame"]), abs=1e-3)
    assert full["psnr_nav"] == pytest.approx(np.mean(full["psnr_nav_per_frame"]), abs=1e-3)
    with pytest.raises(ValueError, match="nav_horizon"):
        ImaginationEvalConfig(nav_horizon=-1)
    with pytest.raises(ValueError, match=f"nav_horizon <= {F - 1}"):
        Evaluator(ImaginationEvalConfig(nav_horizon=F), pipe, world=None)


def test_rotation_heavy_navigation_only():
    """grounding=false scores navigation alone; nav_min_turn_deg draws cases whose commanded path turns
    one way through at least that angle (waypoint yaw is relative to the current view)."""
    from models.pipeline import tiny_pipeline
    from v4s_agent.eval_imagination import _worker_evaluator, close_worker, evaluate

    with pytest.raises(ValueError, match="nothing to evaluate"):
        ImaginationEvalConfig.from_argv(["grounding=false", "navigation=false"])
    cfg = ImaginationEvalConfig(episodes=1, steps=1, seed=0, grounding=False, baselines="copy_last",
                                nav_min_turn_deg=180, nav_max_yaw_deg=20, split="val")
    pipe = tiny_pipeline(seed=0)
    out = evaluate(cfg, pipe=pipe, progress=False)
    assert "IF" not in out and "IF_copy_last" not in out
    assert out["episodes"] == 1 and 5 < out["psnr_nav"] < 60 and 5 < out["psnr_copy_last"] < 60
    ev = _worker_evaluator(cfg, pipe)
    from envs.embedded.task import make_episodes

    case = ev.make_case(make_episodes("val", 1, seed=0)[0], 0)
    close_worker()
    yaw = np.unwrap(case.nav_waypoints[:, 3])
    assert abs(yaw[-1]) >= np.radians(180) - 1e-6 and np.all(np.abs(np.diff(yaw)) <= np.radians(20) + 1e-9)
