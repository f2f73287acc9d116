"""Rig faults. Each message is one line: what failed, what was done about it, what to check."""
from __future__ import annotations


class CameraError(RuntimeError):
    """The camera cannot deliver a frame (unplugged, unreachable, stalled, too many dropped frames)."""


class StreamEnded(CameraError):
    """A replayed video (or a finite stream) has no more frames."""


class BaseCommandError(RuntimeError):
    """The robot base did not execute a command. Drivers send a zero velocity before raising."""
