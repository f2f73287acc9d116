"""World2VLM action space: six egocentric actions on a 0.1 m / 10 degree grid, composition into
camera motions, per-frame trajectories, max-displacement pairing, A4 negatives and read-back fits.

Conventions follow envs/geometry.py (Habitat): the camera looks along -Z, x is right, turning left
is +yaw. "move forward d" = translate d along -Z, "move left d" (the paper's shift-left) = along -X.
A relative motion is summarised as a planar triple `Motion(right, forward, yaw_deg)` in the
anchor camera's frame; it is what the validator compares answers against.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from envs.geometry import matrices_to_waypoints

Kind = Literal["forward", "backward", "shift-left", "shift-right", "turn-left", "turn-right"]
KINDS: tuple[Kind, ...] = ("forward", "backward", "shift-left", "shift-right", "turn-left", "turn-right")
TRANSLATIONS: tuple[Kind, ...] = KINDS[:4]
TURNS: tuple[Kind, ...] = KINDS[4:]
GRID_M = 0.1  # translation grid (paper: 0.1 m)
GRID_DEG = 10.0  # rotation grid (paper: 10 degrees)
# axis of each kind and its sign: "z" forward(+)/backward(-), "x" right(+)/left(-), "yaw" left(+)/right(-)
_AXIS: dict[str, tuple[str, int]] = {
    "forward": ("z", 1), "backward": ("z", -1), "shift-right": ("x", 1), "shift-left": ("x", -1),
    "turn-left": ("yaw", 1), "turn-right": ("yaw", -1),
}
_WORD = {"forward": "forward", "backward": "backward", "shift-left": "left", "shift-right": "right",
         "turn-left": "left", "turn-right": "right"}
_MOVE_RE = re.compile(r"^move (forward|backward|left|right) (\d+(?:\.\d+)?) meters$")
_TURN_RE = re.compile(r"^turn (left|right) (\d+(?:\.\d+)?) degrees$")
# The paper's three multi-step presets (Appendix A).
PRESETS: tuple[tuple[Kind, ...], ...] = (
    ("forward", "turn-left"), ("turn-right", "forward"), ("shift-left", "forward", "turn-right"),
)


@dataclass(frozen=True)
class Step:
    """One grid action. `units` counts grid cells (decimetres or tens of degrees); 0 is allowed so a
    read-back fit that found no motion can be written down and then rejected by the validator."""

    kind: Kind
    units: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown action kind {self.kind!r}; choose one of {KINDS}")
        if not isinstance(self.units, (int, np.integer)) or self.units < 0:
            raise ValueError(f"units must be a non-negative int grid count, got {self.units!r}")

    @property
    def is_turn(self) -> bool:
        return self.kind in TURNS

    @property
    def magnitude(self) -> float:
        """Metres for translations, degrees for turns."""
        return round(self.units * (GRID_DEG if self.is_turn else GRID_M), 6)

    def text(self) -> str:
        """Paper surface form: 'move forward 1.8 meters' / 'turn left 50 degrees'."""
        if self.is_turn:
            return f"turn {_WORD[self.kind]} {int(self.magnitude)} degrees"
        return f"move {_WORD[self.kind]} {self.magnitude:g} meters"

    def matrix(self, fraction: float = 1.0) -> np.ndarray:
        """4x4 transform of the camera after this step (or a fraction of it) in the camera's frame."""
        T = np.eye(4)
        axis, sign = _AXIS[self.kind]
        m = sign * self.magnitude * fraction
        if axis == "yaw":
            T[:3, :3] = Rotation.from_euler("Y", math.radians(m)).as_matrix()
        elif axis == "z":
            T[2, 3] = -m
        else:
            T[0, 3] = m
        return T

    @staticmethod
    def parse(text: str) -> Step:
        """Inverse of text(); raises ValueError on anything else (magnitudes must lie on the grid)."""
        t = text.strip()
        m = _MOVE_RE.match(t)
        if m:
            units = float(m.group(2)) / GRID_M
            kind = {"forward": "forward", "backward": "backward", "left": "shift-left", "right": "shift-right"}[m.group(1)]
        else:
            m = _TURN_RE.match(t)
            if not m:
                raise ValueError(f"not an action: {text!r} (want 'move forward|backward|left|right X meters' or 'turn left|right X degrees')")
            units = float(m.group(2)) / GRID_DEG
            kind = "turn-left" if m.group(1) == "left" else "turn-right"
        if abs(units - round(units)) > 1e-6:
            raise ValueError(f"magnitude of {text!r} is off the {GRID_M} m / {GRID_DEG:g} degree grid")
        return Step(kind, int(round(units)))  # type: ignore[arg-type]


