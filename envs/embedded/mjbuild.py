"""SceneSpec (Habitat frame, Y-up) -> compiled MuJoCo model (Z-up), built with MjSpec.

Conversion happens here only: Habitat (x, y, z) -> MuJoCo (x, -z, y). No physics is ever stepped:
geoms have collisions disabled, the agent moves on the NavGrid, MuJoCo only renders (and ray-casts).

The geometry is in the model three times, in different geom groups:
  * PRIM_GROUP (0): one primitive geom per scene Part (box, cylinder, ...), for ray casts (view
    points) and for anyone looking at the model with MuJoCo's default visual groups.
  * RENDER_GROUP (5): the same surfaces merged into a handful of static meshes, drawn by the RGB-D
    pass: one per structure material, and one for all the furniture, coloured through a small
    palette texture (the parts are plain-coloured, a mesh has one rgba).
  * SEG_GROUP (4): one merged mesh per instance, drawn by the instance-id pass.
Why: on llvmpipe (software GL) every geom is a draw call with its own state changes, which cost
more than the pixels at 128x128; ~200 draws -> ~8 made the RGB-D pass ~1.5x faster. The meshes
repeat MuJoCo's own tessellation and texture mapping of the primitives, so the images match the
primitives' up to rounding (tests/test_world_render.py checks it).
"""
from __future__ import annotations

import numpy as np

from envs.embedded.gl import ensure_backend

ensure_backend()
import mujoco  # noqa: E402

from envs.embedded.config import WorldConfig  # noqa: E402
from envs.embedded.objects import Part  # noqa: E402
from envs.embedded.scene import SceneSpec  # noqa: E402
from envs.geometry import vfov_deg  # noqa: E402

# Habitat -> MuJoCo world: (x, y, z) -> (x, -z, y)
HAB_TO_MJ = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
SCENE_EXTENT = 10.0  # fixed stat.extent so znear/zfar below are in metres / 10
# llvmpipe (software GL) cost grows with triangles: coarse tessellation of round parts is
# invisible at 128x128 and roughly 1.5x faster (measured, see bench.py)
NUMSLICES, NUMSTACKS = 12, 6
PRIM_GROUP = 0  # one primitive per Part: ray casts (and MuJoCo's default visual groups)
RENDER_GROUP = 5  # merged static meshes: the RGB-D pass (hidden in MuJoCo's default visual groups)
SEG_GROUP = 4  # one merged mesh per instance: the segmentation pass (hidden by default too)
PALETTE = "objpal"  # furniture colours, 4x4 texels each, sampled at block centres (exact colour)
_PAL_BLOCK = 4
# (specular, shininess): textured structure (walls, floors) is matte; plain-coloured objects shine a little
TEXTURED_FINISH = (0.05, 0.1)
PLAIN_FINISH = (0.15, 0.2)

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


def _size(p: Part) -> np.ndarray:
    """MuJoCo geom size of a part (box/ellipsoid: half extents in the MuJoCo-local frame;
    cylinder/capsule: radius, half length along local z)."""
    h = p.half
    if p.kind in ("box", "ellipsoid"):
        return np.array([h[0], h[2], h[1]], dtype=np.float64)
    return np.array([h[0], h[1], 0.0], dtype=np.float64)


# ------------------------------------------------------------------ tessellation (MuJoCo's own)
# Unit shapes in the geom frame, as MuJoCo's renderer draws its builtin primitives
# (render_context.c, makeBuiltin: box with numquads=1, sphere / half spheres with
# numslices x numstacks); quads are split into two triangles.
def _quads_to_tris(q: np.ndarray) -> np.ndarray:
    return np.concatenate([q[:, [0, 1, 3]], q[:, [1, 2, 3]]], axis=0)


def _unit_box() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    faces = [  # (normal, 4 corners counter-clockwise seen from outside)
        ((0, 0, 1), [(-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)]),
        ((0, 0, -1), [(-1, 1, -1), (1, 1, -1), (1, -1, -1), (-1, -1, -1)]),
        ((1, 0, 0), [(1, -1, -1), (1, 1, -1), (1, 1, 1), (1, -1, 1)]),
        ((-1, 0, 0), [(-1, -1, 1), (-1, 1, 1), (-1, 1, -1), (-1, -1, -1)]),
        ((0, -1, 0), [(-1, -1, -1), (1, -1, -1), (1, -1, 1), (-1, -1, 1)]),
        ((0, 1, 0), [(-1, 1, 1), (1, 1, 1), (1, 1, -1), (-1, 1, -1)]),
    ]
    v = np.array([c for _, cs in faces for c in cs], dtype=np.float64)
    n = np.repeat(np.array([f[0] for f in faces], dtype=np.float64), 4, axis=0)
    return v, n, _quads_to_tris(np.arange(24).reshape(6, 4))


