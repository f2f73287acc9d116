"""Manual base: a person moves the camera. Shows the command, waits for Enter ('q' aborts).

Streams are injectable so tests (and GUIs) can drive it; EOF on input is an error, not a hang.
"""
from __future__ import annotations

import sys
from typing import TextIO

from envs.camera.errors import BaseCommandError
from envs.camera.motion import MotionSpec, describe_action
from envs.types import Action, Pose


class ManualBase:
    def __init__(self, spec: MotionSpec | None = None, input_stream: TextIO | None = None,
                 output_stream: TextIO | None = None):
        self.spec = spec or MotionSpec()
        self._in = input_stream or sys.stdin
        self._out = output_stream or sys.stderr
        self.commands = 0

    def _say(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def execute(self, action: Action) -> None:
        self.commands += 1
        self._say(f"[v4s-agent] command {self.commands}: {describe_action(action, self.spec)} "
                  "- press Enter when done, or q + Enter to abort")
        line = self._in.readline()
        if line == "":
            raise BaseCommandError("manual base: operator input closed (EOF) while waiting for a move; run "
                                   "interactively, or use env.config.base=none to replay a video without a robot")
        if line.strip().lower() in {"q", "quit", "abort"}:
            self.stop()
            raise BaseCommandError(f"manual base: operator aborted at command {self.commands}")

    def stop(self) -> bool:
        self._say("[v4s-agent] STOP: hold the camera still")
        return True

    def odometry(self) -> Pose | None:
        return None

    def close(self) -> None:
        return None
