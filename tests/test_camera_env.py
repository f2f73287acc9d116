"""CameraEnv end to end on real video files and streams written/served by the test.

The video is rendered by the embedded MuJoCo world (`EmbeddedWorld.render_at`) along the poses a
camera would pass through while executing a fixed action list, written losslessly (HuffYUV AVI) with
cv2.VideoWriter, and read back through cv2.VideoCapture: replay then gives the agent exactly what the
simulator showed, and dead reckoning must reproduce the render poses.
"""
from __future__ import annotations

import functools
import importlib.util
import math
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from envs.base import NavEnv, make_env
from envs.camera.env import CameraEnv
from envs.camera.errors import BaseCommandError, CameraError, StreamEnded
from envs.camera.motion import MotionSpec, integrate
from envs.camera.sources import OpenCVSource
from envs.geometry import relative_pose
from envs.types import Action, Pose

os.environ.setdefault("MUJOCO_GL", "egl")
W, H = 64, 48
ACTIONS = [Action.TURN_LEFT, Action.MOVE_FORWARD, Action.TURN_RIGHT, Action.MOVE_FORWARD, Action.LOOK_DOWN,
           Action.TURN_LEFT, Action.MOVE_FORWARD, Action.LOOK_UP]


def _http_helpers():
    """The fake robot endpoint of test_camera_http (importable with or without tests/__init__.py)."""
    try:
        from tests import test_camera_http as m
    except ImportError:
        import test_camera_http as m
    return m


def _render_poses(start: Pose, actions) -> list[Pose]:
    poses, spec = [start], MotionSpec()
    for a in actions:
        poses.append(integrate(poses[-1], a, spec))
    return poses


def _simulator_frames(n_extra: int = 0) -> tuple[list[np.ndarray], list[Pose], str]:
    """Frames rendered at the poses of ACTIONS (+ n_extra more turns), by the embedded world."""
    actions = ACTIONS + [Action.TURN_LEFT] * n_extra
    try:
        from envs.embedded.world import EmbeddedWorld
    except ImportError:
        EmbeddedWorld = None
    if EmbeddedWorld is not None:
        world = EmbeddedWorld({"width": W, "height": H})
        try:
            start = world.reset(seed=0).pose
            poses = _render_poses(start, actions)
            return [world.render_at(p).rgb for p in poses], poses, "embedded"
        finally:
            world.close()
    # fallback while envs.embedded.world is not available: project coloured posts with our camera model
    from envs.geometry import intrinsics_from_hfov, project_points

    K, posts = intrinsics_from_hfov(79, W, H), np.array([[x, 0.88, z] for x in (-2, 0, 2) for z in (-3, -1, 2)])
    poses, frames = _render_poses(Pose((0.0, 0.88, 0.0), 0.0), actions), []
    for p in poses:
        img = np.full((H, W, 3), 40, np.uint8)
        uv, z = project_points(posts, p, K)
        for i, ((u, v), d) in enumerate(zip(uv, z)):
            if d > 0.1 and -W < u < 2 * W:
                cv2.circle(img, (int(u), int(v)), max(1, int(8 / d)), (60 + 20 * i, 255 - 25 * i, 128), -1)
        frames.append(img)
    return frames, poses, "projected"


def _write_video(path: Path, frames, fps: float = 10.0) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"HFYU"), fps, (W, H))
    assert w.isOpened(), "cv2 cannot write HuffYUV AVI here"
    for f in frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    return path


@pytest.fixture(scope="module")
def sim_video(tmp_path_factory):
    frames, poses, how = _simulator_frames(n_extra=14)
    return _write_video(tmp_path_factory.mktemp("video") / "walk.avi", frames), frames, poses, how


def _cfg(video, **kw):
    return {"device": str(video), "base": "none", "target_category": "chair", **kw}