Program = tuple[Step, ...]


def program_text(program: Sequence[Step], sep: str = "; ") -> str:
    return sep.join(s.text() for s in program)


def parse_program(text: str) -> Program:
    parts = [p for p in text.split(";")]
    if any(not p.strip() for p in parts):
        raise ValueError(f"empty action in sequence {text!r}")
    return tuple(Step.parse(p) for p in parts)


@dataclass(frozen=True)
class Motion:
    """Planar relative camera motion in the anchor camera frame: metres right, metres forward,
    degrees turned left."""

    right: float
    forward: float
    yaw_deg: float

    @staticmethod
    def from_matrix(T: np.ndarray) -> Motion:
        yaw = Rotation.from_matrix(np.asarray(T)[:3, :3]).as_euler("YXZ")[0]
        return Motion(float(T[0, 3]), float(-T[2, 3]), float(math.degrees(yaw)))

    def as_list(self) -> list[float]:
        return [round(self.right, 4), round(self.forward, 4), round(self.yaw_deg, 3)]

    @staticmethod
    def from_list(v: Sequence[float]) -> Motion:
        if len(v) != 3:
            raise ValueError(f"a motion is [right, forward, yaw_deg], got {v!r}")
        return Motion(float(v[0]), float(v[1]), float(v[2]))

    def distance(self, other: Motion) -> tuple[float, float]:
        """(translation difference metres, |yaw difference| degrees, wrapped)."""
        dt = math.hypot(self.right - other.right, self.forward - other.forward)
        dy = abs((self.yaw_deg - other.yaw_deg + 180.0) % 360.0 - 180.0)
        return dt, dy

    def close_to(self, other: Motion, tol_m: float, tol_deg: float) -> bool:
        dt, dy = self.distance(other)
        return dt <= tol_m and dy <= tol_deg


def compose(program: Sequence[Step]) -> np.ndarray:
    """4x4 camera-after-program in the anchor camera frame (actions applied in order, egocentric)."""
    T = np.eye(4)
    for s in program:
        T = T @ s.matrix()
    return T


def motion_of(program: Sequence[Step]) -> Motion:
    return Motion.from_matrix(compose(program))


def frame_poses(program: Sequence[Step], num_frames: int) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """Decompose a program into `num_frames` smooth per-frame poses (first = identity), frames shared
    between steps by their size (1 m ~ 30 degrees). Returns (F, 4, 4) camera-to-anchor and, per
    frame, (index of the step in progress, fraction of it done)."""
    if num_frames < 2:
        raise ValueError(f"a trajectory needs at least 2 frames, got {num_frames}")
    if not program:
        raise ValueError("empty program")
    cost = np.array([max(s.magnitude / 30.0 if s.is_turn else s.magnitude, 1e-3) for s in program])
    cum = np.concatenate([[0.0], np.cumsum(cost)]) / cost.sum()
    poses, where = [], []
    for f in range(num_frames):
        u = f / (num_frames - 1)
        i = int(min(np.searchsorted(cum, u, side="right") - 1, len(program) - 1))
        frac = float(np.clip((u - cum[i]) / max(cum[i + 1] - cum[i], 1e-12), 0.0, 1.0))
        T = compose(program[:i]) @ program[i].matrix(frac)
        poses.append(T)
        where.append((i, frac))
    return np.stack(poses), where


