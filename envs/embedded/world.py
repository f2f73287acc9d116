"""EmbeddedWorld: the MuJoCo-rendered apartment as an envs.base.NavEnv (Habitat ObjectNav semantics).

Actions move the agent on the NavGrid (habitat allow_sliding=False: a blocked forward move leaves
the agent in place and counts a collision); MuJoCo only renders. With `actuation_noise` the executed
motion is noisy (collisions use the true pose); `pose_source=odometry` reports the dead-reckoned pose
instead of the true one. A `RouteEpisode` is a pose-following episode, measured by `RouteMeasures`. `render_at` renders any pose
without touching the agent, which is what the data generator and the oracle planner use.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import ndimage

from envs.embedded.gl import ensure_backend

ensure_backend()

from envs.base import EpisodeBookkeeping  # noqa: E402
from envs.embedded.assets import SceneAssets, get_assets  # noqa: E402
from envs.embedded.categories import category_phrase, check_category  # noqa: E402
from envs.embedded.config import WorldConfig  # noqa: E402
from envs.embedded.errors import NoReachableTargetError  # noqa: E402
from envs.embedded.render import GLRenderer  # noqa: E402
from envs.embedded.routes import RouteMeasures  # noqa: E402
from envs.embedded.scene import SceneSpec  # noqa: E402
from envs.embedded.task import ObjectNavMeasures, goal_view_points, make_episode, reachable_targets  # noqa: E402
from envs.geometry import intrinsics_from_hfov, wrap_angle, yaw_towards  # noqa: E402
from envs.instructions import grounding_instruction  # noqa: E402
from envs.navgrid import NavGrid  # noqa: E402
from envs.odometry import integrate, moved, noisy_motion  # noqa: E402
from envs.splits import split_seeds  # noqa: E402
from envs.types import Action, Box2D, Episode, EpisodeMetrics, Observation, Pose, RouteEpisode  # noqa: E402

_ACTION_NAMES = ", ".join(f"{a.value}={a.name}" for a in Action)


class EmbeddedWorld(EpisodeBookkeeping):
    """Procedural apartment world. One GL context per instance, reused across scenes."""

    def __init__(self, cfg: WorldConfig | dict | Any | None = None, scene_seed: int | None = None) -> None:
        self.cfg = WorldConfig.from_any(cfg)
        self.width, self.height, self.hfov_deg = self.cfg.width, self.cfg.height, float(self.cfg.hfov_deg)
        self.K = intrinsics_from_hfov(self.hfov_deg, self.width, self.height)
        self._turn = math.radians(self.cfg.turn_angle_deg)
        self._tilt = math.radians(self.cfg.tilt_angle_deg)
        self._max_pitch = math.radians(self.cfg.max_pitch_deg)
        self._renderer = GLRenderer(self.width, self.height)
        self._assets: SceneAssets | None = None
        self._episode: Episode | None = None
        self._pose = self._odom = Pose((0.0, self.cfg.sensor_height, 0.0), 0.0)
        self._noise_rng = self.cfg.actuation_noise.rng("")
        self._steps = 0
        self._done = True
        self._instruction = ""
        self._measures = ObjectNavMeasures()
        self.load_scene(split_seeds("train", 1)[0] if scene_seed is None else scene_seed)

    # ------------------------------------------------------------------ scene
    def load_scene(self, scene_seed: int) -> None:
        """Build (or take from the process cache) the scene and point the renderer at it."""
        if self._assets is not None and self._assets.seed == int(scene_seed):
            return
        assets = get_assets(scene_seed, self.cfg)
        self._renderer.set_model(assets.model, assets.geom_instance)
        self._assets = assets
        self._episode = None
        self._done = True

    @property
    def scene(self) -> SceneSpec:
        return self._assets.scene

    @property
    def navgrid(self) -> NavGrid:
        return self._assets.navgrid

    @property
    def assets(self) -> SceneAssets:
        return self._assets

    # ------------------------------------------------------------------ episode
    def reset(self, episode: Episode | None = None, seed: int | None = None) -> Observation:
        """Start `episode`, or sample one with `seed` from the current scene."""
        if episode is None:
            episode = self._sample_episode(np.random.default_rng(seed))
        if not isinstance(episode, Episode):
            raise TypeError(f"reset() takes an envs.types.Episode, got {type(episode).__name__}")
        route = isinstance(episode, RouteEpisode)
        self._load_episode_scene(episode)
        if not route and not episode.target_instance_ids:
            ids = reachable_targets(self._assets, episode.target_category)
            if not ids:
                raise NoReachableTargetError(
                    f"scene {self._scene_name(episode)} has no reachable {episode.target_category!r}; "
                    f"pick another scene seed or category (envs.embedded.task.make_episode picks valid ones)"
                )
            episode = dataclasses.replace(episode, target_instance_ids=ids)
        xz = (episode.start.position[0], episode.start.position[2])
        if not self.navgrid.is_navigable(xz):
            raise ValueError(
                f"episode {episode.episode_id!r} starts at x={xz[0]:.2f}, z={xz[1]:.2f}, which is not navigable in "
                f"scene {self._scene_name(episode)}; sample starts with envs.embedded.task.make_episode or navgrid.snap()"
            )
        self._episode = episode
        self._pose = self._odom = episode.start
        self._noise_rng = self.cfg.actuation_noise.rng(episode.episode_id)
        self._steps = 0
        self._done = False
        self._instruction = "" if route else grounding_instruction(self.scene.scene_phrase(), self._category_phrase(episode.target_category))
        self._measures = RouteMeasures() if route else ObjectNavMeasures()
        self._measures.reset(episode, self)
        return self._observe_agent()

    # hooks a world on other scenes (envs.habitat.mesh_world) overrides: where episodes come from
    def _sample_episode(self, rng: np.random.Generator) -> Episode:
        return make_episode(self._assets.seed, rng, world=self)

    def _load_episode_scene(self, episode: Episode) -> None:
        if not isinstance(episode, RouteEpisode):  # a route has no target
            check_category(episode.target_category)
        self.load_scene(episode.scene_seed)

    def _scene_name(self, episode: Episode) -> str:
        return f"seed {episode.scene_seed}"

    def _category_phrase(self, category: str) -> str:
        return category_phrase(category)

    def step(self, action: Action | int) -> Observation:
        try:
            a = Action(int(action))
        except (ValueError, TypeError):
            raise ValueError(f"action {action!r} is out of range; valid actions: {_ACTION_NAMES}") from None
        if self._episode is None:
            raise RuntimeError("step() before reset(): call world.reset() to start an episode")
        if self._done:
            raise RuntimeError("the episode is over (STOP or max_episode_steps reached): call reset() first")
        p = self._pose
        collided = False
        if self.cfg.actuation_noise.enabled and a in (Action.MOVE_FORWARD, Action.TURN_LEFT, Action.TURN_RIGHT):
            p, collided = self._noisy_move(p, a)
        elif a == Action.MOVE_FORWARD:
            x, y, z = p.position
            nx_, nz_ = x - self.cfg.forward_step * math.sin(p.yaw), z - self.cfg.forward_step * math.cos(p.yaw)
            if self.navgrid.segment_free((x, z), (nx_, nz_)):
                p = Pose((nx_, y, nz_), p.yaw, p.pitch)
            else:
                collided = True
        elif a == Action.TURN_LEFT:
            p = Pose(p.position, float(wrap_angle(p.yaw + self._turn)), p.pitch)
        elif a == Action.TURN_RIGHT:
            p = Pose(p.position, float(wrap_angle(p.yaw - self._turn)), p.pitch)
        elif a == Action.LOOK_UP:
            p = Pose(p.position, p.yaw, min(p.pitch + self._tilt, self._max_pitch))
        elif a == Action.LOOK_DOWN:
            p = Pose(p.position, p.yaw, max(p.pitch - self._tilt, -self._max_pitch))
        self._pose = p
        if not collided:  # the bumper reports a blocked move: dead reckoning adds nothing for it
            self._odom = integrate(self._odom, a, self.cfg.forward_step, self._turn, self._tilt, self._max_pitch)
        self._steps += 1
        self._last_collided = collided
        self._measures.update(a, self, collided)
        if a == Action.STOP or self._steps >= self.cfg.max_episode_steps:
            self._done = True
        return self._observe_agent()

    def _noisy_move(self, p: Pose, a: Action) -> tuple[Pose, bool]:
        """The executed motion of a move or turn under actuation noise; (pose, collided)."""
        q = moved(p, *noisy_motion(a, self.cfg.forward_step, self._turn, self.cfg.actuation_noise, self._noise_rng))
        if a == Action.MOVE_FORWARD and not self.navgrid.segment_free(p.xyz[[0, 2]], q.xyz[[0, 2]]):
            return p, True
        return q, False

    def _observe_agent(self) -> Observation:
        """What the agent sees from its true pose, told the pose that `pose_source` names."""
        obs = self._observe(self._pose, semantic=self.cfg.render_semantic)
        if self.cfg.pose_source == "odometry":
            obs.pose = self._odom
        return obs

    def _observe(self, pose: Pose, semantic: bool) -> Observation:
        rgb, depth, sem = self._renderer.render(pose, depth=self.cfg.render_depth, semantic=semantic)
        if depth is not None:
            np.clip(depth, self.cfg.depth_min, self.cfg.depth_max, out=depth)
        return Observation(rgb=rgb, depth=depth, pose=pose, semantic=sem, instruction=self._instruction, step=self._steps)

    def render_at(self, pose: Pose, semantic: bool = True) -> Observation:
        """Render any pose (RGB, depth, instance ids) without moving the agent."""
        if not isinstance(pose, Pose):
            raise TypeError(f"render_at() takes an envs.types.Pose, got {type(pose).__name__}")
        return self._observe(pose, semantic=semantic)

    @property
    def agent_pose(self) -> Pose:
        return self._pose

    def pose_of_agent(self) -> Pose:
        return self._pose

    @property
    def odometry_pose(self) -> Pose:
        """Dead reckoning of the executed commands since reset (equals agent_pose without noise)."""
        return self._odom

    @property
    def last_collided(self) -> bool:
        return bool(getattr(self, "_last_collided", False))

    def metrics(self) -> EpisodeMetrics:
        return self._measures.metrics()

    # ------------------------------------------------------------------ ground truth
    def gt_boxes(self, obs_or_semantic: Observation | np.ndarray, min_pixels: int = 1) -> list[Box2D]:
        """One Box2D per visible instance (label = category), from the instance segmentation."""
        sem = obs_or_semantic.semantic if isinstance(obs_or_semantic, Observation) else obs_or_semantic
        if sem is None:
            raise ValueError("this observation has no semantic image: use render_at(pose) or WorldConfig(render_semantic=True)")
        sem = np.asarray(sem)
        boxes = []
        counts = np.bincount(sem.ravel())
        for k, sl in enumerate(ndimage.find_objects(sem)):
            iid = k + 1
            if sl is None or counts[iid] < min_pixels:
                continue
            cat = self.scene.object(iid).category
            boxes.append(Box2D(float(sl[1].start), float(sl[0].start), float(sl[1].stop), float(sl[0].stop),
                               1.0, cat, iid))
        return boxes

    def view_points(self, instance_id: int) -> np.ndarray:
        """(K, 2) xz view points of an instance (navigable, within view_point_radius, visible). Cached."""
        return self._assets.view_points(int(instance_id))

    def goal_view_points(self, episode: Episode) -> np.ndarray:
        ids = episode.target_instance_ids or reachable_targets(self._assets, episode.target_category)
        return goal_view_points(self._assets, ids)

    def is_visible(self, pose: Pose, instance_id: int, min_pixels: int = 20) -> bool:
        sem = self.render_at(pose, semantic=True).semantic
        return int(np.count_nonzero(sem == int(instance_id))) >= min_pixels

    def centring_pose(self, instance_id: int, from_xz=None, pitch: bool = True) -> Pose:
        """Pose at the view point nearest (geodesically) to from_xz (or to the object if None),
        looking at the object's centre (pitched to centre it vertically unless pitch=False)."""
        obj = self.scene.object(int(instance_id))
        vp = self.view_points(instance_id)
        if len(vp) == 0:
            raise NoReachableTargetError(f"instance {instance_id} ({obj.category}) has no view point in scene {self._assets.seed}")
        if from_xz is None:
            c = np.array([obj.position[0], obj.position[2]])
            target = vp[int(np.argmin(np.linalg.norm(vp - c, axis=1)))]
        else:
            path = self.navgrid.shortest_path(from_xz, vp, simplify=False)
            target = path[-1] if len(path) else vp[int(np.argmin(np.linalg.norm(vp - np.asarray(from_xz)[:2], axis=1)))]
        dx, dz = obj.position[0] - target[0], obj.position[2] - target[1]
        yaw = yaw_towards(dx, dz)
        pit = math.atan2(obj.position[1] - self.cfg.sensor_height, math.hypot(dx, dz)) if pitch else 0.0
        return Pose((float(target[0]), float(self.cfg.sensor_height), float(target[1])), yaw, pit)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __del__(self) -> None:  # GL contexts are a finite resource
        try:
            self.close()
        except Exception:
            pass


def make_embedded_env(cfg: WorldConfig | dict | Any | None = None) -> EmbeddedWorld:
    """Factory for envs.base.make_env("embedded", cfg); a `scene_seed` key in cfg picks the scene."""
    seed = None
    if cfg is not None and not isinstance(cfg, WorldConfig):
        try:
            seed = cfg.get("scene_seed")  # dict or DictConfig
        except AttributeError:
            seed = None
    return EmbeddedWorld(cfg, scene_seed=None if seed is None else int(seed))
