"""Camera rig pure parts: config validation, calibration files, action -> motion, dead reckoning."""
from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import fields
from pathlib import Path

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf

from envs.camera.calibration import load_calibration
from envs.camera.config import CameraConfig, coerce_config
from envs.camera.motion import MotionSpec, action_to_twist, describe_action, integrate
from envs.types import Action, Pose


def test_config_coercion_and_validation():
    c = coerce_config(CameraConfig, OmegaConf.create({"device": 2, "base": "none", "width": 64, "height": 48}),
                      "env=camera")
    assert c.device == "2" and c.base == "none" and (c.width, c.height) == (64, 48)
    with pytest.raises(ValueError, match=r"env.config.base='wheels' is not one of \['manual', 'http', 'ros2', 'none'\]"):
        CameraConfig(base="wheels")
    with pytest.raises(ValueError, match="env.config.http_url=http://host:port/path"):
        CameraConfig(base="http")
    with pytest.raises(ValueError, match="both env.config.width and env.config.height"):
        CameraConfig(width=64)
    with pytest.raises(ValueError, match="frame_timeout_s must be a positive"):
        CameraConfig(frame_timeout_s=0)
    with pytest.raises(ValueError, match=r"unknown env=camera key\(s\) \['url'\]"):
        coerce_config(CameraConfig, {"url": "x"}, "env=camera")


def test_calibration_opencv_yaml_and_json(tmp_path):
    K = np.array([[300.0, 0, 322], [0, 301.0, 238], [0, 0, 1]])
    y = tmp_path / "cam.yaml"
    fs = cv2.FileStorage(str(y), cv2.FILE_STORAGE_WRITE)
    fs.write("image_width", 640)
    fs.write("image_height", 480)
    fs.write("camera_matrix", K)
    fs.write("distortion_coefficients", np.zeros((1, 5)))
    fs.release()
    c = load_calibration(y)
    assert np.allclose(c.K, K) and (c.width, c.height) == (640, 480) and c.dist.shape == (5,)
    assert np.isclose(c.hfov_deg, math.degrees(2 * math.atan(320 / 300)))
    s = c.scaled(320, 240)
    assert np.allclose(s.K[0], [150, 0, 161]) and np.isclose(s.hfov_deg, c.hfov_deg)

    j = tmp_path / "cam.json"
    j.write_text(json.dumps({"fx": 100, "fy": 100, "cx": 64, "cy": 48, "width": 128, "height": 96}))
    assert np.isclose(load_calibration(j).hfov_deg, math.degrees(2 * math.atan(0.64)))
    j.write_text(json.dumps({"fx": 100, "width": 128, "height": 96}))
    with pytest.raises(ValueError, match="lacks 'cx'; need camera_matrix or fx/fy/cx/cy"):
        load_calibration(j)
    with pytest.raises(FileNotFoundError, match="env.config.calibration_file"):
        load_calibration(tmp_path / "none.yaml")


def test_action_to_twist_ros_axes():
    s = MotionSpec(forward_step=0.5, turn_angle_deg=30, tilt_angle_deg=15, linear_speed=0.25, angular_speed_deg=30)
    t, d = action_to_twist(Action.MOVE_FORWARD, s)
    assert t.linear == (0.25, 0.0, 0.0) and d == 2.0
    t, d = action_to_twist(Action.TURN_LEFT, s)
    assert np.isclose(t.angular[2], math.radians(30)) and d == 1.0  # +z turns left (REP 103)
    t, _ = action_to_twist(Action.TURN_RIGHT, s)
    assert t.angular[2] < 0
    t, d = action_to_twist(Action.LOOK_UP, s)
    assert t.angular[1] < 0 and d == 0.5  # +y pitches down in REP 103
    t, d = action_to_twist(Action.STOP, s)
    assert t.is_zero and d == 0.0
    assert describe_action(Action.TURN_RIGHT, s) == "turn right 30 deg"
    assert describe_action(Action.MOVE_FORWARD, s) == "move forward 0.5 m"
    assert describe_action(Action.LOOK_DOWN, s) == "tilt camera down 15 deg"


def test_dead_reckoning_matches_habitat_convention():
    s = MotionSpec()
    p = Pose((0.0, 0.88, 0.0), 0.0)
    p = integrate(p, Action.MOVE_FORWARD, s)
    assert np.allclose(p.xyz, [0, 0.88, -0.25])  # forward = -Z
    for _ in range(3):
        p = integrate(p, Action.TURN_LEFT, s)
    assert np.isclose(p.yaw, math.pi / 2)
    p = integrate(p, Action.MOVE_FORWARD, s)
    assert np.allclose(p.xyz, [-0.25, 0.88, -0.25])  # turned left: forward = -X
    p = integrate(integrate(p, Action.LOOK_UP, s), Action.STOP, s)
    assert np.isclose(p.pitch, math.radians(30)) and np.allclose(p.xyz, [-0.25, 0.88, -0.25])


HINT_FILES = sorted((Path(__file__).resolve().parents[1] / "envs" / "camera").rglob("*.py")) + [
    Path(__file__).resolve().parents[1] / "v4s_agent" / "run.py"]
HINT = re.compile(r"\b(env\.config|planner)\.([a-z_]+)(?:=([\w:/.+-]+))?")


@functools.cache
def _apply(group: str, overrides: tuple[str, ...]):
    from v4s_agent.config import compose_run_config

    if group == "env.config":
        return compose_run_config(["env=camera", *overrides]).env.backend_config()
    return compose_run_config(["planner=grounding", *overrides]).planner


def test_every_hint_names_a_key_that_works():
    """Each `env.config.KEY[=VALUE]` / `planner.KEY=VALUE` a rig message suggests is applied through
    the real config path (Hydra compose -> RunConfig -> CameraConfig) and must be accepted; a hint
    that needs a companion (base=http needs http_url=...) is applied with the hints of its line."""
    from v4s_agent.config import ConfigError

    keys = {f.name for f in fields(CameraConfig)}
    applied = set()
    for f in HINT_FILES:
        for line in f.read_text().splitlines():
            hints = [m.groups() for m in HINT.finditer(line)]
            for group, key, value in hints:
                if group == "env.config":
                    assert key in keys, f"{f.name}: a hint names env.config.{key}, which CameraConfig does not have"
                if value is None or value.startswith("{"):
                    continue
                value = value.rstrip(".")
                own = f"{group}.{key}={value}"
                try:
                    cfg = _apply(group, (own,))
                except ConfigError:
                    companions = [f"{g}.{k}={v.rstrip('.')}" for g, k, v in hints if g == group and v and k != key]
                    cfg = _apply(group, (*companions, own))
                assert str(getattr(cfg, key)).lower() == value.lower(), own
                applied.add(own)
    assert len(applied) >= 8, applied  # base, source, loop, depth, odometry, http_url, readback ...