def prefix_at(program: Sequence[Step], where: tuple[int, float]) -> Program:
    """Grid program reached at a frame: whole steps done, plus the current one floored to the grid
    (floor, so the prefix never goes past a frame known to be valid)."""
    i, frac = where
    done = tuple(program[:i])
    units = int(math.floor(program[i].units * frac + 1e-6))
    return done + ((Step(program[i].kind, units),) if units > 0 else ())


def displacement(T: np.ndarray, metres_per_radian: float = 1.0) -> float:
    """How far a view moved: translation plus rotation (1 m per radian by default)."""
    m = Motion.from_matrix(T)
    return math.hypot(m.right, m.forward) + metres_per_radian * abs(math.radians(m.yaw_deg))


def max_displacement_index(poses_rel: np.ndarray, valid: np.ndarray) -> int:
    """World2VLM max-displacement pairing: the farthest frame of the valid prefix (frames 0..k all
    valid). Returns 0 when no frame after the anchor is valid."""
    valid = np.asarray(valid, dtype=bool)
    if len(valid) != len(poses_rel):
        raise ValueError(f"need one validity flag per frame: {len(poses_rel)} poses, {len(valid)} flags")
    k_max = 0
    while k_max + 1 < len(valid) and valid[k_max + 1]:
        k_max += 1
    if k_max == 0 or not valid[0]:
        return 0
    d = [displacement(T) for T in poses_rel[: k_max + 1]]
    return int(np.argmax(d))


def waypoints(poses_rel: np.ndarray) -> np.ndarray:
    """(F, 4, 4) camera-to-anchor -> (F, 6) egocentric waypoints (dt xyz, dr yaw/pitch/roll) for
    models.pipeline navigation mode."""
    return matrices_to_waypoints(poses_rel)


# ---------------------------------------------------------------------------------------- sampling
@dataclass(frozen=True)
class ActionSpace:
    """Magnitude ranges (paper: translations up to 6.0 m, turns up to 100 degrees; our rooms are
    ~4 m so translations default to 2.5 m)."""

    max_translation_m: float = 2.5
    min_translation_m: float = 0.3
    max_turn_deg: float = 100.0
    min_turn_deg: float = 20.0

    def __post_init__(self) -> None:
        if not (GRID_M <= self.min_translation_m <= self.max_translation_m <= 6.0):
            raise ValueError(f"need {GRID_M} <= min_translation_m <= max_translation_m <= 6.0, got "
                             f"{self.min_translation_m}, {self.max_translation_m}")
        if not (GRID_DEG <= self.min_turn_deg <= self.max_turn_deg <= 170.0):
            raise ValueError(f"need {GRID_DEG} <= min_turn_deg <= max_turn_deg <= 170, got {self.min_turn_deg}, {self.max_turn_deg}")

    def step(self, kind: Kind, rng: np.random.Generator) -> Step:
        if kind in TURNS:
            lo, hi = round(self.min_turn_deg / GRID_DEG), round(self.max_turn_deg / GRID_DEG)
        else:
            lo, hi = round(self.min_translation_m / GRID_M), round(self.max_translation_m / GRID_M)
        return Step(kind, int(rng.integers(lo, hi + 1)))

    def sample(self, group: str, rng: np.random.Generator) -> Program:
        """group: 'translation' (1 step, A1), 'rotation' (1 step, A2), 'multi2' (translation and turn
        in either order), 'multi' (a paper preset or a random 2-step composition, A3)."""
        if group == "translation":
            return (self.step(TRANSLATIONS[int(rng.integers(4))], rng),)
        if group == "rotation":
            return (self.step(TURNS[int(rng.integers(2))], rng),)
        if group == "multi":  # the paper's three presets, or a random 2- or 3-step composition
            c = int(rng.integers(len(PRESETS) + 2))
            if c < len(PRESETS):
                return tuple(self.step(k, rng) for k in PRESETS[c])
            if c == len(PRESETS) + 1:  # translation, turn, translation: neighbours never commute
                kinds = (TRANSLATIONS[int(rng.integers(4))], TURNS[int(rng.integers(2))], TRANSLATIONS[int(rng.integers(4))])
                return tuple(self.step(k, rng) for k in kinds)
        if group in ("multi", "multi2"):
            # a translation and a turn never commute, so the order is recoverable from the views
            t = self.step(TRANSLATIONS[int(rng.integers(4))], rng)
            r = self.step(TURNS[int(rng.integers(2))], rng)
            return (t, r) if rng.random() < 0.5 else (r, t)
        raise ValueError(f"unknown program group {group!r}; choose translation, rotation, multi, multi2")


