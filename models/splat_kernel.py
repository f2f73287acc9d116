"""The 3D cache's splat loop, compiled by numba (see models/warp.py for what it computes and why it is
written by hand). The functions live at module level so that numba's on-disk cache (`cache=True`) is found
again by the next process: defined inside a function they were compiled anew in every process (~3 s, more
under load), at the first navigation rollout of every run, eval worker and test subprocess."""
import numba
import numpy as np


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
