"""`env=habitat` without habitat_sim: a `.glb` scene rendered by MuJoCo, the embedded world's renderer.

The scene's surfaces become MuJoCo meshes through MjSpec (one per material, lit and drawn exactly like
the embedded world's merged meshes by `envs.embedded.render.GLRenderer`, headless through EGL); the
semantic annotation's instances become the segmentation meshes; navigation is a NavGrid rasterised
from the triangles (`envs.habitat.floorgrid`). `MeshWorld` is the embedded world on such a scene, so
actions, collisions, measures and the oracle's ground truth are the same code.
"""
from __future__ import annotations

import sys
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from envs.embedded.gl import ensure_backend

ensure_backend()
import mujoco  # noqa: E402

from envs.embedded.assets import SceneAssets  # noqa: E402
from envs.embedded.config import WorldConfig  # noqa: E402
from envs.embedded.errors import NoReachableTargetError  # noqa: E402
from envs.embedded.mjbuild import (  # noqa: E402
    HAB_TO_MJ,
    RENDER_GROUP,
    SEG_GROUP,
    MeshAcc,
    add_agent_camera,
    add_material,
    base_spec,
    finish_of,
)
from envs.embedded.world import EmbeddedWorld  # noqa: E402
from envs.errors import SceneError  # noqa: E402
from envs.habitat.config import HabitatConfig  # noqa: E402
from envs.habitat.floorgrid import free_floor  # noqa: E402
from envs.habitat.goals import normalize_category  # noqa: E402
from envs.habitat.scenefile import MeshScene, load_mesh_scene  # noqa: E402
from envs.instructions import with_article  # noqa: E402
from envs.navgrid import NavGrid  # noqa: E402
from envs.types import Episode, Pose  # noqa: E402

GRID_RESOLUTION = 0.05  # the embedded world's default cell size
SNAP_START = 0.25  # metres an episode's start may move to reach our grid's navigable cells


def floor_of(episode: Episode, sensor_height: float) -> float:
    return round(float(episode.start.position[1]) - sensor_height, 2)


def world_config(cfg: HabitatConfig) -> WorldConfig:
    """The embedded-world settings that mean the same as these Habitat settings."""
    return WorldConfig(width=cfg.width, height=cfg.height, hfov_deg=cfg.hfov_deg, sensor_height=cfg.sensor_height,
                       forward_step=cfg.forward_step, turn_angle_deg=cfg.turn_angle_deg,
                       tilt_angle_deg=cfg.tilt_angle_deg, agent_radius=cfg.agent_radius,
                       max_episode_steps=cfg.max_episode_steps, view_point_radius=cfg.view_point_radius,
                       success_distance=cfg.success_distance, depth_min=cfg.min_depth, depth_max=cfg.max_depth,
                       grid_resolution=GRID_RESOLUTION, render_depth=cfg.depth, render_semantic=True)


def build_mesh_model(ms: MeshScene, cfg: WorldConfig) -> tuple[mujoco.MjModel, np.ndarray]:
    """(model, geom_instance) like `mjbuild.build_model`: RENDER_GROUP meshes per material (-1) and one
    SEG_GROUP mesh per instance in a body `obj<id>` (ray casts for view points exclude it)."""
    spec = base_spec(ms.path.stem, cfg)
    wb = spec.worldbody
    inst: list[int] = []
    for k, s in enumerate(ms.surfaces):
        acc = MeshAcc()
        acc.add(s.vertices @ HAB_TO_MJ.T, s.normals @ HAB_TO_MJ.T, s.faces, s.uv)
        acc.to_spec(spec, f"rgb{k}")
        tex = None
        if s.texture is not None:
            h, w = s.texture.shape[:2]
            t = spec.add_texture(name=f"tex{k}", type=mujoco.mjtTexture.mjTEXTURE_2D, width=w, height=h, nchannel=3)
            t.data = s.texture.tobytes()
            tex = f"tex{k}"
        add_material(spec, f"mat{k}", finish_of(s.roughness), tex)
        g = wb.add_geom(type=mujoco.mjtGeom.mjGEOM_MESH, meshname=f"rgb{k}", group=RENDER_GROUP, contype=0, conaffinity=0)
        g.material, g.rgba = f"mat{k}", list(s.rgba)
        inst.append(-1)
    for iid, (v, f) in sorted(ms.instances.items()):
        m = spec.add_mesh(name=f"seg{iid}")
        m.uservert = (v @ HAB_TO_MJ.T).astype(np.float32).ravel().tolist()
        m.userface = np.asarray(f, dtype=np.int32).ravel().tolist()
        body = wb.add_body(name=f"obj{iid}") if iid else wb
        body.add_geom(type=mujoco.mjtGeom.mjGEOM_MESH, meshname=f"seg{iid}", group=SEG_GROUP, contype=0, conaffinity=0)
        inst.append(iid)
    add_agent_camera(spec, cfg)
    try:
        model = spec.compile()
    except ValueError as e:
        raise SceneError(f"scene {ms.path} could not be compiled for rendering: {str(e).splitlines()[0]}") from None
    return model, np.asarray(inst, dtype=np.int32)