# ----------------------------------------------------------------------------- the agent loop
def test_replay_loop_gives_simulator_frames_and_dead_reckoned_poses(sim_video):
    video, frames, poses, how = sim_video
    env = make_env("camera", _cfg(video, odometry="dead_reckoning"))
    assert isinstance(env, NavEnv) and (env.width, env.height) == (W, H) and env.hfov_deg == 79.0
    obs = env.reset()
    assert np.array_equal(obs.rgb, frames[0]), how
    assert "a chair" in obs.instruction and obs.depth is None
    for k, a in enumerate(ACTIONS, start=1):
        obs = env.step(a)
        assert np.array_equal(obs.rgb, frames[k]) and obs.step == k
        # the dead-reckoned pose, relative to where the rig started, is the render pose relative to its start
        dt_rig, dr_rig = relative_pose(Pose((0, 0.88, 0), 0.0), obs.pose)
        dt_sim, dr_sim = relative_pose(poses[0], poses[k])
        assert np.allclose(dt_rig, dt_sim, atol=1e-6) and np.allclose(dr_rig, dr_sim, atol=1e-6)
    obs = env.step(Action.STOP)
    assert env.done and np.array_equal(obs.rgb, frames[len(ACTIONS) + 1])
    m = env.metrics()
    assert m.num_steps == len(ACTIONS) + 1 and np.isclose(m.path_length, 0.75)
    assert math.isnan(m.success) and m.extra["called_stop"] == 1.0
    with pytest.raises(NotImplementedError, match="cannot render from an arbitrary pose"):
        env.render_at(obs.pose)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(Action.MOVE_FORWARD)
    env.close()


def test_pose_is_none_without_odometry(sim_video):
    with make_env("camera", _cfg(sim_video[0], width=32, height=24)) as env:
        obs = env.reset()
        assert obs.pose is None and obs.rgb.shape == (24, 32, 3)  # resized to the configured size
        assert env.step(Action.TURN_LEFT).pose is None


def test_loop_drives_http_robot_and_replays_video(sim_video):
    """Full rig: actions go to a real local HTTP endpoint, frames come from the video."""
    Robot = _http_helpers().Robot  # same fake robot endpoint (real sockets)

    video, frames, _, _ = sim_video
    robot = Robot()
    threading.Thread(target=robot.serve_forever, daemon=True).start()
    try:
        robot.reply_pose = {"position": [0.0, 0.88, 0.0], "yaw": 0.0}
        env = make_env("camera", _cfg(video, base="http", http_url=robot.url, odometry="base"))
        env.reset()
        for k, a in enumerate(ACTIONS[:4], start=1):
            robot.reply_pose = {"position": [0.0, 0.88, -0.5 * k], "yaw": 0.1 * k}
            obs = env.step(a)
            assert np.array_equal(obs.rgb, frames[k])
            assert np.isclose(obs.pose.position[2], -0.5 * k) and np.isclose(obs.pose.yaw, 0.1 * k)
        sent = [b.get("action") for b in robot.received if b["type"] == "discrete"]
        assert sent == ["turn_left", "move_forward", "turn_right", "move_forward"]
        assert np.isclose(env.metrics().path_length, 2.0)  # from the robot's odometry, not the commands
        env.close()
        assert robot.received[-1]["type"] == "stop"  # close() stops the robot
    finally:
        robot.shutdown()
        robot.server_close()


def test_robot_down_mid_episode_ends_episode_with_clear_error(sim_video):
    _free_port = _http_helpers()._free_port

    env = make_env("camera", _cfg(sim_video[0], base="http", http_url=f"http://127.0.0.1:{_free_port()}/cmd",
                                  http_timeout_s=0.2, http_retries=1))
    env.reset()
    t0 = time.monotonic()
    with pytest.raises(BaseCommandError, match="connection refused.*zero velocity could not be sent"):
        env.step(Action.MOVE_FORWARD)
    assert time.monotonic() - t0 < 3.0 and env.done
    env.close()  # stopping a dead robot must not raise


