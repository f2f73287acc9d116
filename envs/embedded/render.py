"""Egocentric RGB + depth in ONE MuJoCo pass (mjr_render + mjr_readPixels), plus an optional
segmentation pass mapped to instance ids through a precomputed lookup table.

Why not mujoco.Renderer: it renders RGB and depth in separate passes and re-derives the
segmentation map every frame; this class keeps all buffers and lookups preallocated, which is
what makes env.step cost about one raw render.
"""
from __future__ import annotations

import math
import os

import numpy as np

from envs.embedded.gl import create_context, ensure_backend

ensure_backend()
import mujoco  # noqa: E402

from envs.embedded.mjbuild import RENDER_GROUP, SEG_GROUP  # noqa: E402
from envs.types import Pose  # noqa: E402


def _egl_get_current():
    """ctypes eglGetCurrentContext -> int address (0 if none), or None without libEGL."""
    try:
        import ctypes
        import ctypes.util

        lib = ctypes.CDLL(ctypes.util.find_library("EGL") or "libEGL.so.1")
        fn = lib.eglGetCurrentContext
        fn.restype = ctypes.c_void_p
        fn.argtypes = []
        return lambda: fn() or 0
    except Exception:  # pragma: no cover - OSMesa or no libEGL: always make_current
        return None


_egl_current = _egl_get_current() if os.environ.get("MUJOCO_GL", "egl").lower() == "egl" else None
_INHERITED_GL: list = []  # GL objects a forked child inherited from its parent (see GLRenderer._orphan)


