"""Forward warping of RGB-D memory frames into new cameras (a point-cloud "3D cache").

Every pixel of every source frame is lifted to 3D with its depth and its camera, projected into each
target camera and splatted with a z-buffer (the nearest point wins). Written by hand because no
installed library forward-splats with a z-buffer on the CPU without a rendering stack (pytorch3d,
nvdiffrast need compiled extensions or a GPU). It is compiled by numba: per target camera, the tiles of
source pixels it can see are projected in a branch-free (vectorised) loop, the points that land in the
image are packed, then depth-tested by one integer min per point (depth bits and tie-break in one key).
The vectorised torch version it replaced (a scatter amin per
pixel, then the winner's index) made ~25 passes over every (target, point) pair and cost 76% of a
shipped-settings navigation rollout; this one gives the same pixels (its float arithmetic is written in
the order that version's matmuls used; checked bitwise against its stored output).

Each point lands on its nearest target pixel; pixels still empty then take the nearest point whose
2 × 2 footprint covers them, so a camera that moves forward (the target is magnified) shows fewer
cracks. Among points at the same depth the later one wins (the later context frame when two see the
same surface). Pixels no point reaches are holes: `warp_frames` reports them in a validity mask and
fills them from a fallback frame (the current view).
"""
from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

from envs.geometry import intrinsics_from_hfov

TILE = 16  # source pixels per tile side: a target camera skips the tiles whose frustum it cannot see

