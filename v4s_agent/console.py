"""What the command-line entry points show: stdout carries only the JSON line(s) of the command
contract; progress, warnings and errors go to stderr; per-plan INFO goes to `run.log` (and to
stderr with `-v`).

Why a file-descriptor redirect and not only logging settings: some libraries print (or write from
C) to stdout directly, e.g. PyOpenGL's INFO line or a native renderer; pointing fd 1 at stderr while
the work runs keeps every such line off the JSON stream, whatever its source.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
VERBOSE_FLAGS = ("-v", "--verbose")


class _TqdmHandler(logging.StreamHandler):
    """Writes above the progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def pop_verbose(argv: list[str]) -> tuple[list[str], bool]:
    """(argv without -v/--verbose, whether it was there)."""
    rest = [a for a in argv if a not in VERBOSE_FLAGS]
    return rest, len(rest) != len(argv)


def setup_logging(verbose: bool = False) -> None:
    """Root logger at INFO (so run.log gets everything); stderr shows warnings, or INFO with -v."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in [h for h in root.handlers if getattr(h, "_v4s_console", False)]:
        root.removeHandler(h)
    h = _TqdmHandler(sys.stderr)
    h.setLevel(logging.INFO if verbose else logging.WARNING)
    h.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    h._v4s_console = True  # type: ignore[attr-defined]
    root.addHandler(h)
    logging.captureWarnings(True)


@contextmanager
def log_file(path: Path) -> Iterator[None]:
    """Everything logged at INFO and above also goes to `path` while the block runs."""
    h = logging.FileHandler(path, encoding="utf-8")
    h.setLevel(logging.INFO)
    h.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(min(old_level or logging.INFO, logging.INFO))
    root.addHandler(h)
    try:
        yield
    finally:
        root.removeHandler(h)
        root.setLevel(old_level)
        h.close()


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send fd 1 (Python and C writers alike) to stderr inside the block; print JSON after it."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no real stdout (embedded interpreters): nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
