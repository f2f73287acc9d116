"""Read a Habitat scene for the pip renderer: the `.glb`/`.gltf` surfaces (grouped by material) and
its semantic annotation, in Habitat's frame (Y-up, metres).

Semantics come from our exporter's JSON sidecar (`<stem>.semantic.json`: objects with category and
AABB; glTF nodes `object_<id>` are the instances) or from HM3D's layout (`<stem>.semantic.glb`, whose
per-vertex colours mark the instances, + `<stem>.semantic.txt`: `id,HEX,"category",region`).
trimesh reads the glTF (a library: materials, node transforms, embedded images).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from envs.errors import SceneError
from envs.habitat.goals import SceneObject, objects_from_records

BASIS_HINT = ("HM3D's Basis/KTX2 textures need a decoder this renderer does not have: use HM3D's plain "
              "glTF release (the hm3d-*-glb-v0.2 archives, JPEG/PNG textures) or env.config.renderer=habitat_sim")


@dataclass
class Surface:
    """One render mesh: every triangle of the scene that shares a material."""

    vertices: np.ndarray  # (N, 3) float64, Habitat frame
    normals: np.ndarray  # (N, 3)
    faces: np.ndarray  # (M, 3) int
    uv: np.ndarray | None  # (N, 2) glTF texcoords as trimesh reads them, or None
    texture: np.ndarray | None  # (H, W, 3) uint8 base colour image, or None
    rgba: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    roughness: float | None = None


@dataclass
class MeshScene:
    """A loaded scene: render surfaces, per-instance triangle meshes (0 = unannotated) and objects."""

    path: Path
    surfaces: list[Surface]
    instances: dict[int, tuple[np.ndarray, np.ndarray]]  # id -> (vertices, faces)
    objects: list[SceneObject]
    phrase: str = "the house"
    _by_id: dict[int, SceneObject] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {o.instance_id: o for o in self.objects}

    def scene_phrase(self) -> str:
        return self.phrase

    def object(self, instance_id: int) -> SceneObject:
        try:
            return self._by_id[int(instance_id)]
        except KeyError:
            raise KeyError(f"scene {self.path.name} has no object instance {instance_id}") from None

    def instances_of(self, category: str) -> list[SceneObject]:
        return [o for o in self.objects if o.category == category]

    @property
    def categories_present(self) -> list[str]:
        return sorted({o.category for o in self.objects})

    @property
    def triangles(self) -> tuple[np.ndarray, np.ndarray]:
        """(vertices, faces) of every render surface together (navigation is derived from them)."""
        vs, fs, n = [], [], 0
        for s in self.surfaces:
            vs.append(s.vertices)
            fs.append(s.faces + n)
            n += len(s.vertices)
        return np.concatenate(vs), np.concatenate(fs)


def scene_stem(path: str | Path) -> Path:
    """`dir/name` of `dir/name.glb`, `dir/name.basis.glb`, `dir/name.gltf` (where sidecars live)."""
    p = Path(path)
    name = p.name
    for s in (".basis.glb", ".glb", ".gltf"):
        if name.lower().endswith(s):
            return p.with_name(name[: -len(s)])
    return p.with_name(p.stem)


def _gltf_json(path: Path) -> dict:
    """The glTF JSON of a .glb (binary container) or .gltf, to look at extensions before loading."""
    data = path.read_bytes()
    if path.suffix.lower() == ".gltf":
        return json.loads(data)
    if len(data) < 20 or data[:4] != b"glTF":
        raise SceneError(f"scene {path} is not a glTF binary (no 'glTF' header): re-export or re-download it")
    (length,) = struct.unpack_from("<I", data, 12)
    return json.loads(data[20 : 20 + length])


def _load_trimesh_scene(path: Path, what: str):
    import trimesh

    if not path.is_file():
        raise SceneError(f"{what} {path} does not exist; check env.config.scene (or the episode file's scene_id "
                         "with env.config.scenes_dir)")
    try:
        info = _gltf_json(path)
    except (ValueError, UnicodeDecodeError, struct.error) as e:
        raise SceneError(f"{what} {path} is not a readable glTF file ({type(e).__name__}): re-export or re-download it") from None
    if "KHR_texture_basisu" in json.dumps(info.get("extensionsUsed", [])) or ".ktx2" in json.dumps(info.get("images", [])):
        raise SceneError(f"{what} {path} has Basis Universal/KTX2 textures (KHR_texture_basisu): {BASIS_HINT}")
    try:
        return trimesh.load(str(path), force="scene", process=False)
    except Exception as e:  # trimesh raises assorted errors on truncated buffers
        raise SceneError(f"{what} {path} could not be read ({type(e).__name__}: {str(e).splitlines()[0][:120]}): "
                         "re-export or re-download it") from None


def _node_meshes(scene):
    """(node name, world-frame trimesh) of every mesh node."""
    import trimesh

    for node in scene.graph.nodes_geometry:
        T, gname = scene.graph[node]
        m = scene.geometry[gname]
        if not isinstance(m, trimesh.Trimesh) or len(m.faces) == 0:
            continue
        yield node, m, np.asarray(T, dtype=np.float64)


def _image(img) -> np.ndarray | None:
    if img is None:
        return None
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def _surfaces(scene) -> tuple[list[Surface], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Render surfaces merged per material, and each node's world-frame (vertices, faces)."""
    groups: dict[tuple, list] = {}
    nodes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for node, m, T in _node_meshes(scene):
        v = m.vertices @ T[:3, :3].T + T[:3, 3]
        n = m.vertex_normals @ T[:3, :3].T
        n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        nodes[node] = (v, np.asarray(m.faces))
        mat = getattr(m.visual, "material", None)
        tex = _image(getattr(mat, "baseColorTexture", None) or getattr(mat, "image", None))
        uv = getattr(m.visual, "uv", None)
        if tex is not None and uv is None:
            tex = None
        factor = getattr(mat, "baseColorFactor", None)
        rgba = tuple(float(c) / 255.0 for c in factor) if factor is not None else (1.0, 1.0, 1.0, 1.0)
        rough = getattr(mat, "roughnessFactor", None)
        key = (hashlib.sha1(tex.tobytes()).hexdigest() if tex is not None else None, rgba, rough)
        groups.setdefault(key, []).append((v, n, np.asarray(m.faces), None if tex is None else np.asarray(uv), tex))
    out = []
    for (_, rgba, rough), parts in groups.items():
        offs = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
        out.append(Surface(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                           np.concatenate([p[2] + o for p, o in zip(parts, offs)]),
                           None if parts[0][4] is None else np.concatenate([p[3] for p in parts]),
                           parts[0][4], rgba, None if rough is None else float(rough)))
    return out, nodes