class MeshAssets(SceneAssets):
    """SceneAssets of a loaded scene: model, navigable grid and view points (ray casts against the
    instance meshes; probes = the object's AABB centre and its 8 corners pulled inwards)."""

    ray_group = SEG_GROUP

    def __init__(self, ms: MeshScene, cfg: WorldConfig, agent_height: float, floor_y: float | None = None) -> None:
        self.seed, self.cfg, self.scene = -1, cfg, ms
        self.model, self.geom_instance = build_mesh_model(ms, cfg)
        self.data = mujoco.MjData(self.model)
        mujoco.mj_kinematics(self.model, self.data)
        v, f = ms.triangles
        try:
            free, origin, self.floor_y = free_floor(v, f, cfg.grid_resolution, agent_height, floor_y,
                                                    object_boxes=[(o.aabb_min, o.aabb_max) for o in ms.objects])
        except ValueError as e:
            raise SceneError(f"scene {ms.path}: {e}") from None
        self.navgrid = NavGrid(free, (float(origin[0]), float(origin[1])), cfg.grid_resolution, cfg.agent_radius)
        self._view_points: dict[int, np.ndarray] = {}
        self._reachable: dict[int, np.ndarray] = {}
        self._geoms_of = {int(i): np.flatnonzero(self.geom_instance == i) for i in np.unique(self.geom_instance) if i > 0}

    def _sample_points(self, instance_id: int) -> np.ndarray:
        return self.scene.object(instance_id).sample_points() @ HAB_TO_MJ.T

    def set_view_points(self, instance_id: int, xz: np.ndarray) -> None:
        """Use given view points (an episode file's) instead of computing them."""
        self._view_points[int(instance_id)] = np.asarray(xz, dtype=np.float64).reshape(-1, 2)
        self._reachable.pop(int(instance_id), None)


_CACHE: OrderedDict[tuple, MeshAssets] = OrderedDict()
_CACHE_SIZE = 4


def get_mesh_assets(scene: str, cfg: HabitatConfig, floor_y: float | None = None) -> MeshAssets:
    """Cached MeshAssets per (scene file, storey, sidecar, settings); floor_y None = the ground floor."""
    floor_y = None if floor_y is None else round(float(floor_y), 2)
    key = (str(Path(scene).resolve()), floor_y, cfg.semantic_sidecar,
           world_config(cfg).scene_key(), cfg.agent_height)
    if key not in _CACHE:
        ms = load_mesh_scene(scene, cfg.semantic_sidecar or None)
        _CACHE[key] = MeshAssets(ms, world_config(cfg), cfg.agent_height, floor_y)
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]


