"""SceneSpec (Habitat frame, Y-up) -> compiled MuJoCo model (Z-up), built with MjSpec.

Conversion happens here only: Habitat (x, y, z) -> MuJoCo (x, -z, y). No physics is ever stepped:
geoms have collisions disabled, the agent moves on the NavGrid, MuJoCo only renders (and ray-casts).
"""
from __future__ import annotations

import numpy as np

from envs.embedded.gl import ensure_backend

ensure_backend()
import mujoco  # noqa: E402

from envs.embedded.config import WorldConfig  # noqa: E402
from envs.embedded.scene import SceneSpec  # noqa: E402
from envs.geometry import vfov_deg  # noqa: E402

# Habitat -> MuJoCo world: (x, y, z) -> (x, -z, y)
HAB_TO_MJ = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
SCENE_EXTENT = 10.0  # fixed stat.extent so znear/zfar below are in metres / 10

_GEOM = {
    "box": mujoco.mjtGeom.mjGEOM_BOX,
    "cylinder": mujoco.mjtGeom.mjGEOM_CYLINDER,
    "ellipsoid": mujoco.mjtGeom.mjGEOM_ELLIPSOID,
    "capsule": mujoco.mjtGeom.mjGEOM_CAPSULE,
}


def hab_to_mj(p: np.ndarray) -> np.ndarray:
    return HAB_TO_MJ @ np.asarray(p, dtype=np.float64)


def _quat(R: np.ndarray) -> np.ndarray:
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(R, dtype=np.float64).reshape(-1))
    return q


def build_model(scene: SceneSpec, cfg: WorldConfig) -> tuple["mujoco.MjModel", np.ndarray]:
    """Compile the scene. Returns (model, geom_instance) where geom_instance[g] is the instance id
    (0 = structure) of model geom g. Each object gets its own static body named f"obj{instance_id}"
    (so ray casts can exclude it); structure geoms live in the world body."""
    spec = mujoco.MjSpec()
    spec.modelname = f"apartment_{scene.seed}"
    spec.stat.extent = SCENE_EXTENT
    spec.stat.center = [0.0, 0.0, 0.0]
    vis = spec.visual
    vis.global_.offwidth = int(cfg.width)
    vis.global_.offheight = int(cfg.height)
    vis.map.znear = 0.02 / SCENE_EXTENT  # 2 cm near plane
    vis.map.zfar = 60.0 / SCENE_EXTENT
    vis.headlight.ambient = [0.42, 0.42, 0.42]
    vis.headlight.diffuse = [0.38, 0.38, 0.38]
    vis.headlight.specular = [0.0, 0.0, 0.0]
    vis.quality.shadowsize = 0
    # llvmpipe (software GL) cost grows with triangles: coarse tessellation of round parts is
    # invisible at 128x128 and roughly 1.5x faster (measured, see bench.py)
    vis.quality.numslices = 12
    vis.quality.numstacks = 6
    vis.quality.numquads = 1
    wb = spec.worldbody
    wb.add_light(
        type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
        dir=[0.25, 0.35, -1.0],
        pos=[0.0, 0.0, 5.0],
        diffuse=[0.35, 0.35, 0.33],
        ambient=[0.0, 0.0, 0.0],
        specular=[0.05, 0.05, 0.05],
        castshadow=False,
    )
    for name, tex in scene.textures.items():
        h, w = tex.shape[:2]
        t = spec.add_texture(name=name, type=mujoco.mjtTexture.mjTEXTURE_2D, width=w, height=h, nchannel=3)
        t.data = np.ascontiguousarray(tex, dtype=np.uint8).tobytes()
    for name, (tex, rep) in scene.materials.items():
        m = spec.add_material(name=name)
        m.textures[int(mujoco.mjtTextureRole.mjTEXROLE_RGB)] = tex
        m.texrepeat = [rep, rep]
        m.texuniform = True
        m.specular = 0.05
        m.shininess = 0.1
    plain = spec.add_material(name="plain")  # objects: rgba from the geom, low specular
    plain.specular = 0.15
    plain.shininess = 0.2
    inst: list[int] = []
    bodies = {o.instance_id: wb.add_body(name=f"obj{o.instance_id}") for o in scene.objects}
    for p in scene.parts:
        g = (bodies[p.instance_id] if p.instance_id else wb).add_geom()
        g.type = _GEOM[p.kind]
        g.pos = hab_to_mj(p.centre)
        g.quat = _quat(HAB_TO_MJ @ p.rot @ HAB_TO_MJ.T)
        h = p.half
        if p.kind in ("box", "ellipsoid"):
            g.size = [h[0], h[2], h[1]]
        else:
            g.size = [h[0], h[1], 0.0]
        g.contype = 0
        g.conaffinity = 0
        if p.material is not None:
            g.material = p.material
            g.rgba = [1.0, 1.0, 1.0, 1.0]
        else:
            g.material = "plain"
            g.rgba = [*p.rgb, 1.0]
        inst.append(p.instance_id)
    cam = wb.add_camera(name="agent")
    cam.fovy = vfov_deg(cfg.hfov_deg, cfg.width, cfg.height)
    model = spec.compile()
    return model, np.asarray(inst, dtype=np.int32)
