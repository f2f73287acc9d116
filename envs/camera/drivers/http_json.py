"""HTTP base: POSTs JSON commands to a robot endpoint, with timeouts, bounded retries, safe stop.

Wire format (one endpoint, `env.config.http_url`):
- discrete: {"type": "discrete", "action": "move_forward", "amount": 0.25, "unit": "m", "seq": n}
  The robot replies 2xx when the motion is done.
- velocity: {"type": "velocity", "linear": {x,y,z}, "angular": {x,y,z}, "duration_s": d, "seq": n}
  then, after d seconds, a stop. ROS REP 103 axes (x forward, y left, z up; m/s, rad/s).
- stop:     {"type": "stop", "linear": 0..., "angular": 0..., "duration_s": 0, "seq": n}
A reply body may carry {"pose": {"position": [x, y, z], "yaw": r, "pitch": r}} (Habitat frame) for
`env.config.odometry=base`.

Retries (urllib3 Retry): connection errors and 502/503/504, with exponential backoff. A motion
command whose reply timed out is never re-sent (the robot may be moving); the driver sends a stop
and raises BaseCommandError. Worst case per command ≈ (retries + 1) × timeout + backoff.
"""
from __future__ import annotations

import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from envs.base import parse_action
from envs.camera.errors import BaseCommandError
from envs.camera.motion import ZERO_TWIST, MotionSpec, action_to_twist
from envs.habitat.actions import HABITAT_ACTION_NAMES
from envs.types import Action, Pose

RETRY_STATUS = (502, 503, 504)


def _session(retries: int, backoff_s: float, read_retries: int) -> requests.Session:
    retry = Retry(total=retries, connect=retries, read=read_retries, status=retries, other=0,
                  status_forcelist=RETRY_STATUS, allowed_methods=frozenset({"POST"}), backoff_factor=backoff_s,
                  backoff_max=max(backoff_s * 8, 0.0), raise_on_status=False, respect_retry_after_header=False)
    s = requests.Session()
    s.mount("http://", HTTPAdapter(max_retries=retry))
    s.mount("https://", HTTPAdapter(max_retries=retry))
    return s


def _reason(e: Exception, timeout_s: float) -> str:
    """One short phrase for the error line (requests wraps exhausted urllib3 retries in ConnectionError)."""
    inner = getattr(e.args[0], "reason", None) if e.args else None
    if isinstance(inner, NewConnectionError):  # subclasses ConnectTimeoutError in urllib3: test it first
        return "connection refused or host unreachable"
    if isinstance(e, requests.exceptions.ConnectTimeout) or isinstance(inner, ConnectTimeoutError):
        return f"connect timed out after {timeout_s:g} s"
    if isinstance(e, requests.exceptions.ReadTimeout) or isinstance(inner, ReadTimeoutError):
        return f"no reply within {timeout_s:g} s"
    if isinstance(e, requests.exceptions.HTTPError):
        return str(e)
    if isinstance(e, requests.exceptions.ConnectionError):
        return "connection refused or host unreachable"
    return f"{type(e).__name__}: {e}"


def pose_from_reply(body: Any) -> Pose | None:
    """Robot-reported pose from a reply body, when present and well-formed."""
    p = body.get("pose") if isinstance(body, dict) else None
    try:
        x, y, z = (float(v) for v in p["position"])
        return Pose((x, y, z), float(p.get("yaw", 0.0)), float(p.get("pitch", 0.0)))
    except (TypeError, KeyError, ValueError):
        return None


class HttpBase:
    def __init__(self, url: str, spec: MotionSpec | None = None, mode: str = "discrete", timeout_s: float = 1.0,
                 retries: int = 2, backoff_s: float = 0.1):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"http base needs an http(s):// URL, got {url!r}")
        if mode not in ("discrete", "velocity"):
            raise ValueError(f"http base mode must be 'discrete' or 'velocity', got {mode!r}")
        self.url, self.spec, self.mode, self.timeout_s = url, spec or MotionSpec(), mode, timeout_s
        self.retries = retries
        self._motion = _session(retries, backoff_s, read_retries=0)  # never re-send a motion after a read timeout
        self._stop = _session(retries, backoff_s, read_retries=retries)  # a stop is idempotent
        self.seq, self.stops_sent, self.stop_attempts = 0, 0, 0
        self._pose: Pose | None = None

    def _post(self, session: requests.Session, payload: dict) -> dict:
        self.seq += 1
        r = session.post(self.url, json={**payload, "seq": self.seq}, timeout=(self.timeout_s, self.timeout_s))
        if not r.ok:
            raise requests.HTTPError(f"HTTP {r.status_code} {r.reason} after up to {self.retries} retries: "
                                     f"{r.text[:120].strip()!r}", response=r)
        try:
            body = r.json() if r.content else {}
        except ValueError:
            body = {}
        pose = pose_from_reply(body)
        if pose is not None:
            self._pose = pose
        return body

    def _command(self, action: Action) -> tuple[dict, float]:
        if self.mode == "discrete":
            amount, unit = self.spec.amount(action)
            return {"type": "discrete", "action": HABITAT_ACTION_NAMES[action], "amount": amount, "unit": unit}, 0.0
        twist, duration = action_to_twist(action, self.spec)
        return {"type": "velocity", **twist.as_dict(), "duration_s": duration}, duration

    def execute(self, action: Action) -> None:
        a = parse_action(action)
        if a is Action.STOP:
            self.stop()
            return
        payload, duration = self._command(a)
        try:
            self._post(self._motion, payload)
        except (requests.RequestException, OSError) as e:
            ok = self.stop()
            raise BaseCommandError(
                f"http base: {HABITAT_ACTION_NAMES[a]} to {self.url} failed ({_reason(e, self.timeout_s)}); "
                f"zero velocity {'sent' if ok else 'could not be sent either'}; check the robot endpoint is up "
                "or raise env.config.http_timeout_s") from None
        if duration > 0:  # velocity mode: let it move, then stop it ourselves
            time.sleep(duration)
            if not self.stop():
                raise BaseCommandError(f"http base: could not send zero velocity to {self.url} after "
                                       f"{HABITAT_ACTION_NAMES[a]}; the robot may still be moving - stop it by hand")

    def stop(self) -> bool:
        self.stop_attempts += 1
        try:
            self._post(self._stop, {"type": "stop", **ZERO_TWIST.as_dict(), "duration_s": 0.0})
        except (requests.RequestException, OSError):
            return False
        self.stops_sent += 1
        return True

    def odometry(self) -> Pose | None:
        return self._pose

    def close(self) -> None:
        self._motion.close()
        self._stop.close()