def _merge(meshes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    offs = np.cumsum([0] + [len(v) for v, _ in meshes[:-1]])
    return np.concatenate([v for v, _ in meshes]), np.concatenate([f + o for (_, f), o in zip(meshes, offs)])


def _objects(records: list[dict], where: str) -> list[SceneObject]:
    """Sidecar records -> SceneObjects, categories kept as written (habitat-lab's names, e.g. tv_monitor)."""
    try:
        objs = objects_from_records(records, where=where)
    except ValueError as e:
        raise SceneError(str(e)) from None
    return [dataclasses.replace(o, category=str(r["category"]).strip()) for o, r in zip(objs, records)]


def _sidecar_semantics(path: Path, nodes: dict) -> tuple[dict, list[SceneObject], str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SceneError(f"semantic sidecar {path} is not valid JSON ({type(e).__name__}); re-export the scene") from None
    records = data.get("objects") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise SceneError(f"semantic sidecar {path} must be a list of objects or {{'objects': [...]}}")
    objects = _objects(records, str(path))
    node_of = {str(r.get("node") or f"object_{r['instance_id']}"): int(r["instance_id"]) for r in records}
    per_id: dict[int, list] = {}
    for name, vf in nodes.items():
        m = re.fullmatch(r"object_(\d+)(?:_\d+)?", name)
        iid = node_of.get(name, int(m.group(1)) if m else 0)
        per_id.setdefault(iid, []).append(vf)
    phrase = str(data.get("scene_phrase", "the house")) if isinstance(data, dict) else "the house"
    return {k: _merge(v) for k, v in per_id.items()}, objects, phrase


def read_hm3d_semantic_txt(path: Path) -> dict[int, tuple[int, str]]:
    """colour (0xRRGGBB) -> (instance id, category) from an HM3D `*.semantic.txt`."""
    out: dict[int, tuple[int, str]] = {}
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SceneError(f"semantic file {path} cannot be read ({type(e).__name__})") from None
    for k, line in enumerate(lines):
        if k == 0 and not line[:1].isdigit():
            continue  # "HM3D Semantic Annotations"
        m = re.fullmatch(r'\s*(\d+)\s*,\s*([0-9A-Fa-f]{6})\s*,\s*"?([^"]*)"?\s*,.*', line)
        if not line.strip():
            continue
        if m is None:
            raise SceneError(f"semantic file {path} line {k + 1} is not `id,HEX,\"category\",region`: {line[:80]!r}")
        out[int(m.group(2), 16)] = (int(m.group(1)), m.group(3).strip())
    return out


def _hm3d_semantics(glb: Path, txt: Path) -> tuple[dict, list[SceneObject]]:
    table = read_hm3d_semantic_txt(txt)
    per_id: dict[int, list] = {}
    for _, m, T in _node_meshes(_load_trimesh_scene(glb, "semantic mesh")):
        colours = getattr(m.visual, "vertex_colors", None)
        if colours is None or len(colours) != len(m.vertices):
            raise SceneError(f"semantic mesh {glb} has no per-vertex colours (HM3D's *.semantic.glb has them)")
        v = m.vertices @ T[:3, :3].T + T[:3, 3]
        c = np.asarray(colours)[np.asarray(m.faces)[:, 0], :3].astype(np.int64)
        code = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
        ids = np.array([table.get(int(x), (0, ""))[0] for x in np.unique(code)])
        face_id = ids[np.searchsorted(np.unique(code), code)]
        for iid in np.unique(face_id):
            per_id.setdefault(int(iid), []).append((v, np.asarray(m.faces)[face_id == iid]))
    objects = []
    cats = {iid: cat for iid, cat in table.values()}
    for iid, meshes in per_id.items():
        if iid == 0:
            continue
        pts = np.concatenate([v[np.unique(f)] for v, f in meshes])
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        objects.append(SceneObject(iid, cats[iid], tuple(lo.tolist()), tuple(hi.tolist()), tuple((0.5 * (lo + hi)).tolist())))
    return {k: _merge(v) for k, v in per_id.items()}, sorted(objects, key=lambda o: o.instance_id)


def load_mesh_scene(path: str | Path, sidecar: str | Path | None = None) -> MeshScene:
    """Surfaces + semantics of a scene file; SceneError (one line) when something is missing or broken."""
    path = Path(path)
    surfaces, nodes = _surfaces(_load_trimesh_scene(path, "scene"))
    if not surfaces:
        raise SceneError(f"scene {path} has no triangle meshes")
    stem = scene_stem(path)
    side = Path(sidecar) if sidecar else next((p for p in (stem.with_name(stem.name + ".semantic.json"),
                                                            stem.with_suffix(".json")) if p.is_file()), None)
    sem_glb, sem_txt = stem.with_name(stem.name + ".semantic.glb"), stem.with_name(stem.name + ".semantic.txt")
    if side is not None:
        if not side.is_file():
            raise SceneError(f"semantic sidecar {side} does not exist; fix env.config.semantic_sidecar")
        instances, objects, phrase = _sidecar_semantics(side, nodes)
    elif sem_glb.is_file() and sem_txt.is_file():
        (instances, objects), phrase = _hm3d_semantics(sem_glb, sem_txt), "the house"
    else:
        raise SceneError(f"scene {path} has no semantic annotation: expected {stem.name}.semantic.json (our exporter) "
                         f"or {sem_glb.name} + {sem_txt.name} (HM3D) beside it, or env.config.semantic_sidecar=FILE")
    if not objects:
        raise SceneError(f"scene {path}: its semantic annotation lists no objects, so there is nothing to navigate to")
    return MeshScene(path, surfaces, instances, objects, phrase)
