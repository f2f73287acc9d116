"""`http` base driver against a real ThreadingHTTPServer on 127.0.0.1 (started by the test):
happy path, velocity mode, retries, slow endpoint, endpoint down -> clear error + zero velocity."""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from envs.camera.drivers.http_json import HttpBase
from envs.camera.errors import BaseCommandError
from envs.camera.motion import MotionSpec
from envs.types import Action


class Robot(ThreadingHTTPServer):
    """A fake robot endpoint with real sockets: records every JSON body it receives."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[dict] = []
        self.fail_first = 0  # answer 503 to the first N requests
        self.motion_sleep_s = 0.0  # delay replies to motion commands (not to stops)
        self.reply_pose = None
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/cmd"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        srv: Robot = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.received.append(body)
            fail = srv.fail_first > 0
            srv.fail_first -= int(fail)
        if fail:
            self.send_response(503)
            self.end_headers()
            return
        if body["type"] != "stop" and srv.motion_sleep_s:
            time.sleep(srv.motion_sleep_s)
        out = json.dumps({"ok": True, **({"pose": srv.reply_pose} if srv.reply_pose else {})}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass


@pytest.fixture
def robot():
    srv = Robot()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more
    return port


def test_discrete_commands_and_odometry(robot):
    robot.reply_pose = {"position": [1.0, 0.88, -2.0], "yaw": 0.5}
    base = HttpBase(robot.url, MotionSpec(), mode="discrete", timeout_s=1.0)
    base.execute(Action.MOVE_FORWARD)
    base.execute(Action.TURN_LEFT)
    assert [(b["type"], b["action"], b["amount"], b["unit"]) for b in robot.received] == [
        ("discrete", "move_forward", 0.25, "m"), ("discrete", "turn_left", 30.0, "deg")]
    assert [b["seq"] for b in robot.received] == [1, 2]
    odo = base.odometry()
    assert odo.position == (1.0, 0.88, -2.0) and odo.yaw == 0.5
    base.execute(Action.STOP)
    assert robot.received[-1]["type"] == "stop" and robot.received[-1]["linear"] == {"x": 0.0, "y": 0.0, "z": 0.0}
    base.close()


def test_velocity_mode_moves_then_sends_zero(robot):
    spec = MotionSpec(forward_step=0.25, linear_speed=5.0)  # 0.05 s of motion
    base = HttpBase(robot.url, spec, mode="velocity", timeout_s=1.0)
    t0 = time.monotonic()
    base.execute(Action.MOVE_FORWARD)
    assert time.monotonic() - t0 >= 0.05
    move, stop = robot.received
    assert move["type"] == "velocity" and move["linear"]["x"] == 5.0 and move["duration_s"] == pytest.approx(0.05)
    assert stop["type"] == "stop" and stop["angular"] == {"x": 0.0, "y": 0.0, "z": 0.0}
    assert base.stops_sent == 1


def test_retries_on_503_then_succeeds(robot):
    robot.fail_first = 2
    base = HttpBase(robot.url, mode="discrete", timeout_s=1.0, retries=2, backoff_s=0.01)
    base.execute(Action.TURN_RIGHT)
    assert [b["action"] for b in robot.received] == ["turn_right"] * 3  # 2 failures + 1 success
    assert base.stop_attempts == 0


def test_retries_exhausted_is_a_clear_error_and_a_stop(robot):
    robot.fail_first = 2  # the command and its one retry fail; the stop that follows gets through
    base = HttpBase(robot.url, mode="discrete", timeout_s=1.0, retries=1, backoff_s=0.0)
    with pytest.raises(BaseCommandError, match=r"turn_left to http://127\.0\.0\.1:\d+/cmd failed \(HTTP 503 .*"
                                               r"after up to 1 retries.*\); zero velocity sent"):
        base.execute(Action.TURN_LEFT)
    assert base.stop_attempts == 1 and base.stops_sent == 1
    assert [b["type"] for b in robot.received] == ["discrete", "discrete", "stop"]


def test_slow_endpoint_times_out_and_sends_zero_velocity(robot):
    robot.motion_sleep_s = 2.0
    base = HttpBase(robot.url, mode="velocity", timeout_s=0.2, retries=2, backoff_s=0.0)
    t0 = time.monotonic()
    with pytest.raises(BaseCommandError, match=r"no reply within 0.2 s\); zero velocity sent"):
        base.execute(Action.MOVE_FORWARD)
    assert time.monotonic() - t0 < 1.5  # bounded, and the motion was NOT re-sent after the read timeout
    kinds = [b["type"] for b in robot.received]
    assert kinds.count("velocity") == 1 and kinds[-1] == "stop" and base.stops_sent == 1


def test_endpoint_down_is_a_clear_error_never_a_hang():
    url = f"http://127.0.0.1:{_free_port()}/cmd"
    base = HttpBase(url, mode="discrete", timeout_s=0.2, retries=2, backoff_s=0.01)
    t0 = time.monotonic()
    with pytest.raises(BaseCommandError, match="connection refused or host unreachable.*could not be sent either"):
        base.execute(Action.MOVE_FORWARD)
    assert time.monotonic() - t0 < 3.0
    assert base.stop_attempts == 1 and base.stops_sent == 0  # zero velocity was attempted
    assert base.stop() is False  # stop() reports, never raises


def test_bad_url_rejected():
    with pytest.raises(ValueError, match="http"):
        HttpBase("robot.local:8080")
