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
    assert r["cache_speedup"] == pytest.approx(r["seconds_per_rollout_no_cache"] / r["seconds_per_rollout"], rel=1e-2)
    with pytest.raises(ValueError, match="unknown option"):
        bench_generate(["stepz=2"])
