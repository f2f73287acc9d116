"""glb + semantic sidecar export, loaded back with trimesh."""
from __future__ import annotations

import json

import numpy as np
import trimesh

from envs.embedded.export import export_glb
from envs.embedded.scene import WALL_H, generate_scene


def test_export_loads_back(tmp_path):
    glb, sidecar = export_glb(3, tmp_path)
    assert glb.suffix == ".glb" and glb.stat().st_size > 10_000
    scene = trimesh.load(glb)
    assert isinstance(scene, trimesh.Scene)
    lo, hi = scene.bounds
    assert abs(hi[1] - (WALL_H + 0.05)) < 0.01 and abs(lo[1] + 0.05) < 0.01  # Y-up, floor at 0
    spec = generate_scene(3)
    meta = json.loads(sidecar.read_text())
    assert [o["instance_id"] for o in meta["objects"]] == [o.instance_id for o in spec.objects]
    assert {o["category"] for o in meta["objects"]} == {o.category for o in spec.objects}
    for o, s in zip(meta["objects"], spec.objects):
        assert np.allclose(o["aabb_min"], s.aabb_min) and np.allclose(o["position"], s.position)
        assert o["node"] in scene.graph.nodes  # one node per object
    # materials, not vertex colours; floors/walls carry texture images
    kinds = {type(g.visual).__name__ for g in scene.geometry.values()}
    assert kinds == {"TextureVisuals"}
    assert any(getattr(g.visual.material, "baseColorTexture", None) is not None for g in scene.geometry.values())
