"""Append-only outputs of an export, so an interrupted run resumes where it stopped.

Layout of an export folder:
  config.json          the export settings (a resume with different settings is refused)
  records.jsonl        valid records (flagged ones included, marked in metadata)
  rejected.jsonl       records the validator refused, each with its `reasons`
  trajectories.jsonl   one line per trajectory tried (written last: it marks the trajectory done)
  images/              PNGs referenced by relative path from the records
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Lines of a JSONL file; a torn last line (killed mid-write) is dropped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


class ExportWriter:
    """Owns an export folder. `done_through` is the last trajectory fully written; records of a
    later (interrupted) trajectory are dropped on open and regenerated (generation is seeded)."""

    def __init__(self, out: str | Path, config: dict[str, Any]) -> None:
        self.out = Path(out)
        (self.out / "images").mkdir(parents=True, exist_ok=True)
        cfg_path = self.out / "config.json"
        if cfg_path.is_file():
            old = json.loads(cfg_path.read_text())
            if old != config:
                diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
                raise ValueError(f"{self.out} holds an export with other settings ({', '.join(diff)}); "
                                 f"pass the same settings to resume, or a new out=")
        else:
            cfg_path.write_text(json.dumps(config, indent=1, sort_keys=True))
        self.records_path = self.out / "records.jsonl"
        self.rejected_path = self.out / "rejected.jsonl"
        self.traj_path = self.out / "trajectories.jsonl"
        trajs = _read_jsonl(self.traj_path)
        self.done_through = max((t["traj_index"] for t in trajs), default=-1)
        self.trajectories = trajs
        # keep only what belongs to finished trajectories, rewrite files without torn/orphan lines
        self.records = [r for r in _read_jsonl(self.records_path) if r["metadata"]["traj_index"] <= self.done_through]
        self.rejected = [r for r in _read_jsonl(self.rejected_path) if r["metadata"]["traj_index"] <= self.done_through]
        for path, rows in ((self.records_path, self.records), (self.rejected_path, self.rejected),
                           (self.traj_path, trajs)):
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self.per_task = Counter(r["task"] for r in self.records)

    @property
    def resumed(self) -> bool:
        return self.done_through >= 0

    def image(self, name: str, rgb: np.ndarray) -> str:
        """Write an RGB uint8 image as PNG; returns its path relative to the export folder."""
        rel = f"images/{name}.png"
        if not cv2.imwrite(str(self.out / rel), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {self.out / rel}")
        return rel

    @staticmethod
    def _append(path: Path, rows: list[dict[str, Any]]) -> None:
        if rows:
            with path.open("a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in rows))
                f.flush()

    def write_trajectory(self, records: list[dict[str, Any]], rejected: list[dict[str, Any]],
                         trajectory: dict[str, Any]) -> None:
        """Records first, the trajectory line last (it is the commit mark used by resume)."""
        self._append(self.records_path, records)
        self._append(self.rejected_path, rejected)
        self._append(self.traj_path, [trajectory])
        self.records += records
        self.rejected += rejected
        self.trajectories.append(trajectory)
        self.per_task.update(r["task"] for r in records)
        self.done_through = trajectory["traj_index"]
