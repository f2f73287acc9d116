"""What an episode's `.rrd` holds, read back with Rerun's own chunk reader: overlays that a later plan
does not have are cleared (no stale box over a new imagined frame), and depth is uint16 millimetres;
`rerun=connect` delivers the same recording to a live receiver. The recorder runs on the real embedded
world and writes real files; the plans are made by hand so that one has every overlay and the next
has none."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rerun")

from envs.base import make_env  # noqa: E402
from envs.embedded.config import WorldConfig  # noqa: E402
from envs.types import Action, Box2D  # noqa: E402
from models.types import ImaginedVideo  # noqa: E402
from planners.base import Plan, SampleDebug  # noqa: E402
from v4s_agent.viz import RerunRecorder  # noqa: E402

# map/goal is not here: the agent's goal stays on the map until a plan names another
OVERLAYS = ("imagination/clip", "imagination/clip/box", "imagination/clip/path", "imagination_samples/sheet",
            "world/plan/readback_path", "world/plan/target_estimate", "agent_map/image", "world/plan/hypotheses")


def _full_plan(pose) -> Plan:
    frames = np.full((1, 4, 32, 32, 3), 120, dtype=np.uint8)
    path = np.repeat(np.eye(4)[None], 4, axis=0)
    path[:, 2, 3] = -np.linspace(0.0, 1.0, 4)  # a path straight ahead
    sample = SampleDebug(box=Box2D(10, 10, 20, 20, score=0.9), poses_rel=path)
    return Plan(actions=[Action.MOVE_FORWARD], imagined=True, videos=[ImaginedVideo(frames, "grounding")],
                samples=[[sample]], chosen=(0, 0), path_world=[pose, pose], target_world=np.array([1.0, 0.5, 1.0]),
                map_image=np.zeros((8, 8, 3), dtype=np.uint8), hypotheses=np.array([[1.0, 0.5, 1.0, 0.7]]))


def _record(out: Path, mode: str = "save", url: str = "") -> Path:
    """Two steps of the embedded world: a plan with every overlay, then a plan with none."""
    out.mkdir(parents=True, exist_ok=True)
    env = make_env("embedded", WorldConfig(width=64, height=64))
    rec = RerunRecorder(out, mode=mode, url=url)
    obs = env.reset()
    rec.on_start(env, env.episode)
    rec.on_observation(0, obs)
    rec.on_plan(0, _full_plan(obs.pose))
    obs = env.step(Action.MOVE_FORWARD)
    rec.on_observation(1, obs)
    rec.on_plan(1, Plan(actions=[Action.TURN_LEFT]))
    rec.close()
    env.close()
    return rec.path


def _chunks(path: Path) -> list[tuple[str, tuple[str, ...], int]]:
    """(entity, data columns, rows) of every chunk of the file's recording, sorted."""
    from rerun.chunk import RrdReader

    out = []
    for chunk in RrdReader(path).stream():
        names = chunk.to_record_batch().schema.names
        out.append((chunk.entity_path, tuple(n for n in names if ":" in n), chunk.num_rows))
    return sorted(out)


def test_overlays_are_cleared_and_depth_is_uint16_mm(tmp_path):
    from rerun.chunk import RrdReader
    from rerun.encodings import ChannelDatatype

    path = _record(tmp_path)
    logged: dict[str, set[int]] = {}  # entity -> steps with data
    cleared: dict[str, set[int]] = {}  # entity -> steps with a Clear
    depth: list[tuple[int, float]] = []
    for chunk in RrdReader(path).stream():
        batch = chunk.to_record_batch()
        names = batch.schema.names
        if "step" not in names:
            continue
        steps = batch.column("step").to_pylist()
        entity = chunk.entity_path.lstrip("/")
        kind = cleared if "Clear:is_recursive" in names else logged
        kind.setdefault(entity, set()).update(steps)
        if "DepthImage:format" in names:
            for fmt, meter in zip(batch.column("DepthImage:format").to_pylist(), batch.column("DepthImage:meter").to_pylist()):
                depth.append((fmt[0]["channel_datatype"], meter[0]))
    for path in OVERLAYS:
        assert 0 in logged.get(path, set()), f"{path} was not logged with the full plan"
        assert cleared.get(path) == {1}, f"{path}: cleared at {cleared.get(path)}, expected at step 1 only"
    assert len(depth) == 2 and all(d == (ChannelDatatype.U16.value, 1000.0) for d in depth), depth


@pytest.mark.filterwarnings("ignore:RRD file has no footer")  # the receiver's file is read while still open
def test_connect_streams_the_recording_to_a_live_receiver(tmp_path):
    """`rerun=connect`: a Rerun process listening on 127.0.0.1 (saving what it receives instead of
    drawing it) gets every chunk of the episode, the same as the recorder's own file."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    received = tmp_path / "received.rrd"
    viewer = subprocess.Popen([str(Path(sys.executable).with_name("rerun")), "--bind", "127.0.0.1", "--port", str(port),
                               "--save", str(received)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # its own process group: the wrapper script and the viewer
    try:
        deadline = time.monotonic() + 30
        while True:  # wait until it listens
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert viewer.poll() is None and time.monotonic() < deadline, "the receiving rerun did not start"
            time.sleep(0.2)
        saved = _record(tmp_path / "out", mode="connect", url=f"rerun+http://127.0.0.1:{port}/proxy")
        want = _chunks(saved)
        got: list = []
        while got != want and time.monotonic() < deadline + 30:  # the receiver writes as data arrives
            time.sleep(0.5)
            got = _chunks(received) if received.exists() else []
    finally:
        os.killpg(viewer.pid, signal.SIGTERM)
        viewer.wait(10)
    assert any(entity == "/world/camera/image/depth" for entity, _, _ in want)
    assert got == want


def _listening(port: int) -> set[str]:
    """The local addresses (hex, as the kernel spells them) of the TCP sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.split(":")[1], 16) == port:  # 0A: LISTEN
                    found.add(local.split(":")[0])
    return found


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads the kernel's socket table (Linux)")
def test_spawned_viewer_listens_on_loopback_only():
    """`rerun=spawn`'s viewer (run headless here: no display) accepts connections on 127.0.0.1 and on no
    other interface: the viewer's own default is 0.0.0.0."""
    from v4s_agent.viz import viewer_command

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    viewer = subprocess.Popen(viewer_command(port) + ["--headless"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            assert viewer.poll() is None and time.monotonic() < deadline, "the viewer did not start"
            time.sleep(0.2)
        assert _listening(port) == {"0100007F"}  # 127.0.0.1, and no 0.0.0.0 / :: socket beside it
    finally:
        os.killpg(viewer.pid, signal.SIGTERM)
        viewer.wait(10)
