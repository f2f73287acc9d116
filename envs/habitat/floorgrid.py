"""Navigable floor from a scene's triangles, without a navmesh library: a NavGrid (the embedded world's
occupancy grid, geodesics and collision checks) rasterised from the mesh at the agent's height.

A cell (its centre, like the embedded world's grid) is open floor when a vertical line through it
meets an upward-facing surface at floor height and nothing else between `max_climb` and
`agent_height` above the floor: no sloped or horizontal surface there, no wall face crossing the
cell behind its centre, and the line is not inside a closed solid (the first surface above the band
faces up). The agent radius is applied by NavGrid. Written here rather than taken from a navmesh
library: the point is the embedded world's own grid (its geodesics and collision rule), so that both
worlds score an episode the same way; a navmesh would give different geodesics. Solids thinner than
half a cell may block one extra row of cells beside them.
"""
from __future__ import annotations

import numpy as np

VERTICAL = 0.05  # |normal_y| below this: a wall face (projects to a segment, not an area)
_CHUNK = 2_000_000


def floor_height(vertices: np.ndarray, faces: np.ndarray) -> float:
    """The lowest height that carries a large share of the upward-facing area (the ground floor):
    area-weighted histogram of upward faces at 1 cm, lowest bin with >= 25% of the largest bin."""
    tri = vertices[faces]
    cr = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = 0.5 * np.linalg.norm(cr, axis=1)
    up = cr[:, 1] > 0.9 * 2 * np.maximum(area, 1e-12)
    if not np.any(up):
        raise ValueError("the scene has no upward-facing surface to walk on (is it Y-up?)")
    h = np.round(tri[up, :, 1].mean(axis=1), 2)
    keys, inv = np.unique(h, return_inverse=True)
    w = np.bincount(inv, weights=area[up])
    return float(keys[np.flatnonzero(w >= 0.25 * w.max())[0]])


def _column_hits(tri: np.ndarray, origin: np.ndarray, res: float, shape: tuple[int, int]):
    """Cells whose centre lies under each non-vertical triangle: (cell rows, cols, height, faces up)."""
    nz, nx = shape
    xz = tri[:, :, [0, 2]]
    lo = np.floor((xz.min(axis=1) - origin) / res - 0.5).astype(np.int64) + 1  # first centre >= min
    hi = np.floor((xz.max(axis=1) - origin) / res - 0.5).astype(np.int64)  # last centre <= max
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [nx - 1, nz - 1])
    cnt = np.maximum(hi - lo + 1, 0)
    n = cnt[:, 0] * cnt[:, 1]
    rows, cols, ys, ups = [], [], [], []
    starts = np.concatenate([[0], np.cumsum(n)])
    k0 = 0
    while k0 < len(tri):  # chunks of triangles so that the (triangle, cell) pairs fit in memory
        k1 = int(np.searchsorted(starts, starts[k0] + _CHUNK, side="right")) - 1
        k1 = max(k1, k0 + 1)
        sel = np.arange(k0, min(k1, len(tri)))
        k0 = sel[-1] + 1
        t = np.repeat(sel, n[sel])
        if len(t) == 0:
            continue
        j = np.arange(len(t)) - np.repeat(starts[sel] - starts[sel[0]], n[sel])
        ix = lo[t, 0] + j % cnt[t, 0]
        iz = lo[t, 1] + j // cnt[t, 0]
        px, pz = origin[0] + (ix + 0.5) * res, origin[1] + (iz + 0.5) * res
        a, b, c = tri[t, 0], tri[t, 1], tri[t, 2]
        d = (b[:, 2] - c[:, 2]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 2] - c[:, 2])
        l1 = ((b[:, 2] - c[:, 2]) * (px - c[:, 0]) + (c[:, 0] - b[:, 0]) * (pz - c[:, 2])) / d
        l2 = ((c[:, 2] - a[:, 2]) * (px - c[:, 0]) + (a[:, 0] - c[:, 0]) * (pz - c[:, 2])) / d
        l3 = 1.0 - l1 - l2
        eps = -1e-9
        inside = (l1 >= eps) & (l2 >= eps) & (l3 >= eps)
        y = l1 * a[:, 1] + l2 * b[:, 1] + l3 * c[:, 1]
        nrm_y = (b[:, 2] - a[:, 2]) * (c[:, 0] - a[:, 0]) - (b[:, 0] - a[:, 0]) * (c[:, 2] - a[:, 2])
        rows.append(iz[inside])
        cols.append(ix[inside])
        ys.append(y[inside])
        ups.append(nrm_y[inside] > 0)
    if not rows:
        e = np.zeros(0, dtype=np.int64)
        return e, e, np.zeros(0), np.zeros(0, dtype=bool)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(ys), np.concatenate(ups)


