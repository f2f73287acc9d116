"""Subprocess smoke tests of `python -m v4s_agent.run` and `python -m v4s_agent.eval agent`:
results.jsonl lines + .rrd + .mp4 per episode, stdout only the JSON line, resume, one-line errors
for bad input (and no output folder for them)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import imageio.v2
import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["env.config.width=64", "env.config.height=64", "max_steps=30", "seed=0", "split=test"]


def rrd_rows(path: Path) -> dict[str, int]:
    """Rows per `entity path: data columns` in a .rrd, read by the venv's own `rerun rrd print`."""
    exe = Path(sys.executable).with_name("rerun")
    p = subprocess.run([str(exe), "rrd", "print", str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-1000:]
    rows: dict[str, int] = {}
    for m in re.finditer(r"with (\d+) rows \(.*?\) - (\S+) - data columns: \[([^\]]*)\]", p.stdout):
        key = f"{m.group(2)}: {m.group(3)}"
        rows[key] = rows.get(key, 0) + int(m.group(1))
    return rows


def run(module: str, *args: str, timeout: int = 100) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": "egl", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


needs_world = pytest.mark.skipif(not (ROOT / "envs/embedded/world.py").exists(), reason="embedded world not built yet")


@needs_world
def test_oracle_run_writes_results_recordings_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["planner=oracle", "episodes=2", f"output_dir={out}", "run_name=smoke", *SMALL]
    p = run("v4s_agent.run", *args)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2
    recs = [json.loads(line) for line in lines]
    for r in recs:
        for k in ("episode_id", "success", "spl", "soft_spl", "distance_to_goal", "seconds_per_plan", "num_steps"):
            assert k in r
        assert r["num_steps"] <= 30
        stem = "episode_" + "".join(c if c.isalnum() or c in "-_." else "_" for c in r["episode_id"])
        rrd = out / f"{stem}.rrd"
        mp4 = out / f"{stem}-success={r['success']:.0f}-spl={r['spl']:.2f}.mp4"  # success and SPL in the name
        assert rrd.stat().st_size > 1000 and mp4.stat().st_size > 1000
        with imageio.v2.get_reader(mp4) as reader:  # one frame per observation, >= 256 px tall, three panels wide
            frame = reader.get_data(0)
            assert reader.count_frames() == r["num_steps"] + 1
        assert frame.shape[0] >= 256 and frame.shape[1] > 2 * frame.shape[0]
    rows = rrd_rows(rrd)
    assert any(k.startswith("/viewport:") for k in rows)  # the blueprint travels with the recording
    for name in ("distance_to_goal", "path_length", "box_score"):  # per-step series, not one point
        assert rows.get(f"/metrics/{name}: Scalars:scalars", 0) >= r["num_steps"] // 2, name
    assert rows.get("/world/camera/image/depth: DepthImage:buffer DepthImage:format DepthImage:meter", 0) == r["num_steps"] + 1
    assert rows.get("/imagination/clip: EncodedImage:blob EncodedImage:media_type", 0) >= 20  # whole clips, playable
    assert "/world/scene: Asset3D:blob Asset3D:media_type" in rows and "/map/target: " in "".join(rows)
    summary = json.loads(p.stdout)  # stdout is exactly the JSON line (no library INFO lines)
    assert summary["episodes"] == 2
    assert p.stderr.count("episode 1/2 ") == 1 and p.stderr.count("episode 2/2 ") == 1  # one summary line each

    # resume: nothing left to do, nothing appended, same summary
    p2 = run("v4s_agent.run", *args)
    assert p2.returncode == 0, p2.stderr[-2000:]
    assert (out / "results.jsonl").read_text().splitlines() == lines
    assert json.loads(p2.stdout.strip().splitlines()[-1])["success"] == summary["success"]

    # another configuration in the same folder is refused, not answered with these results
    p3 = run("v4s_agent.run", *args, "max_steps=25")
    assert p3.returncode == 2 and p3.stdout == ""
    assert p3.stderr.strip().splitlines()[-1].startswith("error: ") and "max_steps" in p3.stderr and "run_name=" in p3.stderr
    assert (out / "results.jsonl").read_text().splitlines() == lines


@needs_world
def test_eval_agent_prints_one_json_line(tmp_path):
    p = run("v4s_agent.eval", "agent", "-v", "planner=explore", "episodes=1", f"output_dir={tmp_path}", *SMALL)
    assert p.returncode == 0, p.stderr[-2000:]
    out = [line for line in p.stdout.splitlines() if line.strip()]
    assert len(out) == 1
    assert "INFO v4s_agent.run: episode 1/1" in p.stderr  # -v: INFO on stderr too
    assert "INFO v4s_agent.run: episode 1/1" in (tmp_path / "run.log").read_text()
    res = json.loads(out[0])
    for k in ("success", "spl", "soft_spl", "distance_to_goal", "seconds_per_plan", "episodes"):
        assert k in res
    assert res["episodes"] == 1 and res["planner"] == "explore"


@pytest.mark.parametrize(
    "module, args, needle",
    [
        ("v4s_agent.run", ["planner=bogus"], "unknown planner 'bogus'; choose one of ['cem', 'explore', 'grounding'"),
        ("v4s_agent.eval", ["agent", "planner=bogus"], "unknown planner 'bogus'; choose one of ['cem', 'explore', 'grounding'"),
        ("v4s_agent.eval", ["agent", "env=mars"], "unknown env 'mars'; choose one of"),
        ("v4s_agent.run", ["episdes=3"], "unknown key 'episdes'"),
        ("v4s_agent.run", ["episodes=many"], "bad value episodes='many'"),
        ("v4s_agent.run", ["video=webm"], "video must be mp4 | gif | none"),
        ("v4s_agent.run", ["env=camera", "env.config.device=/nonexistent/walk.mp4"], "/nonexistent/walk.mp4"),
        ("v4s_agent.eval", ["agent", "planner.gamma=5"], "planner.gamma must be in (0, 1]"),
        ("v4s_agent.eval", ["agent", "env.config.wdith=64"], "wdith"),
        ("v4s_agent.eval", ["agent", "planner=grounding", "model.checkpoint=/nonexistent/ckpt"], "/nonexistent/ckpt"),
        ("v4s_agent.eval", ["nonsense"], "unknown subcommand"),
    ],
)
def test_bad_input_is_one_clear_line(module, args, needle, tmp_path):
    out = tmp_path / "refused"
    p = run(module, *args, f"output_dir={out}")
    assert p.returncode == 2
    assert needle in p.stderr, p.stderr
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr
    assert p.stdout == "" and not out.exists()  # a refused config leaves no folder behind
