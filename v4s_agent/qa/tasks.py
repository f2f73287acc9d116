"""The eight World2VLM tasks (Appendix B templates), one builder per task, each turning a
`Transition` into a typed `Record`.

Inverse: A1 translation distance, A2 turn direction/angle, A3 2-3 step sequence, D3 1-2 step
sequence from matched boxes. Forward: A4 verify a claimed sequence, D1 box after the action, D2
visible after the action, D4 same instance across views.
Answers: ground truth for the simulated source; for the imagined source the read-back (motion read
from the imagined video, boxes at the read-back pose), with the ground-truth answer kept in
metadata and the record flagged when the two disagree beyond `Tolerances`.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from envs.embedded.categories import category_phrase
from v4s_agent.qa.actions import Program, fit_program, motion_of, perturb, program_text
from v4s_agent.qa.boxes import box_text, iou
from v4s_agent.qa.sources import ObjectView, Transition

TASKS: tuple[str, ...] = ("A1", "A2", "A3", "A4", "D1", "D2", "D3", "D4")
INVERSE = ("A1", "A2", "A3", "D3")
FORWARD = ("A4", "D1", "D2", "D4")
NUM_IMAGES = {"D2": 1}  # every other task shows two images
ALLOWED = ("Allowed actions:\n- move forward/backward/left/right X meters\n- turn left/right X degrees")


@dataclass(frozen=True)
class Tolerances:
    """match: a program 'does' a motion when its composed motion is within (match_m, match_deg)
    (A4 answers and the validator's action/trajectory check). flag: an imagined record is flagged
    when its read-back answer differs from ground truth by more than (flag_m, flag_deg) (paper's
    reward tau_low is 0.5 m) or its box IoU with the ground-truth box is below flag_iou."""

    match_m: float = 0.25
    match_deg: float = 10.0
    flag_m: float = 0.5
    flag_deg: float = 10.0
    flag_iou: float = 0.5
    min_confidence: float = 0.2  # read-back confidence below this flags the record

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ValueError(f"Tolerances.{k} must be a finite number >= 0, got {v!r}")
        if self.flag_iou > 1 or self.min_confidence > 1:
            raise ValueError("flag_iou and min_confidence must be <= 1")


@dataclass
class Record:
    """One QA record. images are paths relative to the export folder; options list the allowed
    answers of binary tasks (empty otherwise); metadata holds the ground-truth answer, the flag and
    the geometry the validator checks the answer against."""

    id: str
    task: str
    source: str  # "simulated" | "imagined"
    answer_source: str  # "ground_truth" | "readback"
    images: list[str]
    question: str
    answer: str
    options: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def object_name(category: str) -> str:
    """'tv_monitor' -> 'tv monitor', 'plant' -> 'potted plant' (the instruction words, no article)."""
    p = category_phrase(category)
    return p.split(" ", 1)[1] if p.startswith(("a ", "an ")) else p


class Skip(Exception):
    """The transition cannot make this task (reason in args[0])."""


def _valid(objs: dict[int, ObjectView]) -> dict[int, ObjectView]:
    return {i: o for i, o in objs.items() if o.filter_reason is None}


class TaskBuilder:
    """Builds records for one transition; `images` are the relative paths of (anchor, endpoint)."""

    def __init__(self, tr: Transition, images: tuple[str, str], rng: np.random.Generator, tol: Tolerances,
                 split: str = "", answer_counts: dict[tuple[str, str], int] | None = None) -> None:
        self.tr, self.images, self.rng, self.tol, self.split = tr, images, rng, tol, split
        self.imagined = tr.source == "imagined"
        self.answer_counts = answer_counts if answer_counts is not None else {}

    def _want(self, task: str, a: str, b: str) -> bool:
        """True if answer `a` should be preferred: the rarer answer so far (a coin on ties), so the
        binary tasks stay as balanced as the scenes allow."""
        na, nb = self.answer_counts.get((task, a), 0), self.answer_counts.get((task, b), 0)
        return self.rng.random() < 0.5 if na == nb else na < nb

    # ------------------------------------------------------------------ helpers
    def _record(self, task: str, question: str, answer: str, gt_answer: str, flags: list[str],
                options: list[str] | None = None, **meta: Any) -> Record:
        tr = self.tr
        if self.imagined and tr.readback is not None and tr.readback["confidence"] < self.tol.min_confidence:
            flags = flags + ["low_readback_confidence"]
        n_img = NUM_IMAGES.get(task, 2)
        metadata = {
            "traj_index": tr.traj_index, "scene_seed": tr.scene_seed, "split": self.split,
            "program": program_text(tr.program), "commanded": program_text(tr.commanded),
            "endpoint_frame": tr.endpoint_frame, "num_frames": tr.num_frames, "truncated": tr.truncated,
            "motion": tr.motion_answer.as_list(), "motion_gt": tr.motion_gt.as_list(),
            "gt_answer": gt_answer, "flagged": bool(flags), "flag_reasons": flags,
            "readback": tr.readback, "direction": "inverse" if task in INVERSE else "forward",
        }
        metadata.update(meta)
        return Record(f"{tr.source[:3]}-t{tr.traj_index:06d}-{task}", task, tr.source,
                      "readback" if self.imagined else "ground_truth", list(self.images[:n_img]),
                      question, answer, options or [], metadata)

    def _motion_flags(self, answer: Program) -> list[str]:
        if not self.imagined:
            return []
        dt, dy = motion_of(answer).distance(self.tr.motion_gt)
        return ["answer_disagrees_with_gt"] if (dt > self.tol.flag_m or dy > self.tol.flag_deg) else []

    def _inverse_answer(self) -> Program:
        """The commanded structure with magnitudes from the read-back (imagined) or the truth."""
        if not self.imagined:
            return self.tr.program
        return fit_program([s.kind for s in self.tr.program], self.tr.motion_answer)

    def _pick(self, ids: list[int]) -> int:
        return int(sorted(ids)[int(self.rng.integers(len(ids)))])

    def _box_flags(self, iid: int) -> list[str]:
        if not self.imagined:
            return []
        a, g = self.tr.target_objects_answer.get(iid), self.tr.target_objects_gt.get(iid)
        if g is None or iou(a.box, g.box) < self.tol.flag_iou:
            return ["box_disagrees_with_gt"]
        return []

    # ------------------------------------------------------------------ inverse motion tasks
    def A1(self) -> Record:
        return self._single_step("A1", turn=False)

    def A2(self) -> Record:
        return self._single_step("A2", turn=True)

    def _single_step(self, task: str, turn: bool) -> Record:
        """A1 (one translation: how many meters) and A2 (one turn: how many degrees)."""
        p = self.tr.program
        if len(p) != 1 or p[0].is_turn != turn:
            raise Skip("not_single_turn" if turn else "not_single_translation")
        ans = self._inverse_answer()
        word = ans[0].text().split()[1]
        verb, unit = ("turn", "degrees") if turn else ("move", "meters")
        q = (f"<image><image>How many {unit} did the camera {verb} to get the second image?\n"
             f"Answer as: {verb} {word} X {unit}.")
        return self._record(task, q, ans[0].text(), p[0].text(), self._motion_flags(ans))

    def A3(self) -> Record:
        p = self.tr.program
        if not 2 <= len(p) <= 3:
            raise Skip("not_2_3_steps")
        ans = self._inverse_answer()
        q = (f"<image><image>To move from the first image to the second image, the camera used 2 or 3 actions in "
             f"order.\nWrite the full action sequence using ';' as a separator. {ALLOWED}")
        return self._record("A3", q, program_text(ans), program_text(p), self._motion_flags(ans))

    def A4(self) -> Record:
        p = self.tr.program
        claim = p if self._want("A4", "true", "false") else perturb(p, self.rng, 2 * self.tol.match_m, 2 * self.tol.match_deg)
        gt = "true" if claim == p else "false"
        close = motion_of(claim).close_to(self.tr.motion_answer, self.tol.match_m, self.tol.match_deg)
        ans = "true" if close else "false"
        if not self.imagined:
            ans = gt
        q = f'<image><image>True or false: the camera did "{program_text(claim, ", ")}" to get the second image.'
        flags = ["answer_disagrees_with_gt"] if ans != gt else []
        return self._record("A4", q, ans, gt, flags, ["true", "false"], claim=program_text(claim))

    # ------------------------------------------------------------------ detector-grounded tasks
    def D1(self) -> Record:
        a, t = _valid(self.tr.anchor_objects), _valid(self.tr.target_objects_answer)
        ids = sorted(set(a) & set(t))
        if not ids:
            raise Skip("no_object_in_both_views")
        i = self._pick(ids)
        o = a[i]
        name = object_name(o.category)
        g = self.tr.target_objects_gt.get(i)
        q = (f"<image><image>In the first image, the {name} is at bbox {box_text(o.box)}.\n"
             f"Bboxes use normalized integer coordinates in [0,1000]. After the camera does "
             f"\"{program_text(self.tr.program, ', ')}\",\ngive the bbox of the same {name} in the second image. "
             f"Answer with bbox [x1, y1, x2, y2] only.")
        return self._record("D1", q, box_text(t[i].box), box_text(g.box) if g else "", self._box_flags(i),
                            instance_id=i, category=o.category)

    def D2(self) -> Record:
        a = _valid(self.tr.anchor_objects)
        if not a:
            raise Skip("no_object_in_anchor")

        def gone(objs: dict[int, ObjectView], i: int) -> bool | None:
            """yes = no pixel left; no = still >= 0.2% of the image; in between is ambiguous."""
            o = objs.get(i)
            if o is None:
                return True
            return False if o.pixel_share >= 0.002 else None

        cands = {i: gone(self.tr.target_objects_answer, i) for i in a}
        cands = {i: v for i, v in cands.items() if v is not None}
        if not cands:
            raise Skip("visibility_ambiguous")
        want = self._want("D2", "yes", "no")  # balance yes / no when both exist
        pool = [i for i, v in cands.items() if v == want] or list(cands)
        i = self._pick(pool)
        ans = "yes" if cands[i] else "no"
        g = gone(self.tr.target_objects_gt, i)
        gt = "" if g is None else ("yes" if g else "no")
        name = object_name(a[i].category)
        q = (f"<image>In the image, the {name} is at bbox {box_text(a[i].box)}. After the camera does "
             f"\"{program_text(self.tr.program, ', ')}\",\ndoes this {name} disappear from view? Answer: yes or no.")
        flags = ["answer_disagrees_with_gt"] if self.imagined and ans != gt else []
        return self._record("D2", q, ans, gt, flags, ["yes", "no"], instance_id=i, category=a[i].category)

    def D3(self) -> Record:
        p = self.tr.program
        if not 1 <= len(p) <= 2:
            raise Skip("not_1_2_steps")
        a, t = _valid(self.tr.anchor_objects), _valid(self.tr.target_objects_answer)
        ids = sorted(set(a) & set(t))
        if not ids:
            raise Skip("no_object_in_both_views")
        i = self._pick(ids)
        name = object_name(a[i].category)
        ans = self._inverse_answer()
        q = (f"<image><image>The {name} in the first image (bbox {box_text(a[i].box)}) and the {name} in the second "
             f"image (bbox {box_text(t[i].box)}) are the same physical object.\nThe camera used 1 or 2 actions in "
             f"order. Write the full action sequence using ';' as a separator. {ALLOWED}")
        return self._record("D3", q, program_text(ans), program_text(p), self._motion_flags(ans) + self._box_flags(i),
                            instance_id=i, category=a[i].category)

    def D4(self) -> Record:
        a, t = _valid(self.tr.anchor_objects), _valid(self.tr.target_objects_answer)
        pairs_same = [(i, i) for i in sorted(set(a) & set(t))]
        pairs_diff = [(i, j) for i in sorted(a) for j in sorted(t) if i != j and a[i].category == t[j].category]
        want_same = self._want("D4", "yes", "no")
        pool = (pairs_same if want_same else pairs_diff) or pairs_same or pairs_diff
        if not pool:
            raise Skip("no_matchable_pair")
        i, j = pool[int(self.rng.integers(len(pool)))]
        ans = "yes" if i == j else "no"
        name = object_name(a[i].category)
        q = (f"<image><image>In the first image, the {name} is at bbox {box_text(a[i].box)}. After the camera does "
             f"\"{program_text(self.tr.program, ', ')}\",\nthe second image shows a {name} at bbox {box_text(t[j].box)}. "
             f"Are these the same physical object instance? Answer: yes or no.")
        return self._record("D4", q, ans, ans, self._box_flags(j), ["yes", "no"], instance_id=i,
                            target_instance_id=j, category=a[i].category)

    def build(self, task: str) -> Record:
        fn: Callable[[], Record] = getattr(self, task)
        return fn()
