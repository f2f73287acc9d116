"""Forward warping of RGB-D memory frames into new cameras (a point-cloud "3D cache").

Every pixel of every source frame is lifted to 3D with its depth and its camera, projected into each
target camera and splatted with a z-buffer (the nearest point wins). Written by hand because no
installed library forward-splats with a z-buffer on the CPU without a rendering stack (pytorch3d,
nvdiffrast need compiled extensions or a GPU); it is a few vectorised torch ops, no per-pixel loop.

Each point lands on its nearest target pixel; pixels still empty then take the nearest point whose
2 × 2 footprint covers them, so a camera that moves forward (the target is magnified) shows fewer
cracks. Pixels no point reaches are holes: `warp_frames`
reports them in a validity mask and fills them from a fallback frame (the current view).
"""
from __future__ import annotations

import numpy as np
import torch

from envs.geometry import intrinsics_from_hfov


def splat(frames: np.ndarray, depths: np.ndarray, src_c2w: np.ndarray, tgt_c2w: np.ndarray, hfov_deg: float,
          size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Forward-splat RGB-D frames into target cameras.

    frames (N, H, W, 3) uint8 and depths (N, H, W) metres along the viewing axis (any resolution: depth is
    sampled at the frames' pixels), src_c2w (N, 4, 4) and tgt_c2w (F, 4, 4) camera-to-world in one frame
    (Habitat convention: x right, y up, looking along -Z). Returns (images (F, h, w, 3) uint8, valid
    (F, h, w) bool) at `size` = (h, w) (default: the frames' size); invalid pixels are 0."""
    frames = np.asarray(frames)
    n, H, W = frames.shape[:3]
    h, w = size or (H, W)
    depths = np.asarray(depths, dtype=np.float32)
    if depths.shape[0] != n:
        raise ValueError(f"need one depth map per frame: {n} frames, {depths.shape[0]} depth maps")
    if depths.shape[1:] != (H, W):  # nearest neighbour: never average depths across an edge
        rows = (np.arange(H) * depths.shape[1] // H)[:, None]
        cols = (np.arange(W) * depths.shape[2] // W)[None, :]
        depths = depths[:, rows, cols]
    K_src = intrinsics_from_hfov(hfov_deg, W, H)
    K_tgt = intrinsics_from_hfov(hfov_deg, w, h)
    # lift: camera-frame points of every source pixel (pixel centres at +0.5), then to the world
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5,
                          indexing="ij")
    d = torch.from_numpy(depths).double()  # N, H, W
    pts = torch.stack([(u - K_src[0, 2]) / K_src[0, 0] * d, -(v - K_src[1, 2]) / K_src[1, 1] * d, -d], dim=-1)
    src = torch.from_numpy(np.asarray(src_c2w, dtype=np.float64))
    world = torch.einsum("nij,nhwj->nhwi", src[:, :3, :3], pts) + src[:, None, None, :3, 3]
    ok_src = (d > 0) & torch.isfinite(d)
    world = world[ok_src]  # P, 3
    colours = torch.from_numpy(frames)[ok_src]  # P, 3
    # project into every target camera at once: (F, 3, P) camera coordinates, float32 from here on
    # (half the memory traffic of float64; a point moves by far less than a pixel)
    tgt_w2c = torch.linalg.inv(torch.from_numpy(np.asarray(tgt_c2w, dtype=np.float64)))  # F, 4, 4
    f = tgt_w2c.shape[0]
    pc = torch.baddbmm(tgt_w2c[:, :3, 3:].float(), tgt_w2c[:, :3, :3].float(), world.T.float().expand(f, 3, -1))
    z = -pc[:, 2]
    front = z > 1e-3
    inv_z = 1.0 / torch.where(front, z, torch.ones_like(z))
    uf = (K_tgt[0, 0] * inv_z) * pc[:, 0] + (K_tgt[0, 2] - 0.5)  # continuous pixel coordinates (centre = integer)
    vf = (-K_tgt[1, 1] * inv_z) * pc[:, 1] + (K_tgt[1, 2] - 0.5)
    # keep the (target, point) pairs in front of the camera that can touch the image, flattened
    near = (front & (uf > -1.0) & (uf < w) & (vf > -1.0) & (vf < h)).view(-1)
    pair = near.nonzero().squeeze(1)
    fid, pid = pair // uf.shape[1], pair % uf.shape[1]
    z, uf, vf = z.view(-1)[pair], uf.view(-1)[pair], vf.view(-1)[pair]
    dump = f * h * w  # one spare pixel: entries that fall outside (or may not write) go there, no masking
    out = torch.zeros((dump + 1, 3), dtype=torch.uint8)

    def zsplat(footprint: list[tuple[torch.Tensor, torch.Tensor]], only: torch.Tensor | None = None) -> torch.Tensor:
        """Z-buffered splat of every pair to the pixels (u, v) of each footprint offset: the nearest
        point wins a pixel (of `only` when given), its colour is written to `out`. Returns the depth
        buffer (F·h·w + 1,), inf = hole."""
        keys = []
        for a, b in footprint:
            key = torch.where((a >= 0) & (a < w) & (b >= 0) & (b < h), (fid * h + b) * w + a, dump)
            if only is not None:
                key = torch.where(only[key], key, dump)
            keys.append(key)
        key = torch.cat(keys)
        zval = z.repeat(len(footprint))
        zbuf = torch.full((dump + 1,), float("inf"), dtype=z.dtype)
        zbuf.scatter_reduce_(0, key, zval, reduce="amin")
        # one winner per pixel, the last entry at the nearest depth (the later context frame when two see
        # the same surface): a plain index_put of every tied entry keeps whichever thread wrote last
        last = torch.full((dump + 1,), -1, dtype=torch.long)
        last.scatter_reduce_(0, key, torch.where(zval <= zbuf[key], torch.arange(key.numel()), -1), reduce="amax")
        last[dump] = -1
        hit = (last >= 0).nonzero().squeeze(1)
        out[hit] = colours[pid.repeat(len(footprint))[last[hit]]]
        zbuf[dump] = float("inf")
        return zbuf

    # nearest pixel first (a camera that did not move gets its frame back exactly), then the 2 × 2
    # footprint around each projection fills the cracks a forward motion (magnification) leaves
    zbuf = zsplat([(torch.round(uf).long(), torch.round(vf).long())])
    hole = ~torch.isfinite(zbuf)
    hole[dump] = False
    u0, v0 = torch.floor(uf).long(), torch.floor(vf).long()
    zbuf2 = zsplat([(u0, v0), (u0 + 1, v0), (u0, v0 + 1), (u0 + 1, v0 + 1)], only=hole)
    valid = (~hole | torch.isfinite(zbuf2))[:dump]
    out = out[:dump]
    return out.view(f, h, w, 3).numpy(), valid.view(f, h, w).numpy()


def warp_frames(frames: np.ndarray, depths: np.ndarray, src_c2w: np.ndarray, tgt_c2w: np.ndarray, hfov_deg: float,
                fill: np.ndarray, size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`splat`, with the holes filled from `fill` ((h, w, 3) uint8, e.g. the current view): what a
    3D-cache renderer shows, and the mask of what it really knows."""
    images, valid = splat(frames, depths, src_c2w, tgt_c2w, hfov_deg, size)
    fill = np.asarray(fill)
    if fill.shape != images.shape[1:]:
        raise ValueError(f"fill frame must be {images.shape[1:]}, got {fill.shape}")
    return np.where(valid[..., None], images, fill[None]), valid
