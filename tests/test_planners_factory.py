"""Planner registry/factory and config validation: bad input gives one clear line, no traceback."""
from __future__ import annotations

import pytest

from envs.config import ConfigError
from models.factory import ModelConfig
from planners.base import PlannerError
from planners.cem import CEMPlannerConfig
from planners.factory import PLANNERS, make_planner
from planners.grounding import GroundingPlannerConfig
from planners.oracle import OraclePlannerConfig
from v4s_agent.config import EnvConfig


def test_registry_lists_all_issue_planners():
    assert PLANNERS.names() == ["cem", "explore", "grounding", "imagine", "oracle", "pose_following"]


def test_unknown_planner_names_choices():
    with pytest.raises(ConfigError) as e:
        PLANNERS.get("bogus")
    msg = str(e.value)
    assert "bogus" in msg and "grounding" in msg and "explore" in msg and "\n" not in msg


def test_grounding_without_imagination_is_a_clear_error():
    cfg = GroundingPlannerConfig()
    with pytest.raises(PlannerError, match="needs an imagination"):
        make_planner(cfg, env=object(), imagination=None)  # type: ignore[arg-type]


def test_oracle_on_a_world_without_simulator_api_is_a_clear_error():
    class Rig:  # a camera rig: no render_at / centring_pose
        hfov_deg, width, height = 79.0, 64, 64

    with pytest.raises(PlannerError, match="needs a simulator"):
        make_planner(OraclePlannerConfig(), env=Rig(), imagination=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: GroundingPlannerConfig(gamma=0.0), "gamma"),
        (lambda: GroundingPlannerConfig(num_samples=0), "num_samples"),
        (lambda: GroundingPlannerConfig(readback="magic"), "readback"),
        (lambda: CEMPlannerConfig(num_elites=9), "num_elites"),
        (lambda: ModelConfig(name="huge"), "unknown model"),
        (lambda: EnvConfig(name="mars"), "unknown env"),
    ],
)
def test_bad_values_raise_config_error(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_unknown_env_config_key_names_valid_keys():
    pytest.importorskip("envs.embedded.config")
    with pytest.raises(ConfigError, match="unknown key.*wdith.*valid keys"):
        EnvConfig(name="embedded", config={"wdith": 64}).backend_config()
