"""Everything derived from one scene seed that needs no OpenGL: spec, compiled MuJoCo model,
navigable grid, and (lazily) per-instance view points. Cached per process (LRU) so the task
sampler, the world and the data generator never rebuild the same scene twice.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from envs.embedded.gl import ensure_backend

ensure_backend()
import mujoco  # noqa: E402

from envs.embedded.config import WorldConfig  # noqa: E402
from envs.embedded.mjbuild import PRIM_GROUP, build_model, hab_to_mj  # noqa: E402
from envs.embedded.scene import SceneSpec, generate_scene  # noqa: E402
from envs.navgrid import NavGrid, navgrid_from_scene  # noqa: E402


class SceneAssets:
    ray_group = PRIM_GROUP  # the geoms view-point rays test (one primitive per part here)

    def __init__(self, seed: int, cfg: WorldConfig) -> None:
        self.seed, self.cfg = int(seed), cfg
        self.scene: SceneSpec = generate_scene(seed, cfg)
        self.model, self.geom_instance = build_model(self.scene, cfg)
        self.data = mujoco.MjData(self.model)
        mujoco.mj_kinematics(self.model, self.data)  # static geom poses for mj_ray
        self.navgrid: NavGrid = navgrid_from_scene(self.scene, cfg.grid_resolution, cfg.agent_radius)
        self._view_points: dict[int, np.ndarray] = {}
        self._reachable: dict[int, np.ndarray] = {}
        self._geoms_of: dict[int, np.ndarray] = {}
        parts = self.model.geom_group == PRIM_GROUP  # one geom per part (not the merged meshes)
        for iid in np.unique(self.geom_instance):
            if iid > 0:
                self._geoms_of[int(iid)] = np.flatnonzero((self.geom_instance == iid) & parts)

    def _sample_points(self, instance_id: int) -> np.ndarray:
        """Points on the object (MuJoCo frame) that a line of sight may aim at: the bounding-box
        centre and up to 8 part centres (a spread of the object's parts)."""
        obj = self.scene.object(instance_id)
        gids = self._geoms_of[instance_id]
        pts = [hab_to_mj(obj.position)]
        take = gids[np.linspace(0, len(gids) - 1, min(8, len(gids))).astype(int)]
        pts += [self.data.geom_xpos[g].copy() for g in take]
        return np.asarray(pts)

    def view_points(self, instance_id: int) -> np.ndarray:
        """(K, 2) xz centres of navigable cells within cfg.view_point_radius of the object's footprint
        from which some point of it is in line of sight at sensor height (Habitat ObjectNav's
        "within 1 m and visible"). Cached."""
        if instance_id in self._view_points:
            return self._view_points[instance_id]
        obj = self.scene.object(instance_id)
        g = self.navgrid
        r = self.cfg.view_point_radius
        lo = np.array([obj.aabb_min[0], obj.aabb_min[2]])
        hi = np.array([obj.aabb_max[0], obj.aabb_max[2]])
        c0 = g.cells_of(lo - r)[0]
        c1 = g.cells_of(hi + r)[0]
        iz0, ix0 = max(0, c0[0]), max(0, c0[1])
        iz1, ix1 = min(g.shape[0] - 1, c1[0]), min(g.shape[1] - 1, c1[1])
        cand = np.argwhere(g.navigable[iz0 : iz1 + 1, ix0 : ix1 + 1]) + np.array([iz0, ix0])
        out = np.zeros((0, 2))
        if len(cand):
            xz = g.cell_centres(cand)
            d = np.linalg.norm(np.maximum(np.maximum(lo - xz, xz - hi), 0.0), axis=1)
            xz = xz[d <= r]
            if len(xz):
                # one mj_multiRay per object point, towards every candidate eye, ignoring the object's
                # own body: visible if nothing is hit before the eye (cheap: ~9 calls per instance)
                targets = self._sample_points(instance_id)
                eyes = np.stack([xz[:, 0], -xz[:, 1], np.full(len(xz), self.cfg.sensor_height)], axis=1)
                body = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, f"obj{instance_id}")
                groups = np.zeros(6, dtype=np.uint8)  # the parts only, not the merged render meshes
                groups[self.ray_group] = 1
                keep = np.zeros(len(eyes), dtype=bool)
                for t in targets:
                    rest = np.flatnonzero(~keep)  # eyes that already see the object need no more rays
                    n = len(rest)
                    if n == 0:
                        break
                    vec = eyes[rest] - t
                    length = np.linalg.norm(vec, axis=1)
                    vec /= np.maximum(length, 1e-9)[:, None]
                    geomid = np.zeros(n, dtype=np.int32)
                    dist = np.zeros(n, dtype=np.float64)
                    mujoco.mj_multiRay(self.model, self.data, t, vec.reshape(-1), groups, 1, body, geomid, dist, None, n,
                                       float(length.max() + 1.0))
                    keep[rest] = (dist < 0) | (dist >= length - 1e-3)
                out = xz[keep]
        self._view_points[instance_id] = out
        return out

    def reachable_view_points(self, instance_id: int) -> np.ndarray:
        """View points in the largest navigable component (where episodes start). Cached."""
        instance_id = int(instance_id)
        if instance_id in self._reachable:
            return self._reachable[instance_id]
        vp = self.view_points(instance_id)
        if len(vp):
            vp = vp[self.navgrid.components_of(vp) == self.navgrid.largest_component]
        self._reachable[instance_id] = vp
        return vp


_CACHE: OrderedDict[tuple, SceneAssets] = OrderedDict()
_CACHE_SIZE = 8


def get_assets(seed: int, cfg: WorldConfig | None = None) -> SceneAssets:
    """Cached SceneAssets for (seed, cfg)."""
    cfg = cfg or WorldConfig()
    key = (int(seed), cfg.scene_key())
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    a = SceneAssets(seed, cfg)
    _CACHE[key] = a
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return a