def test_agent_run_episode_drives_camera_env(sim_video):
    """Through v4s_agent.agent.run_episode with a scripted planner (no imagination on a replay)."""
    agent = pytest.importorskip("v4s_agent.agent", reason="v4s_agent.agent not written yet")
    from planners.base import Plan

    class Scripted:
        name = "scripted"

        def __init__(self):
            self.todo = [Action.MOVE_FORWARD, Action.TURN_RIGHT, Action.STOP]

        def reset(self, episode, obs, memory):
            pass

        def plan(self, obs, memory):
            return Plan(actions=[self.todo.pop(0)])

    env = make_env("camera", _cfg(sim_video[0], odometry="dead_reckoning"))
    res = agent.run_episode(env, Scripted(), None, max_steps=40, look_around=True)
    assert res.stopped and res.trace.actions[-3:] == [1, 3, 0]
    assert res.metrics.num_steps == len(res.trace.actions) and len(res.trace.poses) == len(res.trace.actions) + 1
    assert np.isclose(res.metrics.path_length, 0.25)
    env.close()


def _cli(*args: str, agent: tuple[str, ...] = ("planner=pose_following", "planner.imagine=false", "model=none")) -> subprocess.CompletedProcess:
    """`python -m v4s_agent.run env=camera` on a video; the default agent needs no model (fast)."""
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "v4s_agent.run", "env=camera", *agent, "episodes=1", "env.config.base=none", "env.config.target_category=chair", "env.config.odometry=dead_reckoning", *args]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MUJOCO_GL": "egl", "HF_HUB_OFFLINE": "1"})


def test_cli_run_on_a_video(tmp_path, sim_video):
    """`python -m v4s_agent.run env=camera ...` replays the video through the real entry point; the
    recordings carry the results line's episode id, and a second run never overwrites the first's."""
    import json

    out = tmp_path / "out"
    # a rig has no instance segmentation: explore's default oracle detection refuses at start, in one line
    p = _cli(f"output_dir={out}", f"env.config.device={sim_video[0]}", agent=("planner=explore", "model=none", "detector=semantic"))
    assert p.returncode == 2 and "detector=imagination" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not out.exists()
    args = ["max_steps=4", "rerun=save", "video=mp4", f"output_dir={out}", f"env.config.device={sim_video[0]}"]
    for _ in range(2):
        p = _cli(*args)
        assert p.returncode == 0, p.stderr[-2000:]
        assert json.loads(p.stdout)["episodes"] >= 1
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and all(r["num_steps"] == 4 and r["episode_id"].startswith("camera-") for r in recs)
    rrds = sorted(out.glob("episode_*.rrd"))
    mp4s = sorted(out.glob("episode_*.mp4"))
    assert len(rrds) == 2 and len(mp4s) == 2, sorted(out.iterdir())  # two runs, two of each, none overwritten
    for r in recs:
        assert any(f.name.startswith(f"episode_{r['episode_id']}") for f in rrds)
        assert any(f.name.startswith(f"episode_{r['episode_id']}") and "success=na" in f.name for f in mp4s)


def test_cli_failed_episode_is_reported_by_its_id(tmp_path, sim_video):
    """A base that refuses every command fails the episode; the error line names the id the rig gave
    the episode, the same id its recording carries (not the run's counter)."""
    import re

    with socket.socket() as s:  # a port with nothing listening: every motion command fails
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/cmd"
    out = tmp_path / "out"
    p = _cli("max_steps=4", "rerun=save", f"output_dir={out}", f"env.config.device={sim_video[0]}",
             "env.config.base=http", f"env.config.http_url={url}")
    (eid,) = re.findall(r"episode (\S+) failed", p.stderr)
    assert eid.startswith("camera-"), p.stderr[-2000:]
    (rrd,) = out.glob("episode_*.rrd")
    assert rrd.name.startswith(f"episode_{eid}")


