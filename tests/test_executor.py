"""Local and Ray executors on tiny jobs (a real local Ray with 2 CPUs): byte-identical clip shards,
the same per-episode results.jsonl lines, resume, and a failing task reported by id."""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from models.data import ClipGenConfig, _run_task, generate
from models.executor import ExecutorError, check_executor, run_tasks, start_ray

ray = pytest.importorskip("ray", reason='Ray is the optional extra: pip install "v4s-agent[ray]"')
TIMING = ("seconds_per_plan", "episode_seconds")  # wall-clock fields; everything else must match


@pytest.fixture(scope="module")
def local_ray():
    start_ray("", 2)
    yield
    ray.shutdown()


def _files(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.name != "manifest.json"}


def test_shards_identical_and_resume(tmp_path, local_ray):
    kw = dict(split="val", scenes=2, clips_per_scene=2, shard_clips=2)
    local = generate(ClipGenConfig(out=str(tmp_path / "local"), num_workers=1, **kw), progress=False)
    remote = generate(ClipGenConfig(out=str(tmp_path / "ray"), executor="ray", num_workers=2, **kw), progress=False)
    a, b = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert len(a) == 4 and a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a), "ray shards differ from local shards"
    assert local["clips"] == remote["clips"] == 4 and not remote["failed"]
    again = generate(ClipGenConfig(out=str(tmp_path / "ray"), executor="ray", num_workers=2, **kw), progress=False)
    assert [s["shard"] for s in again["shards"]] == [s["shard"] for s in remote["shards"]]
    assert _files(tmp_path / "ray") == b  # nothing re-rendered


def test_failed_task_retried_then_reported_while_others_finish(tmp_path, local_ray):
    cfg = ClipGenConfig(out=str(tmp_path), split="val", scenes=1, clips_per_scene=1)
    good = (asdict(cfg), [100000], str(tmp_path / "good"))
    bad = ({**asdict(cfg), "gamma": 5.0}, [100001], str(tmp_path / "bad"))  # the task's config check raises
    seen = []
    done, failed = run_tasks(_run_task, {"good": good, "bad": bad}, executor="ray", num_workers=2, progress=False,
                             on_result=lambda tid, _: seen.append(tid))
    assert list(done) == seen == ["good"] and done["good"]["clips"] == 1
    assert [f.id for f in failed] == ["bad"] and "gamma" in failed[0].error


def test_eval_agent_lines_match(tmp_path, local_ray):
    from v4s_agent.eval import eval_agent

    small = ["planner=oracle", "episodes=2", "env.config.width=64", "env.config.height=64", "max_steps=20",
             "seed=0", "split=test", "progress=false"]
    one = eval_agent(small + [f"output_dir={tmp_path / 'one'}"])
    fan = eval_agent(small + [f"output_dir={tmp_path / 'ray'}", "executor=ray", "num_workers=2"])

    def lines(d):
        recs = [json.loads(s) for s in (d / "results.jsonl").read_text().splitlines()]
        return sorted(json.dumps({k: v for k, v in r.items() if k not in TIMING}, sort_keys=True) for r in recs)

    assert len(lines(tmp_path / "one")) == 2
    assert lines(tmp_path / "one") == lines(tmp_path / "ray")
    assert one["soft_spl"] == fan["soft_spl"] and fan["errors"] == 0
    before = (tmp_path / "ray" / "results.jsonl").read_text()
    eval_agent(small + [f"output_dir={tmp_path / 'ray'}", "executor=ray", "num_workers=2", "resume=true"])
    assert (tmp_path / "ray" / "results.jsonl").read_text() == before  # resumed: nothing re-run


def test_bad_executor_settings():
    with pytest.raises(ExecutorError, match="executor='dask'"):
        check_executor("dask", 2)
    with pytest.raises(ValueError, match="num_workers"):
        ClipGenConfig(out="x", num_workers=0)


def test_eval_imagination_lines_match(tmp_path, local_ray):
    from v4s_agent.eval_imagination import ImaginationEvalConfig, evaluate

    # one torch thread in both: Ray tasks run with one, and more threads may sum in another order
    common = dict(episodes=2, steps=1, seed=0, checkpoint="random", baselines="copy_last", relocalize=0, threads=1)
    one = evaluate(ImaginationEvalConfig(**common, results=str(tmp_path / "one.jsonl")), progress=False)
    fan = evaluate(ImaginationEvalConfig(**common, results=str(tmp_path / "ray.jsonl"), executor="ray", num_workers=2),
                   progress=False)

    def lines(name):
        return sorted((tmp_path / name).read_text().splitlines())

    assert len(lines("one.jsonl")) == 2 and lines("one.jsonl") == lines("ray.jsonl")
    assert one["IF"] == fan["IF"] and one["psnr_nav"] == fan["psnr_nav"] and fan["errors"] == 0
    again = evaluate(ImaginationEvalConfig(**common, results=str(tmp_path / "ray.jsonl"), executor="ray", num_workers=2),
                     progress=False)
    assert lines("ray.jsonl") == lines("one.jsonl") and again["psnr_nav"] == fan["psnr_nav"]  # resumed, nothing re-run