def _wall_cells(tri: np.ndarray, normals: np.ndarray, origin: np.ndarray, res: float, shape, y0: float, y1: float) -> np.ndarray:
    """(K, 2) cells behind the wall faces (vertical triangles) that reach into [y0, y1]: the face's
    floor-plane segment, sampled every res/4 and moved half a cell against its normal, so a closed
    solid blocks exactly the cells whose centres it contains."""
    keep = (tri[:, :, 1].max(axis=1) > y0) & (tri[:, :, 1].min(axis=1) < y1)
    tri, normals = tri[keep], normals[keep]
    if len(tri) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    xz = tri[:, :, [0, 2]]
    nxz = normals[:, [0, 2]]
    nxz = nxz / np.maximum(np.linalg.norm(nxz, axis=1, keepdims=True), 1e-12)
    # the segment: the two projected vertices farthest apart
    d = np.stack([np.linalg.norm(xz[:, i] - xz[:, j], axis=1) for i, j in ((0, 1), (1, 2), (0, 2))], axis=1)
    pick = np.array([(0, 1), (1, 2), (0, 2)])[d.argmax(axis=1)]
    a = xz[np.arange(len(xz)), pick[:, 0]]
    b = xz[np.arange(len(xz)), pick[:, 1]]
    n = np.ceil(d.max(axis=1) / (0.25 * res)).astype(np.int64) + 1
    t = np.repeat(np.arange(len(a)), n)
    s = (np.arange(len(t)) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n - 1, n)
    p = a[t] + (b[t] - a[t]) * s[:, None] - 0.5 * res * nxz[t]
    cells = np.floor((p - origin) / res).astype(np.int64)[:, ::-1]
    # only cells whose centre projects onto the face (not the neighbours past its ends)
    ab = b[t] - a[t]
    u = np.einsum("ij,ij->i", origin + (cells[:, ::-1] + 0.5) * res - a[t], ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12)
    cells = cells[(u >= -1e-9) & (u <= 1 + 1e-9)]
    ok = (cells[:, 0] >= 0) & (cells[:, 0] < shape[0]) & (cells[:, 1] >= 0) & (cells[:, 1] < shape[1])
    return cells[ok]


def free_floor(vertices: np.ndarray, faces: np.ndarray, resolution: float, agent_height: float,
               floor_y: float | None = None, max_climb: float = 0.1,
               object_boxes: list[tuple] = ()) -> tuple[np.ndarray, np.ndarray, float]:
    """(free (nz, nx) bool, origin xz, floor height) of the open floor of one storey. `object_boxes`
    ((aabb_min, aabb_max) of annotated objects) block their whole footprint where they reach into the
    agent's height band, as the embedded world's grid does (the space under a chair is not a path)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    fy = floor_height(v, f) if floor_y is None else float(floor_y)
    tri = v[f]
    x0, z0 = tri[:, :, 0].min(), tri[:, :, 2].min()
    x1, z1 = tri[:, :, 0].max(), tri[:, :, 2].max()
    # cell corners on multiples of the resolution: grids of the same scene line up whatever its bounds
    origin = np.floor(np.array([x0, z0]) / resolution - 1e-9) * resolution
    shape = (int(np.ceil((z1 - origin[1]) / resolution)), int(np.ceil((x1 - origin[0]) / resolution)))
    cr = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    unit = cr / np.maximum(np.linalg.norm(cr, axis=1, keepdims=True), 1e-12)
    flat = np.abs(unit[:, 1]) >= VERTICAL
    band0, band1 = fy + max_climb, fy + agent_height
    iz, ix, y, up = _column_hits(tri[flat], origin, resolution, shape)
    floor = np.zeros(shape, dtype=bool)
    sel = up & (np.abs(y - fy) <= max_climb)
    floor[iz[sel], ix[sel]] = True
    blocked = np.zeros(shape, dtype=bool)
    sel = (y > band0) & (y < band1)
    blocked[iz[sel], ix[sel]] = True
    # inside a closed solid: the first surface above the band faces up (ties: up wins)
    above = y >= band1
    order = np.lexsort((~up[above], y[above], iz[above] * shape[1] + ix[above]))
    cell = (iz[above] * shape[1] + ix[above])[order]
    first = np.ones(len(cell), dtype=bool)
    first[1:] = cell[1:] != cell[:-1]
    inside = cell[first][up[above][order][first]]
    blocked.reshape(-1)[inside] = True
    wc = _wall_cells(tri[~flat], unit[~flat], origin, resolution, shape, band0, band1)
    blocked[wc[:, 0], wc[:, 1]] = True
    xc = origin[0] + (np.arange(shape[1]) + 0.5) * resolution
    zc = origin[1] + (np.arange(shape[0]) + 0.5) * resolution
    for lo, hi in object_boxes:
        if hi[1] > band0 and lo[1] < band1:
            blocked |= ((zc >= lo[2]) & (zc <= hi[2]))[:, None] & ((xc >= lo[0]) & (xc <= hi[0]))[None, :]
    return floor & ~blocked, origin, fy