def test_cli_ended_stream_is_its_own_outcome(tmp_path, sim_video):
    """A video shorter than the episode: the run stops with `stream_ended`, exit 3 (no episode
    finished), and the recorders of the cut episode are closed: both files are complete and readable."""
    import json

    import imageio.v2 as imageio

    out = tmp_path / "out"
    short = _write_video(tmp_path / "short.avi", sim_video[1][:5])
    p = _cli("max_steps=12", "rerun=save", "video=mp4", f"output_dir={out}", f"env.config.device={short}")
    assert p.returncode == 3, p.stderr[-2000:]
    summary = json.loads(p.stdout)
    assert summary["stream_ended"] is True and summary["episodes"] == 0 and summary["errors"] == 0
    assert p.stderr.count("ended after 5 delivered frames") == 1 and "Traceback" not in p.stderr
    (part,) = out.glob("episode_*.part.mp4")  # what was recorded before the end, finalised by close()
    with imageio.get_reader(part) as r:
        assert r.count_frames() == 5
    (rrd,) = out.glob("episode_*.rrd")
    exe = Path(sys.executable).with_name("rerun")
    assert subprocess.run([str(exe), "rrd", "verify", str(rrd)], capture_output=True, timeout=60).returncode == 0


def test_flow_readback_without_depth_is_refused_at_start(tmp_path, sim_video):
    out = tmp_path / "out"
    p = _cli(f"output_dir={out}", f"env.config.device={sim_video[0]}", agent=("planner=grounding", "model=random"))
    assert p.returncode == 2 and not out.exists()
    assert p.stderr.strip().splitlines()[-1].startswith("error: planner.readback=flow needs depth") and "planner.readback=idm" in p.stderr