class MeshWorld(EmbeddedWorld):
    """ObjectNav on `.glb` scenes rendered by MuJoCo (the pip renderer of `env=habitat`)."""

    def __init__(self, cfg: HabitatConfig) -> None:
        self.habitat_cfg = cfg
        self._scene_file = ""
        super().__init__(world_config(cfg), scene_seed=-1)

    def load_scene(self, scene, floor_y: float | None = None) -> None:
        """`scene`: a scene file (on the storey at floor_y, None = ground floor); -1 (the constructor)
        loads env.config.scene when one is set."""
        if isinstance(scene, int):
            if not self.habitat_cfg.scene:
                return
            scene = self.habitat_cfg.scene
        scene = str(scene)
        if (self._assets is not None and scene == self._scene_file
                and (floor_y is None or abs(floor_y - self._assets.floor_y) < 0.05)):
            return  # the storey already loaded (also when it was found as "the ground floor")
        assets = get_mesh_assets(scene, self.habitat_cfg, floor_y)
        self._renderer.set_model(assets.model, assets.geom_instance)
        self._assets, self._scene_file = assets, scene
        self._episode, self._done = None, True

    # until the first episode picks its scene file there is no scene: None rather than AttributeError
    @property
    def scene(self) -> MeshScene | None:
        return None if self._assets is None else self._assets.scene

    @property
    def navgrid(self):
        return None if self._assets is None else self._assets.navgrid

    @property
    def scene_file(self) -> str:
        return self._scene_file

    def _require_scene(self) -> None:
        if self._assets is None:
            raise SceneError("no scene loaded: set env.config.scene=FILE.glb or env.config.episodes_file=FILE.json.gz")

    def _sample_episode(self, rng: np.random.Generator) -> Episode:
        self._require_scene()
        return sample_mesh_episode(self, rng, f"{Path(self._scene_file).name}-{int(rng.integers(1 << 30))}")

    def _load_episode_scene(self, episode: Episode) -> None:
        self.load_scene(episode.scene_id or -1, floor_of(episode, self.cfg.sensor_height) if episode.scene_id else None)
        self._require_scene()
        if not self.scene.instances_of(episode.target_category):
            raise SceneError(f"episode {episode.episode_id}: category {episode.target_category!r} is not in scene "
                             f"{Path(self._scene_file).name} (present: {self.scene.categories_present})")

    def _scene_name(self, episode: Episode) -> str:
        return Path(self._scene_file).name

    def _category_phrase(self, category: str) -> str:
        from envs.embedded.categories import CATEGORIES, category_phrase

        return category_phrase(category) if category in CATEGORIES else with_article(normalize_category(category))

    def make_episodes(self, split: str, n: int, seed: int = 0) -> list[Episode]:
        """The run hook. With env.config.episodes_file: its first `n` episodes ({split} in the path is
        replaced; episodes whose scene is missing are reported on stderr and skipped). Else with
        env.config.scene: `n` episodes sampled on it. Else: the embedded world's `n` episodes of `split`
        exported as .glb scenes + an episode file under env.config.scenes_dir (default
        ~/.cache/v4s_agent/habitat), then read back."""
        cfg = self.habitat_cfg
        if cfg.episodes_file:
            return self.load_episodes(cfg.episodes_file, split, n, cfg.scenes_dir or None)
        if cfg.scene:
            self._require_scene()
            rng = np.random.default_rng([int(seed), zlib.crc32(split.encode())])
            stem = Path(self._scene_file).name.split(".")[0]
            return [sample_mesh_episode(self, rng, f"habitat-{stem}-{split}-{seed}-{i}") for i in range(n)]
        from envs.habitat.procedural import export_episodes

        out = Path(cfg.scenes_dir or Path.home() / ".cache" / "v4s_agent" / "habitat")
        print(f"notice: env.config.scene is empty: exporting the embedded world's {split} apartments to {out}",
              file=sys.stderr)
        return self.load_episodes(export_episodes(out, split, n, seed), split, n, None)

    def load_episodes(self, path, split: str = "", n: int | None = None, scenes_dir=None) -> list[Episode]:
        """Episodes of a habitat-lab ObjectNav file as ours; the file's goal view points become the
        goals. Unknown categories are an error (one line); missing scenes are skipped with a notice."""
        from envs.habitat.episodes import read_objectnav

        out: list[Episode] = []
        missing: set[str] = set()
        for e in read_objectnav(path, split, scenes_dir):
            if n is not None and len(out) >= n:
                break
            if not Path(e.scene_id).is_file():
                if e.scene_id not in missing:
                    print(f"notice: scene {e.scene_id} of episode {e.episode_id} is missing: skipping its episodes "
                          "(set env.config.scenes_dir to the folder the scene ids are relative to)", file=sys.stderr)
                missing.add(e.scene_id)
                continue
            assets = get_mesh_assets(e.scene_id, self.habitat_cfg, e.start_position[1])
            if not assets.scene.instances_of(e.object_category):
                raise SceneError(f"episode file {path}: episode {e.episode_id} asks for category {e.object_category!r}, "
                                 f"which scene {Path(e.scene_id).name} does not have (present: {assets.scene.categories_present})")
            for g in e.goals:
                if len(g.view_points):
                    assets.set_view_points(g.object_id, g.view_points[:, [0, 2]])
            x, y, z = e.start_position
            if not assets.navgrid.is_navigable((x, z)):  # navmesh points may sit at our grid's edge
                sx, sz = assets.navgrid.snap((x, z))
                x, z = (sx, sz) if np.hypot(sx - x, sz - z) <= SNAP_START else (x, z)
            start = Pose((x, y + self.cfg.sensor_height, z), e.start_yaw, 0.0)
            ids = tuple(g.object_id for g in e.goals) or tuple(o.instance_id for o in assets.scene.instances_of(e.object_category))
            out.append(Episode(e.episode_id, -1, start, e.object_category, ids, e.geodesic_distance, scene_id=e.scene_id))
        if not out:
            raise SceneError(f"episode file {path} gave no episode to run ({len(missing)} missing scene(s)); "
                             "check env.config.scenes_dir")
        return out


def sample_mesh_episode(world: MeshWorld, rng: np.random.Generator, episode_id: str) -> Episode:
    """A category with a reachable instance and a start drawn as `envs.embedded.task.make_episode` does."""
    from envs.embedded.task import reachable_targets, sample_start
    assets = world.assets
    cats = list(world.habitat_cfg.target_categories or assets.scene.categories_present)
    for cat in [cats[i] for i in rng.permutation(len(cats))]:
        targets = reachable_targets(assets, cat)
        if targets:
            break
    else:
        raise NoReachableTargetError(f"scene {world.scene_file} has no reachable object of {cats}; "
                                     "check env.config.target_categories")
    best, best_d = sample_start(assets, targets, rng)
    y = assets.floor_y + world.cfg.sensor_height
    start = Pose((float(best[0]), y, float(best[1])), float(rng.uniform(-np.pi, np.pi)), 0.0)
    return Episode(episode_id, -1, start, cat, tuple(int(t) for t in targets), best_d, scene_id=world.scene_file)
