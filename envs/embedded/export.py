"""Export a scene as a Habitat scene: `.glb` (Y-up = Habitat's frame, PBR materials, floor and wall
textures as images with UVs, furniture colours as one palette texture) with its semantics written two
ways: our JSON sidecar (`<stem>.semantic.json`, every object instance with category and AABB) and
HM3D's layout (`<stem>.semantic.glb` with per-vertex object colours + `<stem>.semantic.txt`).

The triangles, normals and texture coordinates are the ones the embedded world's merged render
meshes draw (`mjbuild.part_surface`), so a renderer that loads the .glb sees the same surfaces.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from envs.embedded.config import WorldConfig
from envs.embedded.gl import ensure_backend

ensure_backend()

from envs.embedded.mjbuild import ROUGHNESS_MATTE, ROUGHNESS_PLAIN, palette_image, palette_uv, part_surface  # noqa: E402
from envs.embedded.scene import WALL_H, SceneSpec, generate_scene  # noqa: E402

HM3D_SEMANTIC_HEADER = "HM3D Semantic Annotations"


def _mesh(parts: list[tuple], visual=None) -> trimesh.Trimesh:
    """One trimesh from (v, n, f, uv) tuples; normals kept as given (process=False keeps the vertices)."""
    v = np.concatenate([p[0] for p in parts])
    n = np.concatenate([p[1] for p in parts])
    offs = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
    f = np.concatenate([p[2] + o for p, o in zip(parts, offs)])
    m = trimesh.Trimesh(vertices=v, faces=f, vertex_normals=n, process=False)
    if visual is not None:
        m.visual = visual
    return m


def _uv(parts: list[tuple]) -> np.ndarray:
    return np.concatenate([p[3] for p in parts])


def scene_meshes(scene: SceneSpec) -> list[tuple[str, trimesh.Trimesh, int]]:
    """(node name, mesh, instance id) per structure material / plain colour and per object instance."""
    textured: dict[str, list] = {}
    plain: dict[tuple, list] = {}
    objects: dict[int, list] = {}
    colours: dict[tuple[int, int, int], int] = {}
    for p in scene.parts:
        if p.instance_id == 0 and p.material is not None:
            textured.setdefault(p.material, []).append(part_surface(p, float(scene.materials[p.material][1])))
        elif p.instance_id == 0:
            plain.setdefault(tuple(np.round(p.rgb, 6)), []).append(part_surface(p))
        else:
            c = tuple(int(x) for x in np.clip(np.round(np.asarray(p.rgb) * 255.0), 0, 255))
            v, n, f, _ = part_surface(p)
            objects.setdefault(p.instance_id, []).append((v, n, f, colours.setdefault(c, len(colours))))
    out: list[tuple[str, trimesh.Trimesh, int]] = []
    for mat, parts in textured.items():
        img = Image.fromarray(scene.textures[scene.materials[mat][0]])
        pbr = trimesh.visual.material.PBRMaterial(name=mat, baseColorTexture=img, metallicFactor=0.0,
                                                  roughnessFactor=ROUGHNESS_MATTE)
        out.append((f"structure_{mat}", _mesh(parts, trimesh.visual.TextureVisuals(uv=_uv(parts), material=pbr)), 0))
    for k, (rgb, parts) in enumerate(plain.items()):
        pbr = trimesh.visual.material.PBRMaterial(name=f"plain{k}", baseColorFactor=[*rgb, 1.0], metallicFactor=0.0,
                                                  roughnessFactor=ROUGHNESS_PLAIN)
        out.append((f"structure_plain{k}", _mesh(parts, trimesh.visual.TextureVisuals(material=pbr)), 0))
    if objects:
        pal = trimesh.visual.material.PBRMaterial(name="palette", baseColorTexture=Image.fromarray(palette_image(list(colours))),
                                                  metallicFactor=0.0, roughnessFactor=ROUGHNESS_PLAIN)
        for iid, parts in objects.items():
            with_uv = [(v, n, f, palette_uv(i, len(colours), len(v))) for v, n, f, i in parts]
            out.append((f"object_{iid}", _mesh(with_uv, trimesh.visual.TextureVisuals(uv=_uv(with_uv), material=pal)), iid))
    return out


def _glb(meshes: list[tuple[str, trimesh.Trimesh, int]]) -> bytes:
    s = trimesh.Scene()
    for name, m, _ in meshes:
        s.add_geometry(m, node_name=name, geom_name=name)
    return s.export(file_type="glb")


def scene_glb(scene: SceneSpec, ceilings: bool = True) -> bytes:
    """The scene as glb bytes; `ceilings=False` leaves the rooms open from above (for viewers)."""
    if not ceilings:
        scene = dataclasses.replace(scene, parts=[p for p in scene.parts if p.centre[1] < WALL_H])
    return _glb(scene_meshes(scene))


def semantic_colour(instance_id: int) -> tuple[int, int, int]:
    """A unique non-black colour per instance id (black = unannotated, e.g. walls)."""
    return (instance_id & 255, (instance_id >> 8) & 255, 128 + ((instance_id >> 16) & 127))


def write_hm3d_semantics(meshes: list[tuple[str, trimesh.Trimesh, int]], scene: SceneSpec, stem: Path) -> tuple[Path, Path]:
    """`<stem>.semantic.glb` (the same triangles, per-vertex object colours) and `<stem>.semantic.txt`
    (`id,HEX,"category",region` lines under HM3D's header; region = room index)."""
    s = trimesh.Scene()
    for name, m, iid in meshes:
        rgba = np.array([*semantic_colour(iid), 255] if iid else [0, 0, 0, 255], dtype=np.uint8)
        sm = trimesh.Trimesh(vertices=m.vertices, faces=m.faces, process=False)
        sm.visual = trimesh.visual.ColorVisuals(sm, vertex_colors=np.tile(rgba, (len(sm.vertices), 1)))
        s.add_geometry(sm, node_name=name, geom_name=name)
    glb = stem.with_name(stem.name + ".semantic.glb")
    txt = stem.with_name(stem.name + ".semantic.txt")
    glb.write_bytes(s.export(file_type="glb"))
    rooms = {r.name: k for k, r in enumerate(scene.rooms)}
    lines = [HM3D_SEMANTIC_HEADER]
    for o in scene.objects:
        hexc = "".join(f"{c:02X}" for c in semantic_colour(o.instance_id))
        lines.append(f'{o.instance_id},{hexc},"{o.category}",{rooms.get(o.room, -1)}')
    txt.write_text("\n".join(lines) + "\n")
    return glb, txt


def export_glb(scene_seed: int, out_dir, cfg: WorldConfig | None = None, hm3d_semantics: bool = True) -> tuple[Path, Path]:
    """Write `apartment_<seed>.glb` and `apartment_<seed>.semantic.json` into out_dir (and, with
    hm3d_semantics, `apartment_<seed>.semantic.glb` + `.semantic.txt`); returns (glb, sidecar)."""
    scene = generate_scene(scene_seed, cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"apartment_{scene_seed}"
    glb = stem.with_suffix(".glb")
    sidecar = stem.with_name(stem.name + ".semantic.json")
    meshes = scene_meshes(scene)
    glb.write_bytes(_glb(meshes))
    if hm3d_semantics:
        write_hm3d_semantics(meshes, scene, stem)
    meta = {
        "scene_seed": int(scene_seed),
        "frame": "habitat (Y-up, metres, -Z forward)",
        "scene_phrase": scene.scene_phrase(),
        "bounds_xz": list(scene.bounds),
        "rooms": [{"name": r.name, "x0": r.x0, "z0": r.z0, "x1": r.x1, "z1": r.z1} for r in scene.rooms],
        "objects": [
            {
                "instance_id": o.instance_id,
                "category": o.category,
                "colour": o.colour,
                "room": o.room,
                "position": [float(v) for v in o.position],
                "aabb_min": [float(v) for v in o.aabb_min],
                "aabb_max": [float(v) for v in o.aabb_max],
                "node": f"object_{o.instance_id}",
            }
            for o in scene.objects
        ],
    }
    sidecar.write_text(json.dumps(meta, indent=1))
    return glb, sidecar
