"""Our discrete `Action` ↔ habitat_sim action names and amounts (pure; habitat-lab ObjectNav ids).

habitat_sim has no "stop" control: STOP ends the episode in our env and is never sent to the sim.
"""
from __future__ import annotations

from dataclasses import dataclass

from envs.base import parse_action
from envs.types import Action

HABITAT_ACTION_NAMES: dict[Action, str] = {
    Action.STOP: "stop",
    Action.MOVE_FORWARD: "move_forward",
    Action.TURN_LEFT: "turn_left",
    Action.TURN_RIGHT: "turn_right",
    Action.LOOK_UP: "look_up",
    Action.LOOK_DOWN: "look_down",
}


@dataclass(frozen=True)
class ActionDef:
    """One entry of habitat_sim's AgentConfiguration.action_space: ActionSpec(control, ActuationSpec(amount))."""

    key: str  # action_space key (what `sim.step(key)` takes)
    control: str  # registered habitat_sim control function
    amount: float  # metres for move_forward, degrees for turns/tilts


def action_space(forward_step_m: float, turn_angle_deg: float, tilt_angle_deg: float) -> dict[str, ActionDef]:
    """The movement actions the agent config must declare (STOP excluded: the env handles it)."""
    return {
        "move_forward": ActionDef("move_forward", "move_forward", forward_step_m),
        "turn_left": ActionDef("turn_left", "turn_left", turn_angle_deg),
        "turn_right": ActionDef("turn_right", "turn_right", turn_angle_deg),
        "look_up": ActionDef("look_up", "look_up", tilt_angle_deg),
        "look_down": ActionDef("look_down", "look_down", tilt_angle_deg),
    }


def to_habitat_action(action: Action | int) -> str | None:
    """Key for `sim.step`, or None for STOP (not a simulator action)."""
    a = parse_action(action)
    return None if a is Action.STOP else HABITAT_ACTION_NAMES[a]
