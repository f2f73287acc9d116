"""`oracle` planner: the grounding loop with the imagination replaced by simulator renders.

`OracleImagination` implements the `Imagination` protocol: `ground` renders the path a greedy discrete
expert walks from the agent's pose to a view point of the target (facing it) and draws the red box (draw_red_box) on the trailing
frames; `navigate` renders at the waypoints. It renders at the imagination's resolution so the
read-back, controller and viewer see exactly what they would see from the model — the upper bound of
what a perfect generator could give the same loop. It also reports the poses it rendered at in
`meta["poses_rel"]`, which `readback=true` uses (default) to separate generation from read-back
errors; `readback=flow` measures the whole chain.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from envs.config import check
from envs.geometry import apply_relative, pose_to_matrix, wrap_angle, yaw_towards
from envs.types import Pose
from models.factory import MODELS, ModelConfig
from models.red_box import draw_red_box
from models.types import ImaginedVideo, VideoContext
from planners.base import PlannerError
from planners.grounding import GroundingPlanner, GroundingPlannerConfig


@dataclass
class OraclePlannerConfig(GroundingPlannerConfig):
    """Grounding loop with simulator renders as the imagination: the upper bound."""

    name: str = "oracle"
    num_samples: int = 1
    readback: str = "true"
    height: int = 64  # render at the imagination's resolution
    width: int = 64
    num_frames: int = 20
    num_box_frames: int = 4

    @property
    def needs_imagination(self) -> bool:
        return False  # it renders its own

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.height >= 16 and self.width >= 16, f"planner.height/width must be >= 16, got {self.height}x{self.width}")
        check(0 <= self.num_box_frames < self.num_frames, "planner.num_box_frames must be in [0, num_frames)")


class OracleImagination:
    """Simulator renders in place of generated videos (same protocol as the diffusion pipeline)."""

    def __init__(self, world: Any, height: int = 64, width: int = 64, num_frames: int = 20, num_box_frames: int = 4) -> None:
        for attr in ("render_at", "view_points", "navgrid", "gt_boxes", "scene"):
            if not hasattr(world, attr):
                raise PlannerError(f"the oracle needs a simulator with {attr}() (env=embedded); {type(world).__name__} has none")
        self.world = world
        self.height, self.width, self.num_frames, self.num_box_frames = height, width, num_frames, num_box_frames

    # ------------------------------------------------------------------------------- helpers
    def _current(self) -> Pose:
        return self.world.agent_pose

    def _render(self, pose: Pose) -> tuple[np.ndarray, Any]:
        obs = self.world.render_at(pose)
        rgb = obs.rgb
        if rgb.shape[:2] != (self.height, self.width):
            rgb = cv2.resize(rgb, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return rgb, obs

    def _target_ids(self) -> tuple[int, ...]:
        return tuple(getattr(self.world.episode, "target_instance_ids", ()) or ())

    def _goal_points(self, ids: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(K, 2) view points of the instances `ids` (default: the episode's targets) and (K,) their ids."""
        ids = self._target_ids() if ids is None else ids
        if not ids:
            raise ValueError("the episode names no target instance; the oracle needs simulator ground truth")
        pts, owner = [], []
        for iid in ids:
            vp = np.asarray(self.world.view_points(iid), dtype=np.float64).reshape(-1, 2)
            pts.append(vp)
            owner.append(np.full(len(vp), iid))
        pts_a, own_a = np.concatenate(pts), np.concatenate(owner)
        if len(pts_a) == 0:
            raise ValueError("no target instance has a view point")
        return pts_a, own_a

    def expert_poses(self, start: Pose, max_actions: int = 400, ids: tuple[int, ...] | None = None) -> tuple[list[Pose], int]:
        """Poses after each action of a greedy discrete expert (Habitat's shortest-path follower,
        one-step lookahead over every heading on the geodesic field): walk until standing on a view
        point of a target, then turn to face that instance. Why not the shortest path itself: a
        polyline through free space is not what 0.25 m / 30-degree actions can follow without
        clipping corners; the expert's poses are exactly executable. Returns (poses, instance id).
        `ids`: the instances to walk to (default: the episode's targets)."""
        from envs.embedded.follower import greedy_descent

        grid = self.world.navgrid
        goals, owner = self._goal_points(ids)
        turn = np.deg2rad(float(self.world.cfg.turn_angle_deg))
        poses = greedy_descent(grid, lambda xz: grid.geodesic_distance(xz, goals), start,
                               float(self.world.cfg.forward_step), turn, max_actions)
        pose = poses[-1]
        # face the nearest target instance, in whole turns
        here = pose.xyz[[0, 2]]
        iid = int(owner[int(np.argmin(np.linalg.norm(goals - here, axis=1)))])
        obj = self.world.scene.object(iid)
        want = float(np.arctan2(-(obj.position[0] - here[0]), -(obj.position[2] - here[1])))
        n = int(round(float(wrap_angle(want - pose.yaw)) / turn))
        for _ in range(abs(n)):
            pose = Pose(pose.position, float(wrap_angle(pose.yaw + np.sign(n) * turn)), 0.0)
            poses.append(pose)
        return poses, iid

    def _fit_frames(self, poses: list[Pose], n: int) -> list[Pose]:
        """Exactly `n` poses: the first n//2 expert poses one per action, the rest evenly spaced to
        the end (or padded with the last). Why dense at the start: the receding-horizon loop only
        executes the first few actions, and a chord between poses several actions apart can clip a
        corner that the expert went around."""
        if len(poses) <= n:
            return poses + [poses[-1]] * (n - len(poses))
        head = n // 2
        tail = np.linspace(head, len(poses) - 1, n - head).round().astype(int)
        return poses[:head] + [poses[i] for i in tail]

    def _video(self, poses: list[Pose], start: Pose, box_for: int | None, samples: int, mode: str, t0: float, **kw: Any) -> ImaginedVideo:
        frames = []
        last_obs = None
        for p in poses:
            rgb, last_obs = self._render(p)
            frames.append(rgb)
        rel = np.stack([np.linalg.inv(pose_to_matrix(start)) @ pose_to_matrix(p) for p in poses])
        if box_for is not None and self.num_box_frames > 0:
            box = next((b for b in self.world.gt_boxes(last_obs) if b.instance_id == box_for), None)
            boxed = frames[-1]
            if box is not None:
                sx, sy = self.width / last_obs.rgb.shape[1], self.height / last_obs.rgb.shape[0]
                b = box.scaled(sx, sy)
                boxed = draw_red_box(frames[-1], (b.x0, b.y0, b.x1, b.y1))
            frames += [boxed] * self.num_box_frames
            rel = np.concatenate([rel, np.repeat(rel[-1:], self.num_box_frames, axis=0)])
        video = np.stack(frames)
        return ImaginedVideo(
            frames=np.repeat(video[None], samples, axis=0),
            mode=mode,  # type: ignore[arg-type]
            seconds=time.perf_counter() - t0,
            meta={"poses_rel": np.repeat(rel[None], samples, axis=0), "oracle": True},
            **kw,
        )

    # ------------------------------------------------------------------------------ protocol
    def ground(self, context: VideoContext, instruction: str, num_samples: int = 1, seed: int = 0) -> ImaginedVideo:
        t0 = time.perf_counter()
        start = self._current()
        path, iid = self.expert_poses(start)
        poses = self._fit_frames(path, self.num_frames - self.num_box_frames)
        return self._video(poses, start, iid, num_samples, "grounding", t0, instruction=instruction)

    def navigate(self, context: VideoContext, waypoints: np.ndarray, num_samples: int = 1, seed: int = 0) -> ImaginedVideo:
        t0 = time.perf_counter()
        w = np.asarray(waypoints, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != 6:
            raise ValueError(f"waypoints must be (F, 6) (dx, dy, dz, dyaw, dpitch, droll), got {w.shape}")
        start = self._current()
        poses = [apply_relative(start, row[:3], row[3:]) for row in w]
        return self._video(poses, start, None, num_samples, "navigation", t0, waypoints=w)


@dataclass
class NoisyOracleConfig(ModelConfig):
    """`model=oracle_noisy`: the imagination-quality dial (simulators only). Knobs, each seeded:"""

    name: str = "oracle_noisy"
    p_wrong: float = 0.0  # share of samples that go to another object or a random direction
    pose_noise_m: float = 0.0  # std of the drift (m) the rendered route reaches at its end
    pose_noise_deg: float = 0.0  # std of the heading drift (degrees) at its end
    resolution: int = 64  # square frame size (the tiny model works at 48)
    blur: float = 0.0  # Gaussian blur sigma in pixels of the path frames
    p_no_box: float = 0.0  # share of samples whose box frames carry no box
    num_frames: int = 12  # frames per video (path + box), as the tiny model's
    num_box_frames: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("p_wrong", "p_no_box"):
            check(0.0 <= getattr(self, key) <= 1.0, f"model.{key} must be in [0, 1], got {getattr(self, key)}")
        check(self.pose_noise_m >= 0 and self.pose_noise_deg >= 0 and self.blur >= 0, "model.pose_noise_m, pose_noise_deg and blur must be >= 0")
        check(16 <= self.resolution <= 256, f"model.resolution must be in [16, 256], got {self.resolution}")
        check(0 <= self.num_box_frames < self.num_frames, "model.num_box_frames must be in [0, num_frames)")


def noisy_oracle(cfg: NoisyOracleConfig) -> NoisyOracleImagination:
    """The dial's loader (models.factory.MODELS): unbound until the run binds it to its world."""
    return NoisyOracleImagination(None, cfg.resolution, cfg.num_frames, cfg.num_box_frames, cfg.p_wrong, cfg.pose_noise_m,
                                  cfg.pose_noise_deg, cfg.blur, cfg.p_no_box, cfg.seed)


class NoisyOracleImagination(OracleImagination):
    """The imagination-quality dial (`model=oracle_noisy`): the oracle's true route, degraded per
    sample with seeded knobs, so agent success can be plotted against imagination quality (IF).

    p_wrong: the sample walks to another object (box on it) or, half of the time, a random direction
    (no box); pose_noise_m / pose_noise_deg: the rendered route drifts from the true one, linearly
    along the path to that std at its end (the box then frames what is visible from the drifted end,
    if the object is still in view); resolution: square frame size; blur: Gaussian sigma in pixels
    of the path frames; p_no_box: the box frames show no box. It reports the poses it rendered at in
    `meta["poses_rel"]` (readback=true reads them; flow reads the frames)."""

    def __init__(self, world: Any, resolution: int = 64, num_frames: int = 12, num_box_frames: int = 4, p_wrong: float = 0.0,
                 pose_noise_m: float = 0.0, pose_noise_deg: float = 0.0, blur: float = 0.0, p_no_box: float = 0.0, seed: int = 0) -> None:
        if world is not None:
            super().__init__(world, resolution, resolution, num_frames, num_box_frames)
        self.world = world
        self.height = self.width = resolution
        self.num_frames, self.num_box_frames = num_frames, num_box_frames
        self.p_wrong, self.pose_noise_m, self.pose_noise_deg = p_wrong, pose_noise_m, pose_noise_deg
        self.blur, self.p_no_box, self.seed = blur, p_no_box, seed

    def bind_env(self, env: Any) -> None:
        """Render in `env` (the run's world; PlannerError with one line when it is no simulator)."""
        OracleImagination.__init__(self, env, self.height, self.width, self.num_frames, self.num_box_frames)

    def _wrong_route(self, start: Pose, rng: np.random.Generator) -> tuple[list[Pose], int | None]:
        """Another object's route (box on it), or a random heading walked straight (no box)."""
        targets = set(self._target_ids())
        cat = getattr(self.world.episode, "target_category", "")
        others = [o.instance_id for o in self.world.scene.objects
                  if o.instance_id not in targets and o.category != cat and len(self.world.view_points(o.instance_id))]
        if others and rng.random() < 0.5:
            iid = int(rng.choice(others))
            try:
                return self.expert_poses(start, ids=(iid,))
            except ValueError:
                pass
        turn = np.deg2rad(float(self.world.cfg.turn_angle_deg))
        step = float(self.world.cfg.forward_step)
        k = int(rng.integers(-5, 7))
        pose, poses = start, [start]
        for _ in range(abs(k)):
            pose = Pose(pose.position, float(wrap_angle(pose.yaw + np.sign(k) * turn)), 0.0)
            poses.append(pose)
        for _ in range(int(rng.integers(2, 12))):
            x, y, z = pose.position
            nxt = (x - step * np.sin(pose.yaw), z - step * np.cos(pose.yaw))
            if not self.world.navgrid.segment_free((x, z), nxt):
                break
            pose = Pose((float(nxt[0]), y, float(nxt[1])), pose.yaw, 0.0)
            poses.append(pose)
        return poses, None

    def _drift(self, poses: list[Pose], rng: np.random.Generator) -> list[Pose]:
        if self.pose_noise_m <= 0 and self.pose_noise_deg <= 0:
            return poses
        dxz = rng.normal(0.0, self.pose_noise_m, 2)
        dyaw = np.deg2rad(rng.normal(0.0, self.pose_noise_deg))
        n = max(len(poses) - 1, 1)
        out = []
        for i, p in enumerate(poses):
            f = i / n  # the first pose is the current view, which the imagination is given
            x, y, z = p.position
            out.append(Pose((float(x + f * dxz[0]), y, float(z + f * dxz[1])), float(wrap_angle(p.yaw + f * dyaw)), p.pitch))
        return out

    def _centred(self, pose: Pose, iid: int) -> Pose:
        obj = self.world.scene.object(iid)
        x, y, z = pose.position
        dx, dz = obj.position[0] - x, obj.position[2] - z
        return Pose(pose.position, yaw_towards(dx, dz), float(np.arctan2(obj.position[1] - y, np.hypot(dx, dz))))

    def _sample(self, start: Pose, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < self.p_wrong:
            route, iid = self._wrong_route(start, rng)
        else:
            route, iid = self.expert_poses(start)
        poses = self._fit_frames(route, self.num_frames - self.num_box_frames)
        if iid is not None:  # end centred on the object, as the training clips do (not in whole turns)
            poses[-1] = self._centred(poses[-1], iid)
        poses = self._drift(poses, rng)
        frames, last_obs = [], None
        for p in poses:
            rgb, last_obs = self._render(p)
            frames.append(cv2.GaussianBlur(rgb, (0, 0), self.blur) if self.blur > 0 else rgb)
        rel = np.stack([np.linalg.inv(pose_to_matrix(start)) @ pose_to_matrix(p) for p in poses])
        if self.num_box_frames:
            boxed = frames[-1]
            box = None
            if iid is not None and rng.random() >= self.p_no_box:
                box = next((b for b in self.world.gt_boxes(last_obs) if b.instance_id == iid), None)
            if box is not None:
                sx, sy = self.width / last_obs.rgb.shape[1], self.height / last_obs.rgb.shape[0]
                boxed = draw_red_box(frames[-1], (box.x0 * sx, box.y0 * sy, box.x1 * sx, box.y1 * sy))
            frames += [boxed] * self.num_box_frames
            rel = np.concatenate([rel, np.repeat(rel[-1:], self.num_box_frames, axis=0)])
        return np.stack(frames), rel

    def ground(self, context: VideoContext, instruction: str, num_samples: int = 1, seed: int = 0) -> ImaginedVideo:
        t0 = time.perf_counter()
        # the episode id too: rollout k of every episode must not share its draws
        ep = str(getattr(self.world.episode, "episode_id", ""))
        rng = np.random.default_rng([self.seed, int(seed) & 0xFFFFFFFF, zlib.crc32(ep.encode())])
        start = self._current()
        out = [self._sample(start, rng) for _ in range(num_samples)]
        return ImaginedVideo(frames=np.stack([f for f, _ in out]), mode="grounding", instruction=instruction,
                             seconds=time.perf_counter() - t0,
                             meta={"poses_rel": np.stack([r for _, r in out]), "oracle": True})


class OraclePlanner(GroundingPlanner):
    """Same loop as `grounding`, imagination = OracleImagination over the env itself."""

    name = "oracle"

    def __init__(self, cfg: OraclePlannerConfig, env: Any, imagination: Any = None, seed: int = 0, detector: Any = None) -> None:
        if imagination is None:
            imagination = OracleImagination(env, cfg.height, cfg.width, cfg.num_frames, cfg.num_box_frames)
        super().__init__(cfg, env, imagination, seed=seed, detector=detector)


# registered here too (planners.factory registers it by path for the config store), so building a
# NoisyOracleConfig works wherever this module is imported first (the sweep's imagination evaluation)
MODELS.register("oracle_noisy", noisy_oracle, NoisyOracleConfig)
