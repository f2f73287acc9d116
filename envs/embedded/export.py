"""Export a scene as a habitat-sim stage: `.glb` (Y-up = Habitat's frame, PBR materials, floor and
wall textures as images with UVs, no vertex colours) plus a semantic JSON sidecar listing every
object instance (the habitat backend reads it; habitat-sim's own semantic formats need a navmesh
and annotations we do not have).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from envs.embedded.config import WorldConfig
from envs.embedded.objects import Part
from envs.embedded.scene import SceneSpec, generate_scene

_RX_Z_TO_Y = trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0])  # trimesh axis z -> y


def _part_mesh(p: Part) -> trimesh.Trimesh:
    h = np.asarray(p.half, dtype=np.float64)
    if p.kind == "box":
        m = trimesh.creation.box(extents=2 * h)
    elif p.kind == "ellipsoid":
        m = trimesh.creation.icosphere(subdivisions=2)
        m.apply_scale(h)
    elif p.kind == "cylinder":
        m = trimesh.creation.cylinder(radius=h[0], height=2 * h[1], sections=16)
        m.apply_transform(_RX_Z_TO_Y)
    elif p.kind == "capsule":
        m = trimesh.creation.capsule(radius=h[0], height=2 * h[1], count=[12, 12])
        m.apply_transform(_RX_Z_TO_Y)
    else:  # pragma: no cover - Part kinds are fixed in objects.py
        raise ValueError(f"unknown part kind {p.kind!r}")
    T = np.eye(4)
    T[:3, :3] = p.rot
    T[:3, 3] = p.centre
    m.apply_transform(T)
    return m


def _planar_uv(m: trimesh.Trimesh, repeats_per_m: float) -> np.ndarray:
    """Box-face UVs from world coordinates (texture repeats per metre, like MuJoCo's texuniform)."""
    v, n = m.vertices, m.vertex_normals
    ax = np.abs(n).argmax(axis=1)
    uv = np.where((ax == 1)[:, None], v[:, [0, 2]], np.where((ax == 0)[:, None], v[:, [2, 1]], v[:, [0, 1]]))
    return uv * repeats_per_m


def scene_meshes(scene: SceneSpec) -> list[tuple[str, trimesh.Trimesh]]:
    """(node name, textured/material mesh) for every structure part and every object (parts merged
    per object and colour)."""
    out: list[tuple[str, trimesh.Trimesh]] = []
    images = {name: Image.fromarray(tex) for name, tex in scene.textures.items()}
    by_obj: dict[tuple[int, tuple], list[trimesh.Trimesh]] = {}
    for k, p in enumerate(scene.parts):
        m = _part_mesh(p)
        if p.material is not None:
            tex, rep = scene.materials[p.material]
            m.unmerge_vertices()  # per-face vertices so each box face gets its own planar UVs
            mat = trimesh.visual.material.PBRMaterial(name=p.material, baseColorTexture=images[tex],
                                                      metallicFactor=0.0, roughnessFactor=0.9)
            m.visual = trimesh.visual.TextureVisuals(uv=_planar_uv(m, rep), material=mat)
            out.append((f"structure_{k}", m))
        else:
            key = (p.instance_id, tuple(np.round(p.rgb, 3)))
            by_obj.setdefault(key, []).append(m)
    for (iid, rgb), ms in by_obj.items():
        m = trimesh.util.concatenate(ms)
        mat = trimesh.visual.material.PBRMaterial(
            name=f"rgb_{int(rgb[0]*255):02x}{int(rgb[1]*255):02x}{int(rgb[2]*255):02x}",
            baseColorFactor=[*[float(c) for c in rgb], 1.0], metallicFactor=0.0, roughnessFactor=0.8)
        m.visual = trimesh.visual.TextureVisuals(material=mat)
        out.append((f"object_{iid}" if iid else "structure_plain", m))
    return out


def export_glb(scene_seed: int, out_dir, cfg: WorldConfig | None = None) -> tuple[Path, Path]:
    """Write `apartment_<seed>.glb` and `apartment_<seed>.semantic.json` into out_dir."""
    scene = generate_scene(scene_seed, cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    glb = out_dir / f"apartment_{scene_seed}.glb"
    sidecar = out_dir / f"apartment_{scene_seed}.semantic.json"
    s = trimesh.Scene()
    for name, m in scene_meshes(scene):
        s.add_geometry(m, node_name=name, geom_name=name)
    glb.write_bytes(s.export(file_type="glb"))
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
