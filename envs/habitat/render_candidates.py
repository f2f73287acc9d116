"""Raw RGB-D frame rates of candidate pip renderers on one .glb at the same poses (the measurement
behind the renderer choice in docs/backends.md; `python -m v4s_agent.bench habitat candidates=...`).

Each candidate loads the scene its own way, renders colour + depth at every pose once as warm-up and
then times the same poses; none of them is a dependency: a missing package or a headless context
that cannot be created is reported as the reason instead of a number.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from envs.geometry import pose_to_matrix, vfov_deg
from envs.types import Pose


def _timed(render: Callable[[Pose], object], poses: list[Pose]) -> float:
    for p in poses[:10]:
        render(p)
    t0 = time.perf_counter()
    for p in poses:
        render(p)
    return len(poses) / (time.perf_counter() - t0)


def _mujoco(glb: Path, size: int, world) -> Callable[[Pose], object]:
    r = world._renderer  # the MeshWorld's own GLRenderer: RGB + depth in one pass
    return lambda p: r.render(p, depth=True, semantic=False)[:2]


def _pyrender(glb: Path, size: int, world) -> Callable[[Pose], object]:
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    import pyrender
    import trimesh

    scene = pyrender.Scene.from_trimesh_scene(trimesh.load(str(glb), force="scene", process=False),
                                              ambient_light=[0.4, 0.4, 0.4])
    cam = scene.add(pyrender.PerspectiveCamera(yfov=np.radians(vfov_deg(world.hfov_deg, size, size)), znear=0.02, zfar=60.0))
    light = scene.add(pyrender.DirectionalLight(intensity=2.0))
    r = pyrender.OffscreenRenderer(size, size)

    def render(p: Pose):
        M = pose_to_matrix(p)
        scene.set_pose(cam, M)
        scene.set_pose(light, M)
        return r.render(scene)  # (colour, depth in metres)

    return render


_VS = """#version 330
uniform mat4 mvp; in vec3 pos; in vec3 nrm; in vec2 uv; out vec3 v_n; out vec2 v_uv;
void main() { gl_Position = mvp * vec4(pos, 1.0); v_n = nrm; v_uv = uv; }"""
_FS = """#version 330
uniform sampler2D tex; uniform vec4 rgba; uniform vec3 light; in vec3 v_n; in vec2 v_uv; out vec4 f;
void main() { vec4 c = rgba * texture(tex, v_uv); f = vec4(c.rgb * (0.42 + 0.38 * max(dot(normalize(v_n), light), 0.0)), 1.0); }"""


def _moderngl(glb: Path, size: int, world) -> Callable[[Pose], object]:
    import moderngl

    ctx = moderngl.create_standalone_context(backend="egl")
    ctx.enable(moderngl.DEPTH_TEST)
    prog = ctx.program(vertex_shader=_VS, fragment_shader=_FS)
    white = ctx.texture((1, 1), 3, bytes([255, 255, 255]))
    draws = []
    for s in world.scene.surfaces:  # the same surfaces the MuJoCo path draws
        uv = s.uv if s.uv is not None else np.zeros((len(s.vertices), 2))
        data = np.hstack([s.vertices, s.normals, uv]).astype("f4")
        vao = ctx.vertex_array(prog, [(ctx.buffer(data), "3f 3f 2f", "pos", "nrm", "uv")],
                               ctx.buffer(np.asarray(s.faces, dtype="i4")))
        tex = white
        if s.texture is not None:
            tex = ctx.texture(s.texture.shape[1::-1], 3, np.ascontiguousarray(s.texture[::-1]).tobytes())
            tex.repeat_x = tex.repeat_y = True
            tex.build_mipmaps()
        draws.append((vao, tex, s.rgba))
    fbo = ctx.framebuffer(ctx.renderbuffer((size, size)), ctx.depth_texture((size, size)))
    f = 1.0 / np.tan(np.radians(vfov_deg(world.hfov_deg, size, size)) / 2)
    n, fa = 0.02, 60.0
    P = np.array([[f, 0, 0, 0], [0, f, 0, 0], [0, 0, (fa + n) / (n - fa), 2 * fa * n / (n - fa)], [0, 0, -1, 0]])

    def render(p: Pose):
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
        M = pose_to_matrix(p)
        prog["mvp"].write((P @ np.linalg.inv(M)).T.astype("f4").tobytes())
        prog["light"].value = tuple(M[:3, 2])
        for vao, tex, rgba in draws:
            tex.use(0)
            prog["rgba"].value = tuple(rgba)
            vao.render()
        rgb = np.frombuffer(fbo.read(components=3), np.uint8).reshape(size, size, 3)[::-1]
        z = np.frombuffer(fbo.read(attachment=-1, components=1, dtype="f4"), np.float32).reshape(size, size)[::-1]
        return rgb, 2 * n * fa / (fa + n - (2 * z - 1) * (fa - n))

    return render


def _open3d(glb: Path, size: int, world) -> Callable[[Pose], object]:
    import open3d as o3d

    r = o3d.visualization.rendering.OffscreenRenderer(size, size)
    model = o3d.io.read_triangle_model(str(glb))
    r.scene.add_model("scene", model)
    vfov = vfov_deg(world.hfov_deg, size, size)

    def render(p: Pose):
        M = pose_to_matrix(p)
        eye = M[:3, 3]
        r.setup_camera(vfov, eye - M[:3, 2], eye, M[:3, 1])
        return np.asarray(r.render_to_image()), np.asarray(r.render_to_depth_image(z_in_view_space=True))

    return render


CANDIDATES: dict[str, Callable] = {"mujoco": _mujoco, "pyrender": _pyrender, "moderngl": _moderngl, "open3d": _open3d}


def time_candidates(glb: Path, poses: list[Pose], size: int, world, names: list[str],
                    reference: Callable[[Pose], tuple] | None = None) -> dict[str, dict | str]:
    """{name: {fps, psnr, depth_error_m} or 'unavailable: <reason>'}; MuJoCo (the MeshWorld's) first.
    psnr / depth_error_m compare the frame at poses[0] with `reference` (the embedded world's render)."""
    import sys

    out: dict[str, dict | str] = {}
    for name in ["mujoco"] + [n for n in names if n != "mujoco"]:
        if name not in CANDIDATES:
            out[name] = f"unavailable: unknown candidate (choose from {sorted(CANDIDATES)})"
            continue
        try:
            render = CANDIDATES[name](glb, size, world)
            res: dict = {"fps": round(_timed(render, poses), 1)}
            if reference is not None:
                rgb, depth = render(poses[0])
                ref_rgb, ref_depth = reference(poses[0])
                mse = float(np.mean((np.asarray(rgb)[..., :3].astype(np.float64) - ref_rgb) ** 2))
                res["psnr"] = round(10 * np.log10(255.0**2 / max(mse, 1e-12)), 1)
                res["depth_error_m"] = round(float(np.mean(np.abs(np.asarray(depth) - ref_depth))), 4)
            out[name] = res
        except Exception as e:  # missing package or no headless context: the reason is the result
            out[name] = f"unavailable: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        print(f"  raw RGB-D {name}: {out[name]}", file=sys.stderr)
    return out