@pytest.mark.parametrize("layout", ["folder", "pattern"])
def test_image_folder_and_pattern_are_sources(tmp_path, sim_video, layout):
    frames = sim_video[1][:4]
    for i, f in enumerate(frames):  # numbered from 1, unpadded past 9 would sort wrongly by name: use %03d
        cv2.imwrite(str(tmp_path / f"frame_{i + 1:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image")
    device = str(tmp_path) if layout == "folder" else str(tmp_path / "frame_%03d.png")
    with make_env("camera", _cfg(device)) as env:
        assert (env.width, env.height) == (W, H)
        got = [env.reset().rgb] + [env.step(Action.TURN_LEFT).rgb for _ in range(3)]
        assert all(np.array_equal(g, f) for g, f in zip(got, frames))  # PNG is lossless: exact frames, in order
        with pytest.raises(StreamEnded):
            env.step(Action.TURN_LEFT)
    with pytest.raises(CameraError, match="no images found"):
        make_env("camera", _cfg(str(tmp_path / "nothing_%03d.png")))


# ----------------------------------------------------------------------------------- faults
def test_video_end_is_stream_ended_and_loop_restarts(tmp_path, sim_video):
    frames = sim_video[1][:3]
    video = _write_video(tmp_path / "short.avi", frames)
    env = make_env("camera", _cfg(video))
    env.reset()
    env.step(Action.TURN_LEFT)
    env.step(Action.TURN_LEFT)
    with pytest.raises(StreamEnded, match="ended after 3 delivered frames; set env.config.loop=true"):
        env.step(Action.TURN_LEFT)
    env.close()
    with make_env("camera", _cfg(video, loop=True, frames_per_step=2)) as env:
        got = [env.reset().rgb] + [env.step(Action.TURN_LEFT).rgb for _ in range(2)]
        assert np.array_equal(got[1], frames[2]) and np.array_equal(got[2], frames[1])  # 0, 2, (wrap) 1


class _Flaky:
    """A real cv2.VideoCapture whose reads fail on chosen calls (a decoder hiccup / dropped frame)."""

    def __init__(self, path, fail_calls):
        self.cap, self.calls, self.fail_calls = cv2.VideoCapture(str(path)), 0, set(fail_calls)

    def read(self):
        self.calls += 1
        return (False, None) if self.calls in self.fail_calls else self.cap.read()

    def __getattr__(self, name):
        return getattr(self.cap, name)


def test_dropped_frames_are_retried_then_reported(sim_video):
    video, frames = sim_video[0], sim_video[1]
    src = OpenCVSource(str(video), capture=_Flaky(video, {2, 3, 5}), max_dropped_frames=2)
    got = [src.read().rgb for _ in range(4)]
    assert all(np.array_equal(g, f) for g, f in zip(got, frames)) and src.dropped_frames == 3
    src.close()
    src = OpenCVSource(str(video), capture=_Flaky(video, {2, 3, 4, 5}), max_dropped_frames=2)
    src.read()
    with pytest.raises(CameraError, match="3 consecutive frames failed to decode.*env.config.max_dropped_frames"):
        src.read()
    src.close()


def test_unplugged_camera_is_a_clear_error(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(CameraError, match="could not open camera '7'.*check the cable"):
        make_env("camera", {"device": "7", "base": "none"})
    with pytest.raises(CameraError, match="video file .*missing.avi' not found"):
        make_env("camera", {"device": str(tmp_path / "missing.avi"), "base": "none"})
    assert time.monotonic() - t0 < 5.0


class _Stalls:
    """Real capture that blocks forever after `n` frames (an RTSP stream that stops sending)."""

    def __init__(self, path, n):
        self.cap, self.n, self.release_evt = cv2.VideoCapture(str(path)), n, threading.Event()

    def read(self):
        if self.n <= 0:
            self.release_evt.wait(10)
            return False, None
        self.n -= 1
        return self.cap.read()

    def __getattr__(self, name):
        return getattr(self.cap, name)


def test_stalled_live_stream_times_out(sim_video):
    cap = _Stalls(sim_video[0], 1)
    src = OpenCVSource(str(sim_video[0]), mode="live", capture=cap, frame_timeout_s=0.3)
    env = CameraEnv(_camera_cfg(sim_video[0], mode="live"), source=src)
    env.reset()
    t0 = time.monotonic()
    with pytest.raises(CameraError, match=r"no new frame from camera .* within 0.3 s"):
        env.step(Action.TURN_LEFT)
    assert time.monotonic() - t0 < 1.5
    cap.release_evt.set()
    env.close()


def _camera_cfg(video, **kw):
    from envs.camera.config import CameraConfig

    return CameraConfig(**_cfg(video, **kw))


def test_http_stream_ends_is_an_error_not_a_hang(sim_video):
    """Live capture from a URL served by a local HTTP server: once the stream has ended, the next
    frame request fails with a clear CameraError within the timeout."""
    video = sim_video[0]
    handler = functools.partial(type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}),
                                directory=str(video.parent))
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/{video.name}"
        env = make_env("camera", {"device": url, "base": "none", "frame_timeout_s": 1.0})
        assert env._source.mode == "live"
        obs = env.reset()
        assert obs.rgb.shape == (H, W, 3)
        t0 = time.monotonic()
        with pytest.raises(CameraError, match="stopped delivering frames|no new frame"):
            for _ in range(len(sim_video[1]) + 2):
                env.step(Action.TURN_LEFT)
        assert time.monotonic() - t0 < 3.0
        env.close()
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.skipif(importlib.util.find_spec("pyrealsense2") is not None, reason="pyrealsense2 is installed")
def test_realsense_missing_is_a_clear_error():
    from envs.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="pip install pyrealsense2"):
        make_env("camera", {"source": "realsense", "base": "none"})


@pytest.mark.skipif(importlib.util.find_spec("pyrealsense2") is None,
                    reason="pyrealsense2 not installed (optional extra `realsense`)")
def test_realsense_without_device_is_a_clear_error():
    import pyrealsense2 as rs

    if len(rs.context().query_devices()) > 0:
        pytest.skip("a RealSense is connected: the no-device path cannot happen")
    with pytest.raises(CameraError, match="could not start RealSense"):
        make_env("camera", {"source": "realsense", "base": "none"})
