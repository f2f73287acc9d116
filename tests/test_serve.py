"""The imagination server on 127.0.0.1 (a real uvicorn subprocess, random tiny model, 2 steps):
8 concurrent clients get what in-process calls give, an agent run through model=remote matches the
in-process run, bad payloads get 400/413 naming the field, wrong tokens 401, a public bind without a
token is refused, and a server killed mid-request is one clear error that the planner turns into a
failed plan (the episode goes on)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason='the server is the optional extra: pip install "v4s-agent[serve]"')
pytest.importorskip("uvicorn")
import requests  # noqa: E402

from models.remote import ImaginationUnavailableError, RemoteImagination, encode  # noqa: E402
from models.types import VideoContext  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-7f3a"
MODEL = ["model=random", "model.num_inference_steps=2"]
TIMING = ("seconds_per_plan", "episode_seconds")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    # one torch thread on both sides: CPU kernels may sum in another order with another thread count
    env = {**os.environ, "MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1"}
    env.pop("V4S_SERVE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "v4s_agent.serve", *MODEL, f"port={port}", "--token", TOKEN,
                             "max_waiting=2", "max_request_mb=1", "max_samples=4"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2).ok:
                break
        except requests.ConnectionError:
            if proc.poll() is not None:
                pytest.fail(f"server exited: {proc.stderr.read()[-2000:]}")
            time.sleep(0.3)
    yield proc, url
    proc.kill()
    proc.wait()


@pytest.fixture
def one_thread():
    """In-process references at the server's thread count (other tests may have changed this process's)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pipe():
    from models.pipeline import tiny_pipeline

    return tiny_pipeline(0, num_inference_steps=2)


def _ctx(k: int) -> VideoContext:
    rng = np.random.default_rng(k)
    return VideoContext(rng.integers(0, 256, (3 + k % 3, 64, 64, 3), dtype=np.uint8), np.arange(0, 6 + 2 * (k % 3), 2))


def _waypoints(n: int, k: int) -> np.ndarray:
    wp = np.zeros((n, 6))
    wp[:, 2] = -np.linspace(0, 0.1 * (k + 1), n)
    wp[:, 3] = np.linspace(0, 0.05 * k, n)
    return wp