def perturb(program: Sequence[Step], rng: np.random.Generator, min_m: float = 0.5, min_deg: float = 20.0,
            tries: int = 50) -> Program:
    """A wrong claim for A4: flip a direction, change a magnitude, swap a translation axis or swap
    the order; kept only if its motion differs from the truth by >= min_m or >= min_deg (so a
    'false' answer is never a near-equivalent program, e.g. two translations in swapped order)."""
    program = tuple(program)
    truth = motion_of(program)
    flip = {"forward": "backward", "backward": "forward", "shift-left": "shift-right", "shift-right": "shift-left",
            "turn-left": "turn-right", "turn-right": "turn-left"}
    swap_axis = {"forward": "shift-left", "backward": "shift-right", "shift-left": "forward", "shift-right": "backward"}
    for _ in range(tries):
        p = list(program)
        i = int(rng.integers(len(p)))
        op = int(rng.integers(4))
        if op == 0:
            p[i] = Step(flip[p[i].kind], p[i].units)  # type: ignore[arg-type]
        elif op == 1:
            delta = int(rng.integers(3, 11)) * (1 if rng.random() < 0.5 or p[i].units <= 3 else -1)
            p[i] = Step(p[i].kind, max(1, p[i].units + delta))
        elif op == 2 and not p[i].is_turn:
            p[i] = Step(swap_axis[p[i].kind], p[i].units)  # type: ignore[arg-type]
        elif op == 3 and len(p) > 1:
            j = (i + 1) % len(p)
            p[i], p[j] = p[j], p[i]
        dt, dy = motion_of(p).distance(truth)
        if dt >= min_m or dy >= min_deg:
            return tuple(p)
    raise ValueError(f"could not perturb {program_text(program)!r} by >= {min_m} m / {min_deg} degrees")


def fit_program(structure: Sequence[Kind], target: Motion) -> Program:
    """Read-back answer: magnitudes (and directions) for the commanded action structure that best
    reproduce `target` (least squares on right/forward metres and yaw at 1 m per radian), rounded to
    the grid. The signs pick the direction (a negative 'forward' becomes 'backward')."""
    axes = [_AXIS[k][0] for k in structure]
    x0 = np.array([_AXIS[k][1] * 1.0 for k in structure]) * 0.5  # metres or radians

    def steps_of(x: np.ndarray) -> list[np.ndarray]:
        out = []
        for a, v in zip(axes, x):
            T = np.eye(4)
            if a == "yaw":
                T[:3, :3] = Rotation.from_euler("Y", v).as_matrix()
            elif a == "z":
                T[2, 3] = -v
            else:
                T[0, 3] = v
            out.append(T)
        return out

    goal = np.array([target.right, target.forward, math.radians(target.yaw_deg)])

    def res(x: np.ndarray) -> np.ndarray:
        T = np.eye(4)
        for S in steps_of(x):
            T = T @ S
        m = Motion.from_matrix(T)
        r = np.array([m.right, m.forward, math.radians(m.yaw_deg)]) - goal
        r[2] = (r[2] + math.pi) % (2 * math.pi) - math.pi
        return r

    x = least_squares(res, x0, method="lm" if len(axes) <= 3 else "trf").x
    out = []
    for a, v in zip(axes, x):
        if a == "yaw":
            units = int(round(abs(math.degrees(v)) / GRID_DEG))
            kind = "turn-left" if v >= 0 else "turn-right"
        else:
            units = int(round(abs(v) / GRID_M))
            kind = ("forward" if v >= 0 else "backward") if a == "z" else ("shift-right" if v >= 0 else "shift-left")
        out.append(Step(kind, units))  # type: ignore[arg-type]
    return tuple(out)