class GLRenderer:
    """One GL context, reused across scenes (`set_model`); renders the model's 'agent' camera."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = int(width), int(height)
        self._pid = os.getpid()  # the GL objects below belong to this process (see _ensure_current)
        self._gl = create_context(self.width, self.height)
        self._con: mujoco.MjrContext | None = None
        self._ctx_addr = None
        self.model: mujoco.MjModel | None = None
        self._rect = mujoco.MjrRect(0, 0, self.width, self.height)
        self._rgb = np.empty((self.height, self.width, 3), dtype=np.uint8)
        self._zbuf = np.empty((self.height, self.width), dtype=np.float32)
        self._seg = np.empty((self.height, self.width, 3), dtype=np.uint8)

    def set_model(self, model: mujoco.MjModel, geom_instance: np.ndarray) -> None:
        self._ensure_current()
        if self._con is not None:
            self._con.free()
        self.model = model
        self.data = mujoco.MjData(model)
        mujoco.mj_forward(model, self.data)  # geom poses (static) for the scene and for mj_ray
        self._make_mjr_context()
        self.cam = mujoco.MjvCamera()
        self.cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self.cam.fixedcamid = 0
        # models from mjbuild carry merged meshes for the RGB-D pass (RENDER_GROUP) and for the
        # instance-id pass (SEG_GROUP) beside the parts (PRIM_GROUP); other models: one scene
        self.opt = mujoco.MjvOption()
        if np.any(model.geom_group == RENDER_GROUP):
            self.opt.geomgroup[:] = 0
            self.opt.geomgroup[RENDER_GROUP] = 1
        self.scn = self._scene(model, self.opt)
        if np.any(model.geom_group == SEG_GROUP):
            sem_opt = mujoco.MjvOption()
            sem_opt.geomgroup[:] = 0
            sem_opt.geomgroup[SEG_GROUP] = 1
            self._scn_sem = self._scene(model, sem_opt)
        else:
            self._scn_sem = self.scn
        ng = self._scn_sem.ngeom
        lut = np.zeros(ng + 2, dtype=np.int32)  # segmentation colour value (segid + 1) -> instance id
        for k in range(ng):
            g = self._scn_sem.geoms[k]
            if g.objtype == mujoco.mjtObj.mjOBJ_GEOM and g.segid >= 0 and 0 <= g.objid < len(geom_instance):
                lut[g.segid + 1] = max(0, int(geom_instance[g.objid]))
        self._lut = lut
        self._headlight = 0 if (self.scn.nlight > 0 and self.scn.lights[0].headlight) else -1
        if self._headlight >= 0:  # numpy views into the scene's light struct (fixed memory)
            self._hl_pos, self._hl_dir = self.scn.lights[0].pos, self.scn.lights[0].dir
        extent = model.stat.extent
        znear = np.float32(model.vis.map.znear * extent)
        zfar = np.float32(model.vis.map.zfar * extent)
        # reversed-Z depth -> metres along the viewing axis (same algebra as mujoco.Renderer)
        c = -(zfar + znear) / (zfar - znear)
        d = -(np.float32(2) * zfar * znear) / (zfar - znear)
        self._c = float(np.float32(-0.5) * c - np.float32(0.5))
        self._d = float(np.float32(-0.5) * d)

    def _make_mjr_context(self) -> None:
        """Upload the model to the (current) GL context: textures, meshes, offscreen buffer."""
        self._con = mujoco.MjrContext(self.model, mujoco.mjtFontScale.mjFONTSCALE_150.value)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, self._con)
        self._con.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR
        self._ctx_addr = None
        ctx = getattr(self._gl, "_context", None)
        if ctx is not None and _egl_current is not None:
            self._ctx_addr = getattr(ctx, "address", None) or getattr(ctx, "value", None)

    def _scene(self, model: mujoco.MjModel, opt: mujoco.MjvOption) -> mujoco.MjvScene:
        scn = mujoco.MjvScene(model, maxgeom=model.ngeom + 16)
        f = scn.flags
        for flag in ("mjRND_SHADOW", "mjRND_REFLECTION", "mjRND_SKYBOX", "mjRND_FOG", "mjRND_HAZE"):
            f[getattr(mujoco.mjtRndFlag, flag)] = 0
        # the scene is static: build its geom list once, then only the camera (and headlight) move
        mujoco.mjv_updateScene(model, self.data, opt, None, self.cam, mujoco.mjtCatBit.mjCAT_ALL.value, scn)
        return scn

    def _ensure_current(self) -> None:
        """make_current only when another context (ours or anyone's) is current: asking EGL
        (through ctypes, ~0.2 us) is cheaper than eglMakeCurrent on every frame. In a forked
        child, first build this process's own context (the parent's is never used here)."""
        if self._pid != os.getpid():
            self._adopt()
        if self._ctx_addr is not None and _egl_current() == self._ctx_addr:
            return
        self._gl.make_current()

    def _adopt(self) -> None:
        """Forked child: leave the parent's GL objects alone and make fresh ones for this process."""
        self._orphan()
        self._gl = create_context(self.width, self.height)  # one clear error if this process cannot have one
        self._pid = os.getpid()
        if self.model is not None:
            self._make_mjr_context()

    def _orphan(self) -> None:
        """Keep the parent's context objects referenced forever: their destructors would run the
        driver's teardown here, on state whose worker threads (if any) live only in the parent."""
        _INHERITED_GL.append((self._gl, self._con))
        self._gl = self._con = None
        self._ctx_addr = None

    def _set_camera(self, pose: Pose) -> None:
        # yaw about +Y then pitch about camera +X (envs.geometry.pose_rotation), then Habitat ->
        # MuJoCo (x, y, z) -> (x, -z, y), written out by hand: numpy/scipy cost more than the math
        cy, sy, cp, sp = math.cos(pose.yaw), math.sin(pose.yaw), math.cos(pose.pitch), math.sin(pose.pitch)
        x, y, z = pose.position
        p = (x, -z, y)
        self.data.cam_xpos[0] = p
        self.data.cam_xmat[0] = (cy, sy * sp, sy * cp, sy, -cy * sp, -cy * cp, 0.0, cp, -sp)
        mujoco.mjv_updateCamera(self.model, self.data, self.cam, self.scn)
        if self._headlight >= 0:  # mjv_makeLights is not re-run: move the headlight with the camera
            self._hl_pos[:] = p
            self._hl_dir[:] = (-sy * cp, cy * cp, sp)  # -(camera z axis)

    def render(self, pose: Pose, depth: bool = True, semantic: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(rgb uint8 HxWx3, depth float32 HxW metres or None, instance ids int32 HxW or None);
        the returned arrays are fresh (callers may keep them)."""
        self._ensure_current()
        self._set_camera(pose)
        mujoco.mjr_render(self._rect, self.scn, self._con)
        mujoco.mjr_readPixels(self._rgb, self._zbuf if depth else None, self._rect, self._con)
        rgb = self._rgb[::-1].copy()
        dep = None
        if depth:
            dep = np.add(self._zbuf[::-1], self._c)  # float32
            np.divide(self._d, dep, out=dep)
        sem = None
        if semantic:
            scn = self._scn_sem
            if scn is not self.scn:
                mujoco.mjv_updateCamera(self.model, self.data, self.cam, scn)
            f = scn.flags
            f[mujoco.mjtRndFlag.mjRND_SEGMENT] = 1
            f[mujoco.mjtRndFlag.mjRND_IDCOLOR] = 1
            try:
                mujoco.mjr_render(self._rect, scn, self._con)
                mujoco.mjr_readPixels(self._seg, None, self._rect, self._con)
            finally:
                f[mujoco.mjtRndFlag.mjRND_SEGMENT] = 0
                f[mujoco.mjtRndFlag.mjRND_IDCOLOR] = 0
            s = self._seg[::-1]
            code = s[..., 0].astype(np.int32) | (s[..., 1].astype(np.int32) << 8)
            np.clip(code, 0, len(self._lut) - 1, out=code)
            sem = self._lut[code]
        return rgb, dep, sem

    def close(self) -> None:
        if self._pid != os.getpid():  # a forked copy of the parent's renderer: not ours to free
            self._orphan()
            return
        if self._con is not None:
            try:
                self._gl.make_current()
                self._con.free()
            except Exception:  # interpreter shutdown: the context may already be gone
                pass
            self._con = None
        if self._gl is not None:
            try:
                self._gl.free()
            except Exception:
                pass
            self._gl = None
