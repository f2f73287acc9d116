"""`eval sweep`: the imagination-quality dial end to end, tiny (one IF case, 10-step episodes), and the
summary rules (standard errors, the IF above which imagine beats exploration)."""
from __future__ import annotations

import json
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest

from v4s_agent.sweep import crossover, mean_se, summarize_sweep


def test_mean_se_and_crossover():
    m, se = mean_se([1.0, 0.0, 1.0, 0.0])
    assert m == 0.5 and se == pytest.approx(0.5 / 2 * (4 / 3) ** 0.5)
    pts = [(0.2, 0.3), (0.5, 0.5), (0.9, 0.9)]
    assert crossover(pts, 0.6) == pytest.approx(0.5 + 0.1 / 0.4 * 0.4)
    assert crossover(pts, 0.95) is None
    assert crossover(pts, 0.1) == pytest.approx(0.2)


def test_summary_flags_a_drop_beyond_the_standard_errors():
    rows = [{"kind": "imagination", "setting": s, "IF": f} for s, f in (("a", 0.2), ("b", 0.5), ("c", 0.8))]
    rows.append({"kind": "agent", "setting": "explore", "planner": "explore", "success": 0.5, "success_se": 0.05})
    for s, sr in (("a", 0.3), ("b", 0.9), ("c", 0.4)):
        rows.append({"kind": "agent", "setting": s, "planner": "imagine", "success": sr, "success_se": 0.05, "spl": sr / 2})
    out = summarize_sweep(rows)
    assert out["imagine"]["success_rises_with_IF"] is False  # 0.9 -> 0.4 is beyond 0.05 + 0.05
    assert out["imagine"]["beats_explore_above_IF"] is None  # the last point is below explore


def test_sweep_end_to_end_appends_and_resumes(tmp_path):
    from v4s_agent.sweep import eval_sweep

    args = ["split=val", "episodes=1", "if_episodes=1", "settings=q100", "planners=imagine", "shipped=false",
            "explore=true", "max_steps=8", f"out={tmp_path}"]
    out = eval_sweep(args)
    lines = [json.loads(x) for x in (tmp_path / "sweep.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["setting"], r["planner"]) for r in lines] == [
        ("agent", "explore", "explore"), ("imagination", "q100", ""), ("agent", "q100", "imagine")]
    assert 0.0 <= lines[1]["IF"] <= 1.0 and lines[1]["episodes"] == 1
    assert lines[2]["episodes"] == 1 and lines[0]["episode_ids_crc"] == lines[2]["episode_ids_crc"]  # same episodes
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    assert out["imagine"]["points"][0]["setting"] == "q100"
    eval_sweep(args)  # resumes: nothing measured twice
    assert len((tmp_path / "sweep.jsonl").read_text().splitlines()) == 3


def test_sweep_rejects_unknown_settings():
    from v4s_agent.sweep import SweepError, eval_sweep

    with pytest.raises(SweepError, match="unknown dial setting"):
        eval_sweep(["settings=q42"])


def test_sweep_runs_the_shipped_model_as_its_own_detector():
    """With the shipped model, the sweep also runs `imagine` with detector=imagination (the rules'
    third row), on the same episodes as the other rows."""
    from v4s_agent.sweep import SweepConfig, agent_overrides, sweep_jobs

    cfg = SweepConfig(settings="q100", planners="imagine", episodes=3)
    jobs = sweep_jobs(cfg)
    assert ("agent", "shipped", "imagine+imagination") in jobs and ("agent", "q100", "imagine+imagination") not in jobs
    ov = agent_overrides(cfg, "shipped", "imagine+imagination")
    assert "planner=imagine" in ov and "model=tiny" in ov and "detector=imagination" in ov and "episodes=3" in ov
    assert not any(o.startswith("detector=") for o in agent_overrides(cfg, "shipped", "imagine"))
    assert ("agent", "shipped", "imagine+imagination") not in sweep_jobs(SweepConfig(settings="q100", model_detector=False))


def test_shipped_if_is_the_models_own_after_a_dial_setting():
    """The imagination evaluator keeps its pipeline per config: the shipped model measured after a dial
    setting must not be the dial measured again."""
    from v4s_agent.sweep import SHIPPED, SweepConfig, measure_if

    cfg = SweepConfig(split="val", if_episodes=1)
    dial, shipped = measure_if(cfg, "q100"), measure_if(cfg, SHIPPED)
    assert dial["SD"] != shipped["SD"], (dial, shipped)