def splat(frames: np.ndarray, depths: np.ndarray, src_c2w: np.ndarray, tgt_c2w: np.ndarray, hfov_deg: float,
          size: tuple[int, int] | None = None, fill: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Forward-splat RGB-D frames into target cameras.

    frames (N, H, W, 3) uint8 and depths (N, H, W) metres along the viewing axis (any resolution: depth is
    sampled at the frames' pixels), src_c2w (N, 4, 4) and tgt_c2w (F, 4, 4) camera-to-world in one frame
    (Habitat convention: x right, y up, looking along -Z). Returns (images (F, h, w, 3) uint8, valid
    (F, h, w) bool) at `size` = (h, w) (default: the frames' size); invalid pixels are `fill`'s ((h, w, 3)
    uint8), or 0."""
    frames = np.ascontiguousarray(frames)
    n, H, W = frames.shape[:3]
    h, w = size or (H, W)
    fill = np.zeros((h, w, 3), np.uint8) if fill is None else np.ascontiguousarray(fill, dtype=np.uint8)
    if fill.shape != (h, w, 3):
        raise ValueError(f"fill frame must be {(h, w, 3)}, got {fill.shape}")
    depths = np.asarray(depths, dtype=np.float32)
    if depths.shape[0] != n:
        raise ValueError(f"need one depth map per frame: {n} frames, {depths.shape[0]} depth maps")
    if n * H * W >= 2**30:  # the depth test's key holds 4 × a point's rank in 32 bits
        raise ValueError(f"at most 2**30 source pixels per splat, got {n} frames of {H} × {W}")
    if depths.shape[1:] != (H, W):  # nearest neighbour: never average depths across an edge
        rows = (np.arange(H) * depths.shape[1] // H)[:, None]
        cols = (np.arange(W) * depths.shape[2] // W)[None, :]
        depths = depths[:, rows, cols]
    K_src = intrinsics_from_hfov(hfov_deg, W, H)
    K_tgt = intrinsics_from_hfov(hfov_deg, w, h)
    tgt_w2c = torch.linalg.inv(torch.from_numpy(np.asarray(tgt_c2w, dtype=np.float64))).numpy()  # F, 4, 4
    images = np.empty((len(tgt_w2c), h, w, 3), dtype=np.uint8)
    valid = np.empty((len(tgt_w2c), h, w), dtype=bool)
    _kernel()(frames, np.ascontiguousarray(depths), np.ascontiguousarray(src_c2w, dtype=np.float64), tgt_w2c,
              float(K_src[0, 0]), float(K_src[1, 1]), float(K_src[0, 2]), float(K_src[1, 2]),
              np.float32(K_tgt[0, 0]), np.float32(K_tgt[0, 2] - 0.5), np.float32(-K_tgt[1, 1]),
              np.float32(K_tgt[1, 2] - 0.5), TILE, fill, images, valid)
    return images, valid


@functools.cache
def _kernel():
    """The splat loop, compiled by numba on first use (and cached on disk)."""
    import numba

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def sees(corners, w2c, fx, cx, fy, cy, h, w):  # pragma: no cover - compiled
        """False when every corner lies outside one side of the target's view (near plane or an image
        edge, 1 px out as the kernel counts it), by a margin far above float32 rounding: then no point
        inside the corners reaches the image."""
        behind = left = right = top = bottom = 0
        for k in range(corners.shape[0]):
            c0, c1, c2 = corners[k, 0], corners[k, 1], corners[k, 2]
            x = w2c[0, 0] * c0 + w2c[0, 1] * c1 + w2c[0, 2] * c2 + w2c[0, 3]
            y = w2c[1, 0] * c0 + w2c[1, 1] * c1 + w2c[1, 2] * c2 + w2c[1, 3]
            z = -(w2c[2, 0] * c0 + w2c[2, 1] * c1 + w2c[2, 2] * c2 + w2c[2, 3])
            tol = 1e-4 * (abs(fx * x) + abs(fy * y) + (abs(cx) + abs(cy) + h + w + 2.0) * abs(z)) + 1e-6
            behind += z < 1e-3 - tol
            left += fx * x + (cx + 1.0) * z < -tol
            right += (w - cx) * z - fx * x < -tol
            top += fy * y + (cy + 1.0) * z < -tol
            bottom += (h - cy) * z - fy * y < -tol
        m = corners.shape[0]
        return not (behind == m or left == m or right == m or top == m or bottom == m)

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def kernel(frames, depths, src_c2w, tgt_w2c, sfx, sfy, scx, scy, fx, cx, fy, cy, tile,
               fill, images, valid):  # pragma: no cover - compiled
        n, H, W = depths.shape
        f, h, w = valid.shape
        pixels = frames.reshape(n * H * W, frames.shape[3])
        tv, tu = (H + tile - 1) // tile, (W + tile - 1) // tile
        # lift every source pixel (centre at +0.5) to the world, float64, then keep float32 (a point moves
        # by far less than a pixel), and pack the valid ones tile by tile (tile-sized squares of one frame,
        # in frame order); `rank` is a point's place in raster and frame order: among equal depths the
        # higher rank (later frame) wins
        wx = np.empty(n * H * W, dtype=np.float32)  # x, y, z world coordinates, one array each (vector loads)
        wy = np.empty(n * H * W, dtype=np.float32)
        wz = np.empty(n * H * W, dtype=np.float32)
        rank = np.empty(n * H * W, dtype=np.int64)
        source = np.empty(n * H * W, dtype=np.int64)  # the point's pixel in frames.reshape(-1, 3)
        starts = np.zeros(n * tv * tu + 1, dtype=np.int64)
        # each tile's points lie inside the frustum its pixel rectangle spans between its nearest and
        # farthest depth: its 8 corners
        corners = np.empty((n * tv * tu, 8, 3))
        lx = np.empty(H * W, dtype=np.float32)  # one frame's pixels lifted, valid or not, in raster order
        ly = np.empty(H * W, dtype=np.float32)
        lz = np.empty(H * W, dtype=np.float32)
        ok = np.empty(H * W, dtype=np.bool_)
        before = np.zeros(H * W + 1, dtype=np.int64)  # valid pixels before each pixel of the frame
        count = n_valid = 0
        for s in range(n):
            R = src_c2w[s]
            r00, r01, r02, r03 = R[0, 0], R[0, 1], R[0, 2], R[0, 3]
            r10, r11, r12, r13 = R[1, 0], R[1, 1], R[1, 2], R[1, 3]
            r20, r21, r22, r23 = R[2, 0], R[2, 1], R[2, 2], R[2, 3]
            for v in range(H):
                for u in range(W):  # no branch: vectorised (an invalid depth gives junk, unused)
                    d = np.float64(depths[s, v, u])
                    px, py, pz = (u + 0.5 - scx) / sfx * d, -(v + 0.5 - scy) / sfy * d, -d
                    q = v * W + u
                    lx[q] = ((r00 * px + r01 * py) + r02 * pz) + r03
                    ly[q] = ((r10 * px + r11 * py) + r12 * pz) + r13
                    lz[q] = ((r20 * px + r21 * py) + r22 * pz) + r23
                    ok[q] = (d > 0) & (d < np.inf)
            for q in range(H * W):
                before[q + 1] = before[q] + ok[q]
            for a in range(tv):
                for b in range(tu):
                    dmin, dmax = np.inf, -np.inf
                    for v in range(a * tile, min(a * tile + tile, H)):
                        for u in range(b * tile, min(b * tile + tile, W)):  # pack without a branch
                            q = v * W + u
                            d = np.float64(depths[s, v, u])
                            dmin, dmax = min(dmin, d if ok[q] else np.inf), max(dmax, d if ok[q] else -np.inf)
                            wx[count], wy[count], wz[count] = lx[q], ly[q], lz[q]
                            rank[count] = n_valid + before[q]
                            source[count] = s * H * W + q
                            count += ok[q]
                    t_id = (s * tv + a) * tu + b
                    starts[t_id + 1] = count
                    k = 0
                    for d in (dmin, dmax):
                        for v in (a * tile, min(a * tile + tile, H)):
                            for u in (b * tile, min(b * tile + tile, W)):
                                px, py, pz = (u - scx) / sfx * d, -(v - scy) / sfy * d, -d
                                for i in range(3):
                                    corners[t_id, k, i] = R[i, 0] * px + R[i, 1] * py + R[i, 2] * pz + R[i, 3]
                                k += 1
            n_valid += before[H * W]
        near_z, one = np.float32(1e-3), np.float32(1.0)
        # a projection's depth test is one integer min: its key holds the depth's float32 bits (ordered
        # like the depths, which are > 0) above 32 bits that hold the tie-break reversed (the higher rank
        # wins), so the smallest key is the nearest point, the later one among equal depths
        low, empty = np.int64(0xFFFFFFFF), np.int64(0x7FFFFFFFFFFFFFFF)
        by_rank = np.empty(count, dtype=np.int64)  # a rank's pixel in `pixels`
        for p in range(count):
            by_rank[rank[p]] = source[p]
        # per-pixel keys padded by one pixel on each side: a projection whose nearest pixel or 2 × 2
        # footprint reaches one pixel out lands in the padding (never read) instead of a bounds test
        best = np.empty((h + 2, w + 2), dtype=np.int64)
        hole = np.zeros((h + 2, w + 2), dtype=np.bool_)
        near = np.empty((h + 1, w + 1), dtype=np.bool_)
        # one tile's projections (depth, lands in the image or 1 px out, padded nearest pixel and footprint
        # top-left), then packed over the tiles: the points that reach this target's image
        tile_z = np.empty(tile * tile, dtype=np.float32)
        tile_bits = tile_z.view(np.int32)
        tile_in = np.empty(tile * tile, dtype=np.bool_)
        tile_pix = np.empty((4, tile * tile), dtype=np.int32)
        keys = np.empty(count + 1, dtype=np.int64)
        cand = np.empty(count + 1, dtype=np.int64)
        pix = np.empty((count + 1, 4), dtype=np.int32)
        for t in range(f):
            r = tgt_w2c[t, :3].astype(np.float32)
            r00, r01, r02, r03 = r[0, 0], r[0, 1], r[0, 2], r[0, 3]
            r10, r11, r12, r13 = r[1, 0], r[1, 1], r[1, 2], r[1, 3]
            r20, r21, r22, r23 = r[2, 0], r[2, 1], r[2, 2], r[2, 3]
            n_hits = 0
            for t_id in range(n * tv * tu):
                if starts[t_id] == starts[t_id + 1] or not sees(corners[t_id], tgt_w2c[t], fx, cx, fy, cy, h, w):
                    continue
                p0, m = starts[t_id], starts[t_id + 1] - starts[t_id]
                bx, by, bz = wx[p0:p0 + m], wy[p0:p0 + m], wz[p0:p0 + m]
                for k in range(m):  # no branch: the compiler vectorises it (a point behind gives junk, unused)
                    x, y, zw = bx[k], by[k], bz[k]
                    z = -((r20 * x + r21 * y) + r22 * zw + r23)
                    inv_z = one / z
                    uf = (fx * inv_z) * ((r00 * x + r01 * y) + r02 * zw + r03) + cx
                    vf = (fy * inv_z) * ((r10 * x + r11 * y) + r12 * zw + r13) + cy
                    tile_z[k] = z
                    tile_in[k] = (z > near_z) & (uf > -1.0) & (uf < w) & (vf > -1.0) & (vf < h)
                    tile_pix[0, k], tile_pix[1, k] = np.int32(np.rint(vf)) + 1, np.int32(np.rint(uf)) + 1
                    tile_pix[2, k], tile_pix[3, k] = np.int32(np.floor(vf)) + 1, np.int32(np.floor(uf)) + 1
                ranks = rank[p0:p0 + m]
                for k in range(m):  # pack without a branch: every point is written, only those in advance
                    keys[n_hits] = (np.int64(tile_bits[k]) << 32) | (low - ranks[k])
                    for c in range(4):
                        pix[n_hits, c] = tile_pix[c, k]
                    n_hits += tile_in[k]
            # nearest pixel first (a camera that did not move gets its frame back exactly)
            best[:] = empty
            for q in range(n_hits):
                i, j = pix[q, 0], pix[q, 1]
                best[i, j] = min(best[i, j], keys[q])
            # then the 2 × 2 footprint around each projection fills the holes (the cracks a forward
            # motion, i.e. magnification, leaves); ties go to the last entry in (corner, rank) order.
            # near[v0 + 1, u0 + 1]: the footprint whose top-left is (u0, v0), u0, v0 >= -1, covers a hole
            near[:] = False
            holes = 0
            for i in range(1, h + 1):
                for j in range(1, w + 1):
                    empty_ij = best[i, j] == empty
                    hole[i, j] = empty_ij
                    if empty_ij:
                        near[i - 1, j - 1] = near[i - 1, j] = near[i, j - 1] = near[i, j] = True
                        holes += 1
            if holes:
                n_cand = 0
                for q in range(n_hits):  # the projections whose footprint covers a hole, packed
                    cand[n_cand] = q
                    n_cand += near[pix[q, 2], pix[q, 3]]
                for c_ in range(n_cand):
                    q = cand[c_]
                    v1, u1 = pix[q, 2], pix[q, 3]
                    depth, rk = keys[q] & ~low, low - (keys[q] & low)
                    for k in range(4):
                        i, j = v1 + k // 2, u1 + k % 2
                        key = depth | (low - (k * count + rk))
                        best[i, j] = min(best[i, j], key if hole[i, j] else empty)
            for i in range(h):
                for j in range(w):
                    b = best[i + 1, j + 1]
                    valid[t, i, j] = b != empty
                    src = by_rank[(low - (b & low)) % count] if b != empty else 0
                    for c in range(3):  # per channel: a slice copy costs ~50× more in compiled code
                        images[t, i, j, c] = pixels[src, c] if b != empty else fill[i, j, c]

    return kernel


def warp_frames(frames: np.ndarray, depths: np.ndarray, src_c2w: np.ndarray, tgt_c2w: np.ndarray, hfov_deg: float,
                fill: np.ndarray, size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`splat`, with the holes filled from `fill` ((h, w, 3) uint8, e.g. the current view): what a
    3D-cache renderer shows, and the mask of what it really knows."""
    return splat(frames, depths, src_c2w, tgt_c2w, hfov_deg, size, fill=fill)


def composite(frames: np.ndarray, warped: np.ndarray, valid: np.ndarray, smooth: float = 0.0) -> np.ndarray:
    """Generated frames (..., F, H, W, 3) uint8 with the pixels the 3D cache knows put back: `warped`
    where `valid` ((F, H, W, 3), (F, H, W)), the generated pixels elsewhere (the holes: what the cache
    does not see). `smooth` > 0 (pixels) first filters the splatted pixels with a Gaussian of that σ
    normalised by the splat's coverage (a reconstruction filter for point splats: each pixel holds one
    nearest point, aliased; the holes do not bleed in)."""
    valid = np.asarray(valid)
    keep = np.repeat(valid[..., None], warped.shape[-1], axis=-1)  # np.where runs ~2× faster than with a broadcast axis of 3
    cache = warped
    if smooth > 0:
        cover = valid.astype(np.float32)
        num = np.stack([cv2.GaussianBlur(c, (0, 0), smooth) for c in np.where(keep, warped, 0).astype(np.float32)])
        den = np.stack([cv2.GaussianBlur(m, (0, 0), smooth) for m in cover])[..., None]
        cache = np.round(num / np.maximum(den, 1e-12)).astype(np.uint8)  # den > 0 wherever valid
    return np.where(keep, cache, frames).astype(np.uint8, copy=False)