def _post(url: str, path: str, body: bytes, token: str = TOKEN) -> requests.Response:
    return requests.post(url + path, data=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_eight_concurrent_clients_match_in_process(server, pipe, one_thread):
    _, url = server
    out: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            remote = RemoteImagination(url, token=TOKEN, deadline_s=120)
            if k < 4:
                out[k] = remote.ground(_ctx(k), f"find object {k}", seed=k).frames
            else:
                out[k] = remote.navigate(_ctx(k), _waypoints(remote.num_frames, k), seed=k).frames
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not errors, errors
    for k in range(8):
        if k < 4:
            want = pipe.ground(_ctx(k), f"find object {k}", seed=k).frames
        else:
            want = pipe.navigate(_ctx(k), _waypoints(pipe.num_frames, k), seed=k).frames
        assert out[k].dtype == np.uint8 and np.array_equal(out[k], want), f"client {k} differs from in-process"
    health = requests.get(url + "/health", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()
    assert health["busy_rejections"] > 0  # 8 clients, 1 running + 2 waiting: the rest got 503 and backed off
    assert health["model"] == "random" and health["device"] == "cpu" and health["settings"]["num_inference_steps"] == 2


def test_bad_payloads_get_400_or_413_naming_the_field(server):
    _, url = server
    ctx = _ctx(0)
    good = dict(frames=ctx.frames, indices=ctx.indices, instruction="find a chair", seed=0, num_samples=1)
    cases = {
        "body": b"definitely not an npz",
        "frames": encode(**{**good, "frames": ctx.frames.astype(np.float32)}),
        "instruction": encode(**{k: v for k, v in good.items() if k != "instruction"}),
        "num_samples": encode(**{**good, "num_samples": 99}),
        "indices": encode(**{**good, "indices": ctx.indices[::-1].copy()}),
        "seed": encode(**{**good, "seed": 1.5}),
    }
    for field, body in cases.items():
        r = _post(url, "/ground", body)
        assert r.status_code == 400 and r.json()["detail"].startswith(field), (field, r.status_code, r.text)
    bad_wp = encode(frames=ctx.frames, indices=ctx.indices, waypoints=np.zeros((3, 6)))
    r = _post(url, "/navigate", bad_wp)
    assert r.status_code == 400 and r.json()["detail"].startswith("waypoints"), r.text
    big = encode(**{**good, "frames": np.zeros((200, 64, 64, 3), np.uint8), "indices": np.arange(200)})  # 2.4 MB > 1 MB cap
    r = _post(url, "/ground", big)
    assert r.status_code == 413 and "max_request_mb" in r.json()["detail"]


def test_wrong_or_missing_token_is_refused(server):
    _, url = server
    body = encode(frames=_ctx(0).frames, indices=_ctx(0).indices, instruction="find a chair")
    assert _post(url, "/ground", body, token="wrong").status_code == 401
    assert requests.post(url + "/ground", data=body, timeout=10).status_code == 401
    assert requests.get(url + "/health", timeout=10).status_code == 401
    with pytest.raises(ImaginationUnavailableError, match="refused the token"):
        RemoteImagination(url, token="wrong")


def test_public_bind_without_token_refused():
    env = {k: v for k, v in os.environ.items() if k != "V4S_SERVE_TOKEN"}
    p = subprocess.run([sys.executable, "-m", "v4s_agent.serve", "host=0.0.0.0", *MODEL], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "token" in lines[0] and "Traceback" not in p.stderr


def test_remote_agent_run_matches_in_process(server, tmp_path, one_thread):
    from v4s_agent.eval import eval_agent

    _, url = server
    small = ["planner=grounding", "planner.num_samples=1", "episodes=1", "env.config.width=64", "env.config.height=64", "max_steps=13",
             "seed=0", "split=test", "progress=false"]
    eval_agent(small + MODEL + [f"output_dir={tmp_path / 'local'}"])
    eval_agent(small + ["model=remote", f"model.url={url}", f"model.token={TOKEN}", f"output_dir={tmp_path / 'remote'}"])

    def rec(d: Path) -> dict:
        r = json.loads((d / "results.jsonl").read_text())
        return {k: v for k, v in r.items() if k not in TIMING}

    local, remote = rec(tmp_path / "local"), rec(tmp_path / "remote")
    assert local["num_plans"] >= 1 and local["planner_errors"] == 0
    assert remote == local


def test_server_killed_mid_request_is_a_replan_not_a_crash(server):
    """Runs last: it kills the module's server."""
    from envs.base import make_env
    from envs.embedded.config import WorldConfig
    from envs.embedded.task import make_episodes
    from planners.factory import make_planner
    from planners.grounding import GroundingPlannerConfig
    from v4s_agent.agent import run_episode

    proc, url = server
    remote = RemoteImagination(url, token=TOKEN, deadline_s=60)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            remote_k = RemoteImagination(url, token=TOKEN, deadline_s=60)
            remote_k.ground(_ctx(1), "find a chair", seed=1)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill while one runs and another waits: certainly mid-request
        h = requests.get(url + "/health", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()
        if h["waiting"] >= 1:
            break
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    for t in threads:
        t.join(timeout=60)
    assert errors and all(isinstance(e, ImaginationUnavailableError) for e in errors), errors
    assert "did not answer" in str(errors[0]) and "\n" not in str(errors[0])

    env = make_env("embedded", WorldConfig(width=64, height=64))
    try:
        planner = make_planner(GroundingPlannerConfig(), env, remote, seed=0)
        res = run_episode(env, planner, make_episodes("test", 1, 0)[0], 14, observers=[], seed=0)
    finally:
        env.close()
    notes = [p.note for _, p in res.trace.plans]
    assert res.metrics.num_steps == 14 and any("imagination failed (ImaginationUnavailableError" in n for n in notes), notes
