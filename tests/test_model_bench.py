"""`bench generate` contract: keys and sane values (speed targets are measured by the bench, not here)."""
from __future__ import annotations

import pytest

from models.bench import bench_generate


def test_bench_generate_reports_contract_keys():
    r = bench_generate(["steps=2", "frames=4", "context_frames=3", "repeats=1", "checkpoint=random"])
    for k in ("seconds_per_rollout", "seconds_per_rollout_no_cache", "cache_speedup", "frames", "context_frames", "steps"):
        assert k in r
    assert (r["frames"], r["context_frames"], r["steps"]) == (4, 3, 2)
    assert r["seconds_per_rollout"] > 0 and r["seconds_per_rollout_no_cache"] > 0
    assert r["cache_video_max_abs_diff"] <= 2  # the cached sampler makes the same video (float rounding aside)
    assert r["warp_prior_seconds"] > 0
    assert r["warp_prior_vs_grounding_rollout"] == pytest.approx(r["warp_prior_seconds"] / r["seconds_per_rollout"], rel=0.05)
    # the random tiny pipeline has no warp in its navigation rollouts: the share is what it would add
    assert r["seconds_per_navigation_rollout"] > 0
    assert r["warp_prior_share_of_rollout"] == pytest.approx(
        r["warp_prior_seconds"] / (r["seconds_per_navigation_rollout"] + r["warp_prior_seconds"]), rel=0.05)  # rounded keys
    assert r["refiner_share_of_rollout"] == 0  # no cache refiner
    with pytest.raises(ValueError, match="unknown key"):
        bench_generate(["stepz=2"])


def test_bench_generate_times_the_shipped_warp_prior_inside_navigation():
    """With the shipped checkpoint (geometry_prior=warp, composite=refine) the share is the 3D cache's
    seconds (splat, encode, mask, composite) timed inside each navigation rollout over that rollout; the
    cache refiner's seconds are timed apart from them."""
    from models.pipeline import DEFAULT_CHECKPOINT

    if not (DEFAULT_CHECKPOINT / "model_index.json").exists():
        pytest.skip("no shipped checkpoint in this checkout")
    r = bench_generate(["steps=1", "frames=4", "context_frames=3", "repeats=1", "guidance_scale=1"])
    assert r["model"] == str(DEFAULT_CHECKPOINT)
    assert 0 < r["warp_prior_share_of_rollout"] < 1 and r["seconds_per_navigation_rollout"] > 0
    assert r["warp_prior_seconds"] > 0
    assert 0 < r["refiner_share_of_rollout"] < 1 and r["refiner_share_of_rollout"] + r["warp_prior_share_of_rollout"] < 1


def test_bench_train_counts_flops_per_size(tmp_path_factory):
    from synthetic_clips import make_clips

    from models.bench import bench_train, parse_size
    from models.clipstore import write_shard

    short_dir, long_dir = tmp_path_factory.mktemp("short"), tmp_path_factory.mktemp("long")
    write_shard(make_clips(2, num_frames=6, num_box_frames=2, num_context=4), short_dir / "s0")
    r = bench_train([f"data={short_dir}", "sizes=L1H2F128,L2H2F128", "batch_size=2", "context_frames=4", "repeats=1"])
    one, two = r["sizes"]
    assert (one["size"], two["size"]) == ("L1H2F128", "L2H2F128")
    assert two["params_m"] > one["params_m"] > 0
    # twice the blocks: nearly twice the FLOPs (embeddings and the output head are shared costs)
    assert 1.5 < two["flops_vs_first"] < 2.0 and one["flops_vs_first"] == 1.0
    assert one["samples_per_s"] > 0 and two["gflops_per_s"] > 0
    assert (one["frames"], r["context_frames"], r["batch_size"]) == (6, 4, 2)
    # a comma list of data folders compares clip lengths: longer clips, more tokens, more FLOPs
    write_shard(make_clips(2, num_frames=10, num_box_frames=2, num_context=4), long_dir / "s0")
    r = bench_train([f"data={short_dir},{long_dir}", "sizes=L1H2F128", "batch_size=2", "context_frames=4",
                     "repeats=1", "resolution=32"])
    short, long = r["sizes"]
    assert (short["frames"], long["frames"], r["resolution"]) == (6, 10, 32)
    assert long["data"] == str(long_dir) and long["flops_vs_first"] > 1.1
    assert parse_size("l4h6f1152") == {"num_layers": 4, "num_attention_heads": 6, "ffn_dim": 1152}
    with pytest.raises(ValueError, match="LxHyFz"):
        parse_size("4x6x1152")
    with pytest.raises(ValueError, match="have >= 5 context frames"):
        bench_train([f"data={short_dir}", "context_frames=5"])
    with pytest.raises(ValueError, match="data=DIR is required"):
        bench_train(["sizes=L1H2F128"])


def test_bench_generate_compares_a_full_attention_pipeline(tmp_path):
    """compare=FOLDER times a second pipeline interleaved with the first and reports its attention mode."""
    from models.pipeline import build_pipeline, tiny_codec, tiny_transformer_config

    build_pipeline(tiny_transformer_config(context_attention="full"), tiny_codec()).save_pretrained(tmp_path / "full")
    r = bench_generate(["steps=2", "frames=4", "context_frames=3", "repeats=1", "checkpoint=random",
                        f"compare={tmp_path / 'full'}"])
    assert r["context_attention"] == "one_way" and r["compare_context_attention"] == "full"
    assert r["seconds_per_rollout_compare"] > 0 and r["cpu_seconds_per_rollout_compare"] > 0
    assert r["compare"] == str(tmp_path / "full")
