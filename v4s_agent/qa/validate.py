"""Record-level validator (the paper's: 'prompt builders reject malformed outputs, invalid boxes, and
action/trajectory mismatches'). Each record gets the list of reasons it fails; a rejected record is
counted under its first reason, so the per-reason counts add up to the number rejected.

Flagged records (imagined answers that disagree with ground truth) are valid records: they are
counted separately so a consumer can drop them (`flagged` in the report), never silently kept.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from v4s_agent.qa.actions import Motion, motion_of, parse_program
from v4s_agent.qa.boxes import BoxFilter, box_is_valid, parse_boxes
from v4s_agent.qa.tasks import NUM_IMAGES, TASKS, Tolerances

REASONS: tuple[str, ...] = (
    "bad_json", "missing_field", "bad_type", "unknown_task", "bad_source", "duplicate_id", "image_count",
    "missing_image", "bad_answer_format", "bad_action_format", "bad_action_magnitude", "invalid_box",
    "box_filter", "bad_options", "action_trajectory_mismatch",
)
FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str, "task": str, "source": str, "answer_source": str, "images": list, "question": str,
    "answer": str, "options": list, "metadata": dict,
}
_ANSWER_SOURCE = {"simulated": "ground_truth", "imagined": "readback"}
_BINARY = {"A4": ("true", "false"), "D2": ("yes", "no"), "D4": ("yes", "no")}
_STEPS = {"A1": (1, 1), "A2": (1, 1), "A3": (2, 3), "D3": (1, 2)}
_QUOTED = re.compile(r'"([^"]*)"')
MAX_TRANSLATION_M = 6.0  # paper: single-step translations up to 6.0 m
MAX_TURN_DEG = 180.0


@dataclass(frozen=True)
class ValidatorConfig:
    tolerances: Tolerances = field(default_factory=Tolerances)
    box_filter: BoxFilter = field(default_factory=BoxFilter)
    check_images: bool = True


def _action_reasons(task: str, text: str) -> list[str]:
    try:
        prog = parse_program(text)
    except ValueError:
        return ["bad_action_format" if task in ("A3", "D3") else "bad_answer_format"]
    lo, hi = _STEPS[task]
    if not lo <= len(prog) <= hi:
        return ["bad_action_format"]
    if task == "A1" and prog[0].is_turn or task == "A2" and not prog[0].is_turn:
        return ["bad_answer_format"]
    for s in prog:
        if s.units == 0 or s.magnitude > (MAX_TURN_DEG if s.is_turn else MAX_TRANSLATION_M):
            return ["bad_action_magnitude"]
    return []


def record_reasons(rec: Any, root: Path | None, cfg: ValidatorConfig | None = None) -> list[str]:
    """Why `rec` (a decoded JSON object) is malformed; [] when it is valid. `root` is the folder
    image paths are relative to (None skips the image check)."""
    cfg = cfg or ValidatorConfig()
    tol = cfg.tolerances
    if not isinstance(rec, dict):
        return ["bad_type"]
    missing = [k for k in FIELDS if k not in rec]
    if missing:
        return ["missing_field"]
    if any(not isinstance(rec[k], t) for k, t in FIELDS.items()):
        return ["bad_type"]
    task, q, ans, meta = rec["task"], rec["question"], rec["answer"], rec["metadata"]
    if task not in TASKS:
        return ["unknown_task"]
    if _ANSWER_SOURCE.get(rec["source"]) != rec["answer_source"]:
        return ["bad_source"]
    n_img = NUM_IMAGES.get(task, 2)
    if len(rec["images"]) != n_img or q.count("<image>") != n_img or not all(isinstance(p, str) for p in rec["images"]):
        return ["image_count"]
    if cfg.check_images and root is not None and not all((root / p).is_file() for p in rec["images"]):
        return ["missing_image"]
    reasons: list[str] = []
    # answer format
    if task in _BINARY:
        if ans not in _BINARY[task]:
            reasons.append("bad_answer_format")
        elif sorted(rec["options"]) != sorted(_BINARY[task]):
            reasons.append("bad_options")
    elif task == "D1":
        boxes = parse_boxes(ans)
        if len(boxes) != 1 or ans.strip() != f"[{', '.join(str(v) for v in boxes[0])}]":
            reasons.append("bad_answer_format")
        elif not box_is_valid(boxes[0]):
            reasons.append("invalid_box")
    else:
        reasons += _action_reasons(task, ans)
    if reasons:
        return reasons
    # boxes in the prompt (and D1's answer) must be valid and pass the paper's object filter
    boxes = parse_boxes(q) + (parse_boxes(ans) if task == "D1" else [])
    if task.startswith("D"):
        want = {"D1": 2, "D2": 1, "D3": 2, "D4": 2}[task]
        if len(boxes) != want:
            return ["invalid_box"]
        if not all(box_is_valid(b) for b in boxes):
            return ["invalid_box"]
        if any(cfg.box_filter.reason(b) for b in boxes):
            return ["box_filter"]
    # action / trajectory consistency against the motion the answer is about
    try:
        motion = Motion.from_list(meta["motion"])
    except (KeyError, TypeError, ValueError):
        return ["missing_field"]
    if task in _STEPS:
        if not motion_of(parse_program(ans)).close_to(motion, tol.match_m, tol.match_deg):
            return ["action_trajectory_mismatch"]
    if task == "A4":
        quoted = _QUOTED.findall(q)
        try:
            claim = parse_program(quoted[0].replace(", ", "; ")) if quoted else None
        except ValueError:
            claim = None
        if claim is None:
            return ["bad_action_format"]
        if (ans == "true") != motion_of(claim).close_to(motion, tol.match_m, tol.match_deg):
            return ["action_trajectory_mismatch"]
    if task in ("D1", "D2", "D4"):  # the action given in the prompt must be the one commanded
        quoted = _QUOTED.findall(q)
        try:
            given = parse_program(quoted[0].replace(", ", "; ")) if quoted else None
        except ValueError:
            given = None
        if not given:
            return ["bad_action_format"]
        try:
            commanded = Motion.from_list(meta["motion_gt"])
        except (KeyError, TypeError, ValueError):
            return ["missing_field"]
        if not motion_of(given).close_to(commanded, tol.match_m, tol.match_deg):
            return ["action_trajectory_mismatch"]
    return []


@dataclass
class ValidationReport:
    total: int = 0
    valid: int = 0
    rejected: Counter = field(default_factory=Counter)
    flagged: Counter = field(default_factory=Counter)
    flagged_records: int = 0
    per_task: Counter = field(default_factory=Counter)

    def add(self, rec: Any, reasons: list[str]) -> None:
        self.total += 1
        if reasons:
            self.rejected[reasons[0]] += 1
            return
        self.valid += 1
        self.per_task[rec["task"]] += 1
        flags = rec["metadata"].get("flag_reasons") or []
        if rec["metadata"].get("flagged"):
            self.flagged_records += 1
        self.flagged.update(flags)

    def summary(self) -> dict[str, Any]:
        return {"total": self.total, "valid": self.valid, "rejected_total": sum(self.rejected.values()),
                "rejected": dict(sorted(self.rejected.items())), "per_task": dict(sorted(self.per_task.items())),
                "flagged_total": self.flagged_records, "flagged": dict(sorted(self.flagged.items()))}


class Validator:
    """Stateful over a stream (duplicate ids are per stream)."""

    def __init__(self, root: Path | None, cfg: ValidatorConfig | None = None) -> None:
        self.root, self.cfg = root, cfg or ValidatorConfig()
        self.seen: set[str] = set()
        self.report = ValidationReport()

    def check(self, rec: Any) -> list[str]:
        reasons = record_reasons(rec, self.root, self.cfg)
        if not reasons and rec["id"] in self.seen:
            reasons = ["duplicate_id"]
        if not reasons:
            self.seen.add(rec["id"])
        self.report.add(rec, reasons)
        return reasons


def validate_file(path: str | Path, cfg: ValidatorConfig | None = None) -> ValidationReport:
    """Validate a JSONL file of records; images are resolved relative to the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no records file at {path}")
    v = Validator(path.parent, cfg)
    with path.open() as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                v.report.total += 1
                v.report.rejected["bad_json"] += 1
                continue
            v.check(rec)
    return v.report
