"""`imagine` planner: frontier search in which imagination supplies the value (VLFM's idea, with
imagined grounding videos in place of a vision-language model).

It is the `explore` planner (occupancy map, frontiers, detector-driven approach and stop) plus a
top-down *target belief map* in world coordinates, on the occupancy map's grid:

- every `replan_every` plans (and on arrival at a goal) it imagines `num_samples` grounding videos
  from the current view. A sample with a red box adds a hypothesis at its read-back target position
  (the read-back path's end pose, then along the box centre's ray to the box's depth: the current
  depth when the path is short, else the first obstacle on the map along that ray, else
  `default_box_depth`), weighted by box score and path confidence. A sample without a box adds a
  weak hint (`hint_weight`) ahead of its imagined path's end;
- where the agent looks and the detector does not fire, belief is lowered (`absence_decay`);
- *trust*: how far this imagination is to be believed is measured online, per episode, as a Beta
  estimate of the share of its hypotheses that come true (prior mean `trust_prior`, worth
  `trust_strength` outcomes): a hypothesis the agent looked at from within `view_range` without the
  detector firing is a miss, one the detector then sees the target near is a hit. Decisions read the
  belief times trust / trust_prior, so a weak imagination soon counts for little (the search becomes
  frontier exploration) and a good one keeps its full weight;
- goal: the (trusted) belief peak when it is above `goal_threshold` (walked to on the map's shortest
  path, or via the frontier that best leads towards it), otherwise the frontier with the best value
  (`value_weight` x belief near it, minus its path distance). A frontier being walked to is kept
  unless another one's belief is worth `switch_margin` metres more: without that, every rollout
  re-picked the frontier, and weak hints made the agent dither between frontiers (it then lost the
  steps exploration needs).

Stop and approach are explore's: the detector (`detector=semantic|imagination`) sees the target
centred and within `stop_distance`. With no imagination (`model=none`) it *is* frontier exploration:
every plan goes to `ExplorePlanner`, action for action.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from envs.base import NavEnv
from envs.config import check
from envs.geometry import intrinsics_from_hfov, pose_to_matrix, wrap_angle, yaw_towards
from envs.types import Action, Box2D, Episode, Observation
from models.types import Imagination, ImaginedVideo
from planners.base import Plan, path_length_xz, start_pose
from planners.detect import Detector
from planners.explore import ExplorePlanner, ExplorePlannerConfig
from planners.occupancy import OCCUPIED
from planners.readback import READBACKS

if TYPE_CHECKING:
    from models.memory import Memory

@dataclass
class ImaginePlannerConfig(ExplorePlannerConfig):
    """Frontier search with an imagined target belief map."""

    name: str = "imagine"
    num_samples: int = 2  # grounding videos per rollout
    replan_every: int = 6  # plans (one action each) between rollouts; also re-imagines on arrival
    min_box_score: float = 0.3
    readback: str = "flow"  # a name of planners.readback.READBACKS (true: poses the imagination reports, model=oracle_noisy)
    near_translation: float = 0.3  # a path shorter than this (m) ends at the current view: box depth from the depth image
    default_box_depth: float = 1.0  # metres from a path's end to its boxed target when the map has no obstacle there
    max_box_depth: float = 4.0
    belief_sigma: float = 0.5  # metres, spread of one hypothesis
    hint_weight: float = 0.05  # weight of a sample without a box (times path confidence)
    goal_threshold: float = 0.3  # belief peak that becomes the goal
    absence_decay: float = 0.5  # belief kept where the agent looked and the detector did not fire
    view_range: float = 3.0  # metres of view that count as looked at
    value_weight: float = 3.0  # metres of path that belief at goal_threshold near a frontier is worth
    value_sigma: float = 1.5  # metres: how far from a frontier belief still counts as "near it"
    hypothesis_reach: float = 0.8  # drive to a navigable cell this close to the hypothesis
    execute_steps: int = 6  # actions of an imagined route executed before imagining again (no known way on the map)
    trust_prior: float = 0.5  # prior share of hypotheses that come true (the Beta prior's mean)
    trust_strength: float = 2.0  # outcomes the prior is worth: the Beta prior is (prior, 1 - prior) x strength
    switch_margin: float = 1.0  # metres of belief value a new frontier must add before the kept one is dropped
    stop_checks: int = 2  # consecutive checks of a model detector that must pass the stop rule on one spot before STOP

    @property
    def needs_imagination(self) -> bool:
        return True  # used when there is one; model=none makes it frontier exploration

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.num_samples >= 1, f"planner.num_samples must be >= 1, got {self.num_samples}")
        check(self.replan_every >= 1, f"planner.replan_every must be >= 1, got {self.replan_every}")
        check(self.readback in READBACKS, f"planner.readback must be one of {READBACKS.names()}, got {self.readback!r}")
        check(0.0 < self.absence_decay <= 1.0, f"planner.absence_decay must be in (0, 1], got {self.absence_decay}")
        check(self.belief_sigma > 0 and self.value_sigma > 0, "planner.belief_sigma and value_sigma must be > 0")
        check(0.0 < self.trust_prior < 1.0, f"planner.trust_prior must be in (0, 1), got {self.trust_prior}")
        check(self.trust_strength > 0, f"planner.trust_strength must be > 0, got {self.trust_strength}")
        check(self.switch_margin >= 0, f"planner.switch_margin must be >= 0 metres, got {self.switch_margin}")
        check(self.stop_checks >= 1, f"planner.stop_checks must be >= 1, got {self.stop_checks}")


BELIEF_CAP = 3.0  # agreeing hypotheses add up to this, not without bound
VISITED_DECAY = 0.05  # belief kept around a hypothesis the agent reached and faced without a detection
CONFIRM_M = 1.5  # a detection this close to a hypothesis makes it a hit
CHECK_RANGE_M = 2.0  # a hypothesis in plain sight this near without a detection is a miss
SAME_SPOT_M = 0.5  # two stop-rule passes of a model detector agree when their targets are this close


class Trust:
    """Online Beta estimate of how often this episode's imagined hypotheses come true: prior
    Beta(prior * strength, (1 - prior) * strength), plus one hit or miss per hypothesis checked.
    `weight` is the mean over the prior mean (1 before any evidence), by which decisions scale the
    belief. Hand-written: two counters, no library needed."""

    def __init__(self, prior: float, strength: float) -> None:
        self.prior, self.strength = prior, strength
        self.hits = self.misses = 0

    @property
    def mean(self) -> float:
        return (self.prior * self.strength + self.hits) / (self.strength + self.hits + self.misses)

    @property
    def weight(self) -> float:
        return self.mean / self.prior


class ImaginePlanner(ExplorePlanner):
    name = "imagine"

    def __init__(self, cfg: ImaginePlannerConfig, env: NavEnv, imagination: Imagination | None = None, seed: int = 0,
                 detector: Detector | None = None) -> None:
        super().__init__(cfg, env, seed=seed, detector=detector)
        if imagination is not None and hasattr(imagination, "bind_env") and getattr(imagination, "world", None) is None:
            imagination.bind_env(env)
        self.imagination = imagination
        self.K_img = None if imagination is None else intrinsics_from_hfov(env.hfov_deg, imagination.width, imagination.height)
        self.belief: np.ndarray | None = None
        self.hypotheses: list[tuple[float, float, float]] = []  # (x, z, weight) of every boxed sample
        self._open: list[int] = []  # indices of hypotheses not yet checked (neither hit nor miss)
        self._passes: list[np.ndarray] = []  # target xz of a model detector's consecutive stop-rule passes
        self.trust = Trust(cfg.trust_prior, cfg.trust_strength)
        self._instruction = ""
        self._since_imagine = 0
        self._imagine_now = True
        self._video: ImaginedVideo | None = None  # this plan's rollout (None on plans that do not imagine)
        self._imaginations = 0
        self._hyp_goal: np.ndarray | None = None
        self._plan_grid = None

    def reset(self, episode: Episode, obs: Observation, memory: Memory) -> None:
        from planners.grounding import instruction_for

        super().reset(episode, obs, memory)
        self.belief = None
        self.hypotheses = []
        self._open = []
        self._passes = []
        self.trust = Trust(self.cfg.trust_prior, self.cfg.trust_strength)
        self._instruction = instruction_for(episode, obs)
        self._since_imagine = 0
        self._imagine_now = True
        self._video = None
        self._imaginations = 0
        self._hyp_goal = None
        self._route = None

    # ------------------------------------------------------------------------------- plan
    def _prepare(self, plan: Plan, obs: Observation, memory: Memory) -> None:
        """Every replan_every plans (or when asked): imagine from here and add what it shows to the
        belief. With no imagination nothing happens: frontier exploration, exactly."""
        self._plan_grid = None
        self._video, self._route = None, None
        if self.imagination is None:
            return
        self._remember(obs)
        if self._map is not None and (self._imagine_now or self._since_imagine >= self.cfg.replan_every):
            self._video = self._imagine(memory)
            self._since_imagine, self._imagine_now = 0, False
            if self._video is not None:
                plan.imagined = True
                plan.videos.append(self._video)
                self._add_hypotheses(self._video, obs)
        self._since_imagine += 1

    def _describe(self, plan: Plan, obs: Observation) -> None:
        super()._describe(plan, obs)
        if self.belief is not None and plan.map_image is not None:
            plan.belief_image = self.belief_image()
        if self.hypotheses and self._map is not None:
            h = np.asarray(self.hypotheses)
            plan.hypotheses = np.stack([h[:, 0], np.full(len(h), self._map.floor_y + 0.5), h[:, 1], h[:, 2]], axis=1)

    def belief_image(self) -> np.ndarray:
        """(n, n) uint8 belief on the map grid (rows z, columns x), 255 = the current peak."""
        b = self.belief
        top = float(b.max()) if b is not None and b.size else 0.0
        return np.zeros_like(self._map.floor_hits, dtype=np.uint8) if top <= 0 else (255 * b / top).astype(np.uint8)

    def _imagine(self, memory: Memory) -> ImaginedVideo | None:
        from planners.base import check_video

        img = self.imagination
        ctx = memory.select_context(min(self.cfg.context_frames, memory.cfg.max_context), size=(img.height, img.width))
        self._imaginations += 1
        try:
            video = img.ground(ctx, self._instruction, num_samples=self._num_samples(),
                               seed=self.seed * 100_003 + self._imaginations * 7919)
        except KeyboardInterrupt:
            raise
        except Exception:  # a model fault: no new hypotheses this time, the search goes on
            return None
        return None if check_video(video, img.height, img.width) else video

    @property
    def _detector_imagines(self) -> bool:
        """Whether the detector reads the imagination's rollouts (a model detector) rather than the
        observation (oracle detection): it then needs samples, rollouts between plans, repeated stop checks."""
        return not getattr(self.detector, "oracle", True)

    def _num_samples(self) -> int:
        # a model detector reads these rollouts: at least the samples it votes with
        if not self._detector_imagines:
            return self.cfg.num_samples
        return max(self.cfg.num_samples, getattr(getattr(self.detector, "cfg", None), "num_samples", 1))

    def _grid(self):
        # one planning grid per plan: the frontier value and the path to the chosen goal share it
        if self._plan_grid is None:
            self._plan_grid = super()._grid()
        return self._plan_grid

    # ------------------------------------------------------------------------ belief map
    def _ensure_belief(self) -> np.ndarray:
        if self.belief is None:
            self.belief = np.zeros(self._map.floor_hits.shape, dtype=np.float32)
        return self.belief

    def _add_blob(self, xz: np.ndarray, weight: float, sigma: float) -> None:
        b = self._ensure_belief()
        res = self._map.cfg.resolution
        iz, ix = self._map.cells_of(np.asarray(xz, dtype=np.float64)[None])[0]
        r = int(math.ceil(3 * sigma / res))
        z0, z1, x0, x1 = max(0, iz - r), min(b.shape[0], iz + r + 1), max(0, ix - r), min(b.shape[1], ix + r + 1)
        if z0 >= z1 or x0 >= x1:
            return
        zz, xx = np.mgrid[z0:z1, x0:x1]
        d2 = ((zz - iz) ** 2 + (xx - ix) ** 2) * res * res
        b[z0:z1, x0:x1] += (weight * np.exp(-0.5 * d2 / sigma**2)).astype(np.float32)
        np.minimum(b[z0:z1, x0:x1], BELIEF_CAP, out=b[z0:z1, x0:x1])  # so looking there and not seeing it can undo it

    def _add_hypotheses(self, video: ImaginedVideo, obs: Observation) -> None:
        from models.red_box import detect_red_box
        from planners.grounding import read_back_path

        start = start_pose(obs)
        T0 = pose_to_matrix(start)
        for s, frames in enumerate(video.frames):
            box = detect_red_box(frames, min_confidence=self.cfg.min_box_score)
            try:
                path = read_back_path(self.cfg.readback, frames, obs.depth, self.K_img, video, s)
            except ValueError:
                continue
            rel = path.poses_rel
            if not np.all(np.isfinite(rel)):
                continue
            end = T0 @ rel[-1]
            end_xz, fwd = end[[0, 2], 3], -end[[0, 2], 2]
            fwd = fwd / max(float(np.linalg.norm(fwd)), 1e-9)
            conf = float(path.confidence)
            if box is None:
                self._add_blob(end_xz + self.cfg.default_box_depth * fwd, self.cfg.hint_weight * (0.5 + 0.5 * conf), self.cfg.belief_sigma)
                continue
            xz = self._box_target(box, obs, end_xz, fwd, path_length_xz(rel))
            w = float(box.score * (0.5 + 0.5 * conf))
            self._add_blob(xz, w, self.cfg.belief_sigma)
            self._open.append(len(self.hypotheses))
            self.hypotheses.append((float(xz[0]), float(xz[1]), w))
            if self._route is None or w > self._route[1]:
                self._route = (rel, w, xz)

    def _box_target(self, box: Box2D, obs: Observation, end_xz: np.ndarray, fwd: np.ndarray, length: float) -> np.ndarray:
        """Floor xz of a boxed sample's target: through the box centre from the path's end pose."""
        if length <= self.cfg.near_translation:
            H, W = obs.rgb.shape[:2]
            xz = self._target_xz(box.scaled(W / self.imagination.width, H / self.imagination.height), obs)
            if xz is not None:
                return xz
        # bearing of the box centre: right of the image centre is a turn to the right (clockwise from above)
        ang = math.atan2(box.center[0] - self.K_img[0, 2], self.K_img[0, 0])
        c, s = math.cos(ang), math.sin(ang)
        right = np.array([-fwd[1], fwd[0]])  # fwd rotated clockwise in (x, z) = the camera's right
        ray = c * fwd + s * right
        return end_xz + self._range_on_map(end_xz, ray) * ray

    def _range_on_map(self, xz: np.ndarray, ray: np.ndarray) -> float:
        """Distance along `ray` to the first obstacle the map knows (default_box_depth if none)."""
        res = self._map.cfg.resolution
        t = np.arange(0.3, self.cfg.max_box_depth, 0.5 * res)
        cells = self._map.cells_of(xz + t[:, None] * ray)
        n = self._map.floor_hits.shape[0]
        ok = (cells >= 0).all(axis=1) & (cells < n).all(axis=1)
        state = self._map.state
        hit = np.zeros(len(t), dtype=bool)
        hit[ok] = state[cells[ok, 0], cells[ok, 1]] == OCCUPIED
        return float(t[np.argmax(hit)]) if hit.any() else self.cfg.default_box_depth

    def _lower_in_view(self, obs: Observation) -> None:
        """The detector looked and did not fire: lower the belief on the floor the view covers."""
        if self.belief is None or obs.depth is None or obs.pose is None:
            return
        H, W = obs.depth.shape
        cols = np.arange(0, W, 4)
        band = obs.depth[int(H * 0.3) : int(H * 0.9), cols]
        band = np.where(np.isfinite(band) & (band > 0), band, np.nan)
        with np.errstate(all="ignore"):
            rng = np.nanmedian(band, axis=0)
        rng = np.minimum(np.nan_to_num(rng, nan=0.0), self.cfg.view_range)
        ang = np.arctan2(cols + 0.5 - self.K[0, 2], self.K[0, 0])
        fwd = obs.pose.forward[[0, 2]]
        right = np.array([-fwd[1], fwd[0]])
        rays = np.cos(ang)[:, None] * fwd + np.sin(ang)[:, None] * right
        t = np.arange(0.0, self.cfg.view_range, 0.5 * self._map.cfg.resolution)
        pts = obs.pose.xyz[[0, 2]] + rays[:, None, :] * t[None, :, None]
        pts = pts[t[None, :] <= rng[:, None]]
        cells = np.unique(self._map.cells_of(pts), axis=0)
        n = self.belief.shape[0]
        cells = cells[(cells >= 0).all(axis=1) & (cells < n).all(axis=1)]
        self.belief[cells[:, 0], cells[:, 1]] *= self.cfg.absence_decay
        if self._open:  # hypotheses in plain sight and near, the detector silent: misses
            seen = self._in_plain_sight(np.asarray([self.hypotheses[i][:2] for i in self._open]), obs, cols, rng, fwd, right)
            self.trust.misses += int(seen.sum())
            self._open = [i for i, s in zip(self._open, seen) if not s]

    def _in_plain_sight(self, xz: np.ndarray, obs: Observation, cols: np.ndarray, rng: np.ndarray, fwd: np.ndarray,
                        right: np.ndarray) -> np.ndarray:
        """Which floor points `xz` the view shows from within CHECK_RANGE_M, well inside the image's
        sides, with nothing nearer in their depth column: a target there would be seen (the checks of
        the trust estimate; lowering the belief is looser, along every ray)."""
        d = xz - obs.pose.xyz[[0, 2]]
        dist = np.linalg.norm(d, axis=1)
        ang = np.arctan2(d @ right, d @ fwd)  # right of the optical axis is positive
        u = self.K[0, 2] + self.K[0, 0] * np.tan(np.clip(ang, -1.5, 1.5))
        W = obs.depth.shape[1]
        inside = (np.abs(ang) < math.pi / 2) & (u >= 0.15 * W) & (u <= 0.85 * W) & (dist <= CHECK_RANGE_M)
        free = rng[np.clip(np.searchsorted(cols, u) - 1, 0, len(cols) - 1)] >= dist * np.cos(ang) - self.cfg.belief_sigma
        return inside & free

    def _confirm(self, obs: Observation, box: Box2D) -> None:
        """The detector fired: hypotheses near what it sees are hits."""
        xz = self._target_xz(box, obs) if self._open else None
        if xz is None:
            return
        near = [i for i in self._open if math.dist(self.hypotheses[i][:2], xz) <= CONFIRM_M]
        self.trust.hits += len(near)
        self._open = [i for i in self._open if i not in near]

    def trusted_belief(self) -> np.ndarray:
        """The belief as decisions read it: times the imagination's measured trust over its prior."""
        return self.belief * np.float32(self.trust.weight)

    # --------------------------------------------------------------------------- decide
    def _seen_box(self, obs: Observation) -> Box2D | None:
        if not self._detector_imagines:
            box = self.detector(obs, self._memory)
        elif self._video is not None:  # the imagination detector reads this plan's own rollout
            box = self.detector(obs, self._memory, video=self._video)
        elif self._close_ahead(obs):
            # something is within stop range in the part of the view a STOP needs centred: the detector
            # imagines again from here (a new seed each time), where a stop could be right
            box = self.detector(obs, self._memory)
        else:
            return None  # not consulted between rollouts: no evidence either way
        if box is None:
            self._passes = []  # a check without a fire breaks the run of consecutive passes
            self._lower_in_view(obs)
        else:
            self._confirm(obs, box)
            self._imagine_now = self._detector_imagines  # keep looking while it fires
        return box

    def _stop_here(self, box: Box2D, obs: Observation) -> bool:
        """A model detector must pass the stop rule at `stop_checks` consecutive checks (each a fresh
        rollout, newly seeded) on the same spot (targets within SAME_SPOT_M): a weak model's box
        follows its sampling noise, so one pass is weak evidence, and a wrong STOP ends the episode.
        Between the checks the agent keeps approaching, and imagines again at once."""
        if not super()._stop_here(box, obs):
            self._passes = []
            return False
        if not self._detector_imagines or self.cfg.stop_checks <= 1:
            return True
        xz = self._target_xz(box, obs)
        if xz is None:
            return False
        if self._passes and np.linalg.norm(self._passes[-1] - xz) > SAME_SPOT_M:
            self._passes = []
        self._passes.append(xz)
        self._imagine_now = True
        return len(self._passes) >= self.cfg.stop_checks

    def _close_ahead(self, obs: Observation) -> bool:
        """Whether the centred part of the view (|x - W/2| <= gamma/2 W, above the floor's nearest rows)
        has something within stop_distance on the floor plane: the stop rule can only fire there."""
        if obs.depth is None:
            return False
        H, W = obs.depth.shape
        c0, c1 = int(W / 2 * (1 - self.cfg.gamma)), int(math.ceil(W / 2 * (1 + self.cfg.gamma)))
        d = obs.depth[int(H * 0.2) : int(H * 0.8), c0:c1]
        u = np.arange(c0, c1) + 0.5
        d = d * np.hypot(1.0, (u - self.K[0, 2]) / self.K[0, 0])[None, :]
        d = d[np.isfinite(d) & (d > 0)]
        return bool(d.size and np.percentile(d, 10) <= self.cfg.stop_distance)

    def _frontier(self, obs: Observation) -> tuple[list[Action], str]:
        if self._map is None or self.belief is None:
            return super()._frontier(obs)
        grid = self._grid()
        here = obs.pose.xyz[[0, 2]]
        belief = self.trusted_belief()
        peak = float(belief.max())
        if peak >= self.cfg.goal_threshold:
            acts, note = self._to_hypothesis(obs, grid, here, belief)
            if acts:
                return acts, note
        elif self._hyp_goal is not None:
            self._hyp_goal = None
            self._goal = None
        if self._video is None and self._goal is not None and self._hyp_goal is None:
            return super()._frontier(obs)  # between rollouts: keep the frontier chosen
        goals = self._frontier_goals(grid)
        if len(goals) == 0:
            return super()._frontier(obs)
        dist = grid.distance_field(here)[0][tuple(grid.cells_of(goals).T)]
        ok = np.isfinite(dist)
        if not ok.any():
            return super()._frontier(obs)
        smooth = ndimage.gaussian_filter(belief, self.cfg.value_sigma / self._map.cfg.resolution)
        iz, ix = self._map.cells_of(goals).T
        # belief counts in units of the goal threshold (capped at 1): weak hints tip the choice between
        # frontiers at similar distances, a confident hypothesis is worth value_weight metres of path
        bonus = self.cfg.value_weight * np.minimum(smooth[iz, ix] / self.cfg.goal_threshold, 1.0)
        value = np.where(ok, bonus - dist, -np.inf)
        best = int(np.argmax(value))
        kept = self._kept_frontier(goals, ok)
        if kept is None or (bonus[best] - bonus[kept] > self.cfg.switch_margin and value[best] > value[kept]):
            self._goal = goals[best]
        return super()._frontier(obs)  # keeps heading for self._goal (the best-valued frontier)

    def _kept_frontier(self, goals: np.ndarray, ok: np.ndarray) -> int | None:
        """Index in `goals` of the reachable frontier goal being walked to, if it is still one."""
        from planners.explore import REACHED_M

        if self._goal is None or self._hyp_goal is not None:
            return None
        d = np.linalg.norm(goals - self._goal, axis=1)
        i = int(np.argmin(d))
        return i if d[i] <= REACHED_M and ok[i] else None

    def _to_hypothesis(self, obs: Observation, grid, here: np.ndarray, belief: np.ndarray) -> tuple[list[Action], str]:
        # keep the hypothesis being walked to until it fades or a new rollout came in (no dithering
        # between two blobs as the belief under the view is lowered step by step)
        hz = self._hyp_goal
        if hz is not None:
            iz, ix = self._map.cells_of(hz[None])[0]
        if hz is None or self._video is not None or belief[iz, ix] < self.cfg.goal_threshold:
            iz, ix = np.unravel_index(int(np.argmax(belief)), belief.shape)
            hz = self._map.cfg.resolution * (np.array([ix, iz]) + 0.5) + self._map.origin
        self._hyp_goal = hz
        xz = grid.cell_centres(np.argwhere(grid.navigable))
        near = xz[np.linalg.norm(xz - hz, axis=1) <= self.cfg.hypothesis_reach]
        path = grid.shortest_path(here, near) if len(near) else near
        b = float(belief[iz, ix])
        if len(path):
            acts = self._step_along(obs, path)
            if acts:
                return acts, f"imagined target (belief {b:.2f}) -> {np.linalg.norm(hz - here):.1f} m"
            # arrived: face it; if the detector still does not fire there, it was not there
            err = float(wrap_angle(yaw_towards(*(hz - here)) - obs.pose.yaw))
            if abs(err) > 0.75 * math.radians(self.motion.turn_deg) and np.linalg.norm(hz - here) > 0.2:
                return [Action.TURN_LEFT if err > 0 else Action.TURN_RIGHT], "at the imagined target -> facing it"
            self._visited(hz, checked=True)
            self._imagine_now = True
            return [], ""
        # no known way to it on the map: walk the imagined route that led there (the imagination has
        # seen the way), else the frontier that leads there (path to the frontier + straight line on)
        if (acts := self._follow_route(obs, hz)):
            return acts, f"imagined target (belief {b:.2f}), no known way -> {len(acts)} actions of the imagined route"
        goals = self._frontier_goals(grid)
        if len(goals):
            dist = grid.distance_field(here)[0][tuple(grid.cells_of(goals).T)] + np.linalg.norm(goals - hz, axis=1)
            if np.isfinite(dist).any():
                path = grid.shortest_path(here, goals[int(np.argmin(dist))])
                if len(path) and (acts := self._step_along(obs, path)):
                    return acts, f"imagined target (belief {b:.2f}), no known way -> the frontier towards it"
        self._visited(hz)  # unreachable as far as the map knows: try the next hypothesis
        return [], ""

    def _follow_route(self, obs: Observation, hz: np.ndarray) -> list[Action]:
        """The first `execute_steps` actions of the route this plan imagined to `hz` (the grounding
        loop: the imagination has seen a way the map does not know yet), cut where the depth says the
        body would hit something; the next plan imagines again from where they end. [] when this plan
        imagined no such route."""
        from planners.control import free_prefix, path_actions

        if self._video is None or self._route is None:
            return []
        rel, _, xz = self._route
        if np.linalg.norm(xz - hz) > self.cfg.hypothesis_reach + self.cfg.belief_sigma:
            return []
        prefix, _ = free_prefix(obs.depth, self.K, rel, self.cfg.agent_radius)
        if prefix is None:
            return []
        acts = path_actions(start_pose(obs), prefix, self.motion)[: self.cfg.execute_steps]
        if acts:
            self._imagine_now = True
        return acts

    def _visited(self, xz: np.ndarray, checked: bool = False) -> None:
        """Belief around `xz` is (nearly) cleared; `checked`: the agent stood there facing it and the
        detector did not fire, so the open hypotheses there are misses."""
        if checked:
            r = self.cfg.hypothesis_reach + self.cfg.belief_sigma
            there = [i for i in self._open if math.dist(self.hypotheses[i][:2], xz) <= r]
            self.trust.misses += len(there)
            self._open = [i for i in self._open if i not in there]
        res = self._map.cfg.resolution
        iz, ix = self._map.cells_of(np.asarray(xz)[None])[0]
        zz, xx = np.ogrid[: self.belief.shape[0], : self.belief.shape[1]]
        r = self.cfg.hypothesis_reach + self.cfg.belief_sigma
        near = ((zz - iz) ** 2 + (xx - ix) ** 2) * res * res <= r * r
        self.belief[near] *= VISITED_DECAY
        self._hyp_goal = None