def _sphere_rings(half: int) -> tuple[np.ndarray, np.ndarray]:
    """Elevations of MuJoCo's sphere rings (half = stacks per hemisphere) and azimuths."""
    el = 0.5 * np.pi * np.arange(-(half - 1), half) / half
    az = 2.0 * np.pi * np.arange(NUMSLICES) / NUMSLICES
    return el, az


def _round_shell(z_lo: float, z_hi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit sphere (z_lo = z_hi = 0) or capsule body (hemispheres centred at z_lo / z_hi joined by
    an open cylinder): vertices, smooth normals, triangles."""
    half = NUMSTACKS // 2
    el, az = _sphere_rings(half)
    ns = NUMSLICES
    ce, se = np.cos(el)[:, None], np.sin(el)[:, None]
    nrm = np.stack([np.cos(az)[None, :] * ce, np.sin(az)[None, :] * ce, np.broadcast_to(se, (len(el), ns))], axis=-1)
    rings, normals = [], []
    for k in range(len(el)):  # bottom to top; the equator is doubled for a capsule (two circles)
        zs = [z_lo, z_hi] if (el[k] == 0.0 and z_lo != z_hi) else [z_lo if el[k] < 0 else z_hi]
        for zc in zs:
            r = nrm[k].copy()
            r[:, 2] += zc
            rings.append(r)
            normals.append(nrm[k])
    v = np.concatenate(rings + [np.array([[0, 0, z_lo - 1.0], [0, 0, z_hi + 1.0]])], axis=0)
    n = np.concatenate(normals + [np.array([[0, 0, -1.0], [0, 0, 1.0]])], axis=0)
    nr = len(rings)
    south, north = nr * ns, nr * ns + 1
    j = np.arange(ns)
    j1 = (j + 1) % ns
    tris = [np.stack([np.full(ns, south), j1, j], axis=1),  # bottom fan (ring 0)
            np.stack([(nr - 1) * ns + j, (nr - 1) * ns + j1, np.full(ns, north)], axis=1)]
    quads = [np.stack([k * ns + j, k * ns + j1, (k + 1) * ns + j1, (k + 1) * ns + j], axis=1) for k in range(nr - 1)]
    return v, n, np.concatenate(tris + [_quads_to_tris(np.concatenate(quads, axis=0))], axis=0)


def _unit_cylinder() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed cylinder radius 1, z in [-1, 1]: side with smooth normals, flat caps (MuJoCo splits
    the side into stacks and the caps into rings; flat/straight anyway, so one band and a fan)."""
    ns = NUMSLICES
    az = 2.0 * np.pi * np.arange(ns) / ns
    c, s = np.cos(az), np.sin(az)
    j = np.arange(ns)
    j1 = (j + 1) % ns
    side_v = np.concatenate([np.stack([c, s, -np.ones(ns)], 1), np.stack([c, s, np.ones(ns)], 1)])
    side_n = np.concatenate([np.stack([c, s, np.zeros(ns)], 1)] * 2)
    side_f = _quads_to_tris(np.stack([j, j1, ns + j1, ns + j], axis=1))
    bot_v = np.concatenate([np.stack([c, s, -np.ones(ns)], 1), [[0, 0, -1.0]]])
    top_v = np.concatenate([np.stack([c, s, np.ones(ns)], 1), [[0, 0, 1.0]]])
    o1, o2 = 2 * ns, 3 * ns + 1
    bot_f = np.stack([np.full(ns, o1 + ns), o1 + j1, o1 + j], axis=1)
    top_f = np.stack([o2 + j, o2 + j1, np.full(ns, o2 + ns)], axis=1)
    v = np.concatenate([side_v, bot_v, top_v])
    n = np.concatenate([side_n, np.tile([0, 0, -1.0], (ns + 1, 1)), np.tile([0, 0, 1.0], (ns + 1, 1))])
    return v, n, np.concatenate([side_f, bot_f, top_f])


_UNIT = {"box": _unit_box(), "ellipsoid": _round_shell(0.0, 0.0), "cylinder": _unit_cylinder()}


def _part_geometry(p: Part) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(world vertices, world unit normals, triangles, geom-local vertices) of a part, MuJoCo frame."""
    size = _size(p)
    if p.kind == "capsule":
        r, hl = size[0], size[1]
        v, n, f = _round_shell(-hl / r, hl / r)  # capsule of radius 1, then scaled by r
        local = v * r
    else:
        v, n, f = _UNIT[p.kind]
        s = size if p.kind != "cylinder" else np.array([size[0], size[0], size[1]])
        local = v * s
        n = n / s  # inverse transpose of the scaling
    n = n / np.linalg.norm(n, axis=1, keepdims=True)
    R = HAB_TO_MJ @ p.rot @ HAB_TO_MJ.T
    return hab_to_mj(p.centre) + local @ R.T, n @ R.T, f, local


def _box_texcoords(p: Part, rep: float) -> np.ndarray:
    """Texture coordinates MuJoCo (4.x) gives a box with a texuniform 2D material: every face is
    parametrised by the unit-box coordinates (a, b) of its first and second in-plane axes (x faces:
    y, z; y faces: x, z; z faces: x, y) and mapped as s = rep*size0*(a+1)/2, t = rep*size1*(1-b)/2
    (measured on MuJoCo's own renders, see tests/test_world_render.py)."""
    if p.kind != "box":
        raise ValueError(f"textured parts must be boxes, got a {p.kind}")
    size = _size(p)
    unit, normal, _ = _UNIT["box"]
    axis = np.abs(normal).argmax(axis=1)  # the face's normal axis, per vertex
    first = np.where(axis == 0, 1, 0)
    second = np.where(axis == 2, 1, 2)
    rows = np.arange(len(unit))
    a, b = unit[rows, first], unit[rows, second]
    return np.stack([0.5 * rep * size[0] * (a + 1.0), 0.5 * rep * size[1] * (1.0 - b)], axis=1)


class MeshAcc:
    """Accumulates triangle soups (vertices, normals, faces, optional texcoords) into one MuJoCo mesh."""

    def __init__(self) -> None:
        self.v: list[np.ndarray] = []
        self.n: list[np.ndarray] = []
        self.t: list[np.ndarray] = []
        self.f: list[np.ndarray] = []
        self.count = 0

    def add(self, v: np.ndarray, n: np.ndarray, f: np.ndarray, uv: np.ndarray | None) -> None:
        self.v.append(v)
        self.n.append(n)
        if uv is not None:
            self.t.append(uv)
        self.f.append(f + self.count)
        self.count += len(v)

    def to_spec(self, spec: mujoco.MjSpec, name: str) -> None:
        if self.t and len(self.t) != len(self.v):
            raise ValueError(f"mesh {name}: texture coordinates for some parts only")
        m = spec.add_mesh(name=name)
        # lists: the bindings copy element by element, and do so faster from Python floats
        m.uservert = np.concatenate(self.v).astype(np.float32).ravel().tolist()
        m.usernormal = np.concatenate(self.n).astype(np.float32).ravel().tolist()
        faces = np.concatenate(self.f).astype(np.int32).ravel().tolist()
        m.userface = faces
        m.userfacenormal = faces
        if self.t:
            m.usertexcoord = np.concatenate(self.t).astype(np.float32).ravel().tolist()
            m.userfacetexcoord = faces


def palette_image(colours: list[tuple[int, int, int]]) -> np.ndarray:
    """(4, 4 * len(colours), 3) uint8: one row of 4x4 blocks, one per colour (no v-flip ambiguity)."""
    b = _PAL_BLOCK
    pal = np.zeros((b, b * len(colours), 3), dtype=np.uint8)
    for i, c in enumerate(colours):
        pal[:, i * b : (i + 1) * b] = c
    return pal


def palette_uv(index: int, n_colours: int, n_vertices: int) -> np.ndarray:
    """Texcoords of colour `index` of `palette_image`: a constant coordinate between 4 texels of one
    colour, so bilinear filtering returns it exactly and zero derivatives keep mipmapping on level 0."""
    return np.tile([(index + 0.5) / n_colours, 0.5], (n_vertices, 1))


def add_material(spec: mujoco.MjSpec, name: str, finish: tuple[float, float], texture: str | None = None,
                  repeat: float = 1.0, uniform: bool = False) -> None:
    """One material for the parts and the merged meshes alike. The merged meshes carry final texture
    coordinates (MuJoCo scales explicit mesh texcoords by texrepeat, and more with texuniform), so
    their materials repeat once and are not uniform."""
    m = spec.add_material(name=name)
    if texture is not None:
        m.textures[int(mujoco.mjtTextureRole.mjTEXROLE_RGB)] = texture
        m.texrepeat, m.texuniform = [repeat, repeat], uniform
    m.specular, m.shininess = finish


def _add_merged_meshes(spec: mujoco.MjSpec, scene: SceneSpec) -> list[int]:
    """The merged static meshes, in a body of their own added last (MuJoCo numbers geoms body by
    body, so the parts keep geom ids 0..len(parts)-1). Returns the instance id of each new geom:
    -1 for the RGB-D meshes (RENDER_GROUP: one per structure material + all furniture, which mixes
    instances), the instance id for the segmentation meshes (SEG_GROUP: one per instance, 0 =
    structure)."""
    body = spec.worldbody.add_body(name="merged_meshes")
    struct: dict[tuple, MeshAcc] = {}
    furniture = MeshAcc()
    seg: dict[int, MeshAcc] = {}
    colours: dict[tuple[int, int, int], int] = {}
    fparts: list[tuple[tuple, int]] = []
    for p in scene.parts:
        v, n, f, _ = geo = _part_geometry(p)
        seg.setdefault(p.instance_id, MeshAcc()).add(v, n, f, None)
        if p.instance_id == 0:
            key = (p.material, None if p.material is not None else tuple(np.round(p.rgb, 6)))
            uv = _box_texcoords(p, float(scene.materials[p.material][1])) if p.material is not None else None
            struct.setdefault(key, MeshAcc()).add(v, n, f, uv)
        else:
            c = tuple(int(x) for x in np.clip(np.round(np.asarray(p.rgb) * 255.0), 0, 255))
            fparts.append((geo, colours.setdefault(c, len(colours))))

    def add_geom(mesh: str, group: int, material: str | None = None, rgba=(1.0, 1.0, 1.0, 1.0)) -> None:
        g = body.add_geom(type=mujoco.mjtGeom.mjGEOM_MESH, meshname=mesh, group=group, contype=0, conaffinity=0)
        if material is not None:
            g.material = material
        g.rgba = list(rgba)

    inst: list[int] = []
    for k, ((mat, rgb), acc) in enumerate(struct.items()):
        acc.to_spec(spec, f"rgb_struct{k}")
        if mat is None:
            add_geom(f"rgb_struct{k}", RENDER_GROUP, "plain", (*rgb, 1.0))
        else:
            add_material(spec, f"{mat}_merged", TEXTURED_FINISH, scene.materials[mat][0])
            add_geom(f"rgb_struct{k}", RENDER_GROUP, f"{mat}_merged")
        inst.append(-1)
    if fparts:
        pal = palette_image(list(colours))
        t = spec.add_texture(name=PALETTE, type=mujoco.mjtTexture.mjTEXTURE_2D, width=pal.shape[1], height=pal.shape[0], nchannel=3)
        t.data = pal.tobytes()
        add_material(spec, PALETTE, PLAIN_FINISH, PALETTE)
        for (v, n, f, _), i in fparts:
            furniture.add(v, n, f, palette_uv(i, len(colours), len(v)))
        furniture.to_spec(spec, "rgb_furniture")
        add_geom("rgb_furniture", RENDER_GROUP, PALETTE)
        inst.append(-1)
    for iid, acc in seg.items():
        acc.to_spec(spec, f"seg{iid}")
        add_geom(f"seg{iid}", SEG_GROUP)
        inst.append(iid)
    return inst


def base_spec(name: str, cfg: WorldConfig) -> mujoco.MjSpec:
    """An empty model with the embedded world's visual settings and lights: every scene rendered by
    GLRenderer (procedural or loaded from a .glb) starts here, so both are lit the same way."""
    spec = mujoco.MjSpec()
    spec.modelname = name
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
    vis.quality.numslices = NUMSLICES
    vis.quality.numstacks = NUMSTACKS
    vis.quality.numquads = 1
    # no MSAA in the offscreen buffer: 4x multisampling (MuJoCo's default) plus its resolve blit
    # cost ~1.9x per frame on llvmpipe at 128x128; the images only lose edge anti-aliasing
    vis.quality.offsamples = 0
    spec.worldbody.add_light(
        type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
        dir=[0.25, 0.35, -1.0],
        pos=[0.0, 0.0, 5.0],
        diffuse=[0.35, 0.35, 0.33],
        ambient=[0.0, 0.0, 0.0],
        specular=[0.05, 0.05, 0.05],
        castshadow=False,
    )
    return spec


def add_agent_camera(spec: mujoco.MjSpec, cfg: WorldConfig) -> None:
    cam = spec.worldbody.add_camera(name="agent")
    cam.fovy = vfov_deg(cfg.hfov_deg, cfg.width, cfg.height)


def build_model(scene: SceneSpec, cfg: WorldConfig) -> tuple[mujoco.MjModel, np.ndarray]:
    """Compile the scene. Returns (model, geom_instance) where geom_instance[g] is the instance id
    (0 = structure) of model geom g, or -1 for the RGB-D meshes that merge several instances.
    Geoms 0..len(scene.parts)-1 are the parts, in order (group PRIM_GROUP); the merged meshes
    follow (RENDER_GROUP, SEG_GROUP). Each object gets its own static body named
    f"obj{instance_id}" (so ray casts can exclude it); structure geoms live in the world body."""
    spec = base_spec(f"apartment_{scene.seed}", cfg)
    wb = spec.worldbody
    for name, tex in scene.textures.items():
        h, w = tex.shape[:2]
        t = spec.add_texture(name=name, type=mujoco.mjtTexture.mjTEXTURE_2D, width=w, height=h, nchannel=3)
        t.data = np.ascontiguousarray(tex, dtype=np.uint8).tobytes()
    for name, (tex, rep) in scene.materials.items():
        add_material(spec, name, TEXTURED_FINISH, tex, repeat=rep, uniform=True)
    add_material(spec, "plain", PLAIN_FINISH)  # objects: rgba from the geom, low specular
    inst: list[int] = []
    bodies = {o.instance_id: wb.add_body(name=f"obj{o.instance_id}") for o in scene.objects}
    for p in scene.parts:
        g = (bodies[p.instance_id] if p.instance_id else wb).add_geom()
        g.type = _GEOM[p.kind]
        g.pos = hab_to_mj(p.centre)
        g.quat = _quat(HAB_TO_MJ @ p.rot @ HAB_TO_MJ.T)
        g.size = _size(p)
        g.group = PRIM_GROUP
        g.contype = 0
        g.conaffinity = 0
        if p.material is not None:
            g.material = p.material
            g.rgba = [1.0, 1.0, 1.0, 1.0]
        else:
            g.material = "plain"
            g.rgba = [*p.rgb, 1.0]
        inst.append(p.instance_id)
    inst += _add_merged_meshes(spec, scene)
    add_agent_camera(spec, cfg)
    model = spec.compile()
    return model, np.asarray(inst, dtype=np.int32)


# ------------------------------------------------------------------ the same surfaces as a .glb
# glTF materials carry roughness, MuJoCo materials (specular, shininess): the exporter writes one of
# two roughness values and `finish_of` maps them back, so a loaded .glb is lit like the embedded world.
ROUGHNESS_MATTE = 0.9  # textured structure (TEXTURED_FINISH)
ROUGHNESS_PLAIN = 0.7  # plain-coloured surfaces and furniture (PLAIN_FINISH)


def finish_of(roughness: float | None) -> tuple[float, float]:
    """(specular, shininess) for a glTF roughness (None = glTF's default 1.0, e.g. scanned scenes: matte)."""
    return PLAIN_FINISH if roughness is not None and roughness < 0.5 * (ROUGHNESS_MATTE + ROUGHNESS_PLAIN) else TEXTURED_FINISH


def part_surface(p: Part, texture_repeat: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(vertices, unit normals, triangles, texcoords or None) of a part in the HABITAT frame: exactly the
    triangles and texture mapping the merged render meshes draw (for the .glb exporter)."""
    v, n, f, _ = _part_geometry(p)
    uv = _box_texcoords(p, texture_repeat) if texture_repeat is not None else None
    return v @ HAB_TO_MJ, n @ HAB_TO_MJ, f, uv
