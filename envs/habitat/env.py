"""`env=habitat`: the NavEnv on the real habitat_sim API (thin adapter; the logic lives in pure modules).

What runs here needs habitat_sim (conda-only, Python 3.9 builds) and was not executable in this
repository's CI: keep it to wiring. Pure parts: config, convert, actions, sensors, goals, metrics.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from envs.base import EpisodeBookkeeping
from envs.errors import require_habitat_sim
from envs.geometry import intrinsics_from_hfov
from envs.habitat.actions import action_space, to_habitat_action
from envs.habitat.config import HabitatConfig, coerce_config
from envs.habitat.convert import pose_to_habitat, sensor_state_to_pose
from envs.habitat.goals import (
    SceneObject,
    available_categories,
    candidate_floor_points,
    load_sidecar,
    look_at_pose,
    normalize_category,
    objects_from_semantic_scene,
    objects_of_category,
    sample_episode,
    select_view_points,
    visible_in_depth,
)
from envs.habitat.sensors import DEPTH, SEMANTIC, sensor_defs, to_observation
from envs.instructions import grounding_instruction, with_article
from envs.metrics import objectnav_metrics
from envs.types import Action, Episode, EpisodeMetrics, Observation, Pose


def make_habitat_env(cfg: Any = None) -> HabitatEnv:
    """Registry factory (`envs.base.make_env("habitat", cfg)`); cfg: HabitatConfig | dict | DictConfig."""
    return HabitatEnv(coerce_config(HabitatConfig, cfg, "env=habitat"))


def build_configuration(hs: Any, cfg: HabitatConfig) -> Any:
    """habitat_sim.Configuration: SimulatorConfiguration + one AgentConfiguration with our sensors/actions."""
    sim_cfg = hs.SimulatorConfiguration()
    sim_cfg.scene_id = cfg.scene
    if cfg.scene_dataset_config:
        sim_cfg.scene_dataset_config_file = cfg.scene_dataset_config
    sim_cfg.enable_physics = cfg.enable_physics
    sim_cfg.gpu_device_id = cfg.gpu_device_id
    sim_cfg.allow_sliding = cfg.allow_sliding
    kinds = {"color": hs.SensorType.COLOR, "depth": hs.SensorType.DEPTH, "semantic": hs.SensorType.SEMANTIC}
    specs = []
    for d in sensor_defs(cfg):
        spec = hs.CameraSensorSpec()
        spec.uuid = d.uuid
        spec.sensor_type = kinds[d.kind]
        spec.sensor_subtype = hs.SensorSubType.PINHOLE
        spec.resolution = list(d.resolution)
        spec.position = list(d.position)
        spec.hfov = _deg(d.hfov_deg)
        specs.append(spec)
    agent = hs.agent.AgentConfiguration()
    agent.height = cfg.agent_height
    agent.radius = cfg.agent_radius
    agent.sensor_specifications = specs
    agent.action_space = {
        k: hs.agent.ActionSpec(a.control, hs.agent.ActuationSpec(amount=a.amount))
        for k, a in action_space(cfg.forward_step, cfg.turn_angle_deg, cfg.tilt_angle_deg).items()
    }
    return hs.Configuration(sim_cfg, [agent])


def _deg(v: float) -> Any:
    try:
        import magnum as mn  # ships with habitat_sim; CameraSensorSpec.hfov is a magnum Deg
    except ImportError:
        return v
    return mn.Deg(v)


def _wxyz(q: Any) -> np.ndarray:
    """numpy-quaternion / magnum quaternion -> (w, x, y, z)."""
    if hasattr(q, "w"):
        return np.array([q.w, q.x, q.y, q.z], dtype=np.float64)
    if hasattr(q, "scalar"):  # magnum.Quaternion
        return np.array([q.scalar, *q.vector], dtype=np.float64)
    return np.asarray(q, dtype=np.float64).reshape(4)


class HabitatEnv(EpisodeBookkeeping):
    """ObjectNav on any .glb / HM3D / MP3D scene, goals from our sidecar or the semantic scene."""

    def __init__(self, cfg: HabitatConfig):
        self.cfg = cfg
        self.hfov_deg, self.width, self.height = cfg.hfov_deg, cfg.width, cfg.height
        hs = require_habitat_sim()  # before anything else: the install hint is the first thing users need
        if not cfg.scene:
            raise ValueError("env.scene is empty; pass env.scene=/path/to/scene.glb (HM3D, MP3D, or "
                             "envs.embedded.export.export_glb output)")
        if not cfg.scene_dataset_config and not Path(cfg.scene).is_file():
            raise FileNotFoundError(f"env.scene={cfg.scene} does not exist; download the scene or fix the path")
        self._hs = hs
        self._K = intrinsics_from_hfov(cfg.hfov_deg, cfg.width, cfg.height)
        self._sim = hs.Simulator(build_configuration(hs, cfg))
        self._agent = self._sim.get_agent(0)
        self._ensure_navmesh()
        self._objects = self._load_objects()
        self._view_points: dict[str, np.ndarray] = {}
        self._rng = np.random.default_rng(cfg.seed)
        self._episode: Episode | None = None
        self._n_episodes = 0
        self._reset_counters()

    # --- scene setup -------------------------------------------------------------------------
    def _ensure_navmesh(self) -> None:
        pf, nm = self._sim.pathfinder, self.cfg.resolved_navmesh()
        if nm is not None and not pf.load_nav_mesh(str(nm)):
            raise RuntimeError(f"could not load navmesh {nm}; delete it to have it recomputed from the scene")
        if not pf.is_loaded:  # a bare .glb (e.g. our export) has no navmesh: build one for our agent
            s = self._hs.NavMeshSettings()
            s.set_defaults()
            s.agent_radius, s.agent_height = self.cfg.agent_radius, self.cfg.agent_height
            if hasattr(s, "include_static_objects"):
                s.include_static_objects = True
            if not self._sim.recompute_navmesh(pf, s) or not pf.is_loaded:
                raise RuntimeError(f"navmesh computation failed for {self.cfg.scene}: does the scene have a "
                                   "walkable floor in Y-up orientation?")

    def _load_objects(self) -> list[SceneObject]:
        sidecar = self.cfg.resolved_sidecar()
        if sidecar is not None:
            objects = load_sidecar(sidecar)
        else:
            ss = self._sim.semantic_scene
            entries = [(o.semantic_id, o.category.name() if o.category is not None else "", o.aabb.center,
                        o.aabb.sizes) for o in (ss.objects if ss is not None else []) if o is not None]
            objects = objects_from_semantic_scene(entries)
        if not objects:
            raise ValueError(f"scene {self.cfg.scene} has no semantic objects: pass env.semantic_sidecar=<json> "
                             "or env.scene_dataset_config for HM3D/MP3D semantics")
        return objects

    # --- geometry helpers --------------------------------------------------------------------
    def _snap(self, p: np.ndarray) -> np.ndarray | None:
        q = np.asarray(self._sim.pathfinder.snap_point(np.asarray(p, dtype=np.float32)), dtype=np.float64)
        if not np.all(np.isfinite(q)) or np.linalg.norm((q - p)[[0, 2]]) > self.cfg.view_point_grid:
            return None
        return q

    def _render_raw(self, pose: Pose) -> dict:
        saved = self._agent.get_state()
        try:
            self._place(pose)
            return self._sim.get_sensor_observations()
        finally:
            self._agent.set_state(saved, reset_sensors=False, infer_sensor_states=False)

    def _visible(self, floor_point: np.ndarray, obj: SceneObject) -> bool:
        pose = look_at_pose(floor_point, obj.center, self.cfg.sensor_height)
        if not (self.cfg.depth or self.cfg.semantic):
            return True  # no sensor to check occlusion with: within-radius is all we can say
        raw = self._render_raw(pose)
        if SEMANTIC in raw and self.cfg.resolved_sidecar() is None:
            return bool(np.any(np.asarray(raw[SEMANTIC]) == obj.instance_id))
        if DEPTH not in raw:
            return True
        depth = np.asarray(raw[DEPTH], dtype=np.float32)
        return visible_in_depth(depth, self._K, pose, obj.sample_points(), max_depth=self.cfg.max_depth)

    def view_points(self, category: str) -> np.ndarray:
        """(N, 3) floor view points of every object of `category` (cached per category)."""
        if category not in self._view_points:
            pts = []
            for obj in objects_of_category(self._objects, category):
                floor = np.asarray(self._sim.pathfinder.snap_point(np.asarray(obj.center, dtype=np.float32)),
                                   dtype=np.float64)
                floor_y = float(floor[1]) if np.all(np.isfinite(floor)) else float(obj.aabb_min[1])
                cands = candidate_floor_points(obj, self.cfg.view_point_radius, self.cfg.view_point_grid, floor_y)
                pts.append(select_view_points(obj, cands, self._snap, self._sim.pathfinder.is_navigable,
                                              self._visible, self.cfg.view_point_radius))
            self._view_points[category] = np.concatenate(pts) if pts else np.zeros((0, 3))
        return self._view_points[category]

    def geodesic_distance(self, floor_point: np.ndarray, goals: np.ndarray) -> float:
        """Navmesh distance to the nearest goal (inf when unreachable or no goals)."""
        if len(goals) == 0:
            return float("inf")
        path = self._hs.MultiGoalShortestPath()
        path.requested_start = np.asarray(floor_point, dtype=np.float32)
        path.requested_ends = [np.asarray(g, dtype=np.float32) for g in goals]
        if not self._sim.pathfinder.find_path(path):
            return float("inf")
        return float(path.geodesic_distance)

    def _place(self, pose: Pose) -> None:
        from habitat_sim.utils.common import quat_from_coeffs

        st = pose_to_habitat(pose, self.cfg.sensor_height)
        state = self._hs.AgentState()
        state.position = st.agent_position.astype(np.float32)
        state.rotation = quat_from_coeffs(st.agent_rotation_coeffs)
        self._agent.set_state(state, reset_sensors=True)
        if pose.pitch != 0.0:  # pitch lives on the sensors, relative to the yaw-only body
            s2 = self._agent.get_state()
            rot = quat_from_coeffs(st.sensor_rotation_coeffs)
            for uuid in list(s2.sensor_states):
                s2.sensor_states[uuid] = self._hs.agent.SixDOFPose(st.sensor_position.astype(np.float32), rot)
            self._agent.set_state(s2, reset_sensors=False, infer_sensor_states=False)

    def _body_position(self) -> np.ndarray:
        return np.asarray(self._agent.get_state().position, dtype=np.float64)

    def current_pose(self) -> Pose:
        st = self._agent.get_state()
        s = next(iter(st.sensor_states.values()))
        return sensor_state_to_pose(s.position, _wxyz(s.rotation))

    # --- NavEnv ------------------------------------------------------------------------------
    def _reset_counters(self) -> None:
        self._steps, self._path_length, self._collisions = 0, 0.0, 0
        self._called_stop, self._done = False, False

    def _instruction(self) -> str:
        if not self._episode:
            return ""
        return grounding_instruction("the house", with_article(normalize_category(self._episode.target_category)))

    def _observe(self, raw: dict) -> Observation:
        return to_observation(raw, self.cfg, self.current_pose(), self._instruction(), self._steps)

    def _seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._sim.seed(seed)
        self._sim.pathfinder.seed(seed)

    def _sample(self, episode_id: str) -> Episode:
        cats = available_categories(self._objects, self.cfg.target_categories)
        ep = sample_episode(cats, self._rng, self._sim.pathfinder.get_random_navigable_point,
                            lambda p, c: self.geodesic_distance(p, self.view_points(c)), self.cfg.sensor_height,
                            self.cfg.min_start_distance, self.cfg.max_start_distance, episode_id=episode_id)
        ids = tuple(o.instance_id for o in objects_of_category(self._objects, ep.target_category))
        return dataclasses.replace(ep, target_instance_ids=ids)

    def make_episodes(self, split: str, n: int, seed: int = 0) -> list[Episode]:
        """`n` reproducible episodes on this scene (the run/eval hook). A Habitat scene is its own
        split: `split` only names the episodes."""
        self._seed(seed)
        stem = Path(self.cfg.scene).name.split(".")[0]
        return [self._sample(f"habitat-{stem}-{split}-{seed}-{i}") for i in range(n)]

    def reset(self, episode: Episode | None = None, seed: int | None = None) -> Observation:
        if seed is not None:
            self._seed(seed)
        if episode is None:
            episode = self._sample(f"habitat-{Path(self.cfg.scene).name.split('.')[0]}-{self._n_episodes}")
        elif not objects_of_category(self._objects, episode.target_category):
            raise ValueError(f"episode target {episode.target_category!r} is not in this scene; "
                             f"available: {available_categories(self._objects)}")
        elif not math.isfinite(episode.geodesic_start_distance):  # e.g. hand-written episodes: SPL needs d_0
            floor = np.asarray(episode.start.xyz) - np.array([0.0, self.cfg.sensor_height, 0.0])
            d0 = self.geodesic_distance(floor, self.view_points(episode.target_category))
            episode = dataclasses.replace(episode, geodesic_start_distance=d0)
        self._n_episodes += 1
        self._episode = episode
        self._reset_counters()
        self._place(episode.start)
        return self._observe(self._sim.get_sensor_observations())

    def step(self, action: Action | int) -> Observation:
        a = self._begin_step(action)
        if a is Action.STOP:
            raw = self._sim.get_sensor_observations()
        else:
            before = self._body_position()
            raw = self._sim.step(to_habitat_action(a))
            # habitat_sim.Simulator.step puts the agent's collision flag in the observations
            self._collisions += int(bool(raw.get("collided", getattr(self._sim, "previous_step_collided", False))))
            self._path_length += float(np.linalg.norm(self._body_position() - before))
        self._end_step(self.cfg.max_episode_steps)
        return self._observe(raw)

    def render_at(self, pose: Pose) -> Observation:
        """Render from any camera pose without moving the agent (imagined-vs-real checks)."""
        return to_observation(self._render_raw(pose), self.cfg, pose, self._instruction(), self._steps)

    def metrics(self) -> EpisodeMetrics:
        if self._episode is None:
            return EpisodeMetrics()
        d_t = self.geodesic_distance(self._body_position(), self.view_points(self._episode.target_category))
        return objectnav_metrics(self._called_stop, d_t, self._episode.geodesic_start_distance,
                                 self._path_length, self._steps, self._collisions, self.cfg.success_distance)

    def close(self) -> None:
        sim, self._sim = getattr(self, "_sim", None), None
        if sim is not None:
            sim.close()

    def __enter__(self) -> HabitatEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
