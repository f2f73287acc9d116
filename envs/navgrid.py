"""Navigable occupancy grid in the floor plane (Habitat x, z), inflated by the agent radius.

Collisions, geodesic distances, view points and shortest paths all live here (scipy), not in
MuJoCo physics: Habitat's ObjectNav semantics only need "can the agent's disc stand here" and
"how far is it along the floor". Grid rows are z (increasing downwards in `to_image`), columns x.
Geodesics are Dijkstra on the 8-connected grid (no corner cutting), so they are >= euclidean and
overestimate the continuous shortest path by at most ~8%.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

_EIGHT = np.ones((3, 3), dtype=bool)


def grid_cells(xz: np.ndarray, origin: np.ndarray, resolution: float) -> np.ndarray:
    """(N, 2) world (x, z) -> (N, 2) (row iz, col ix) of a floor grid whose cell [0, 0] has its corner
    at `origin` (may be outside the grid). Every top-down grid here indexes cells this way."""
    p = np.floor((np.asarray(xz, dtype=np.float64).reshape(-1, 2) - origin) / resolution).astype(np.int64)
    return np.stack([p[:, 1], p[:, 0]], axis=1)


class NavGrid:
    def __init__(self, free: np.ndarray, origin_xz: tuple[float, float], resolution: float, agent_radius: float) -> None:
        """free: (nz, nx) bool, True where the floor is open (before inflation by the agent radius);
        origin_xz: world (x, z) of the corner of cell [0, 0]."""
        self.free = np.asarray(free, dtype=bool)
        self.shape = self.free.shape
        self.res = float(resolution)
        self.origin = np.asarray(origin_xz, dtype=np.float64)
        self._ox, self._oz = float(self.origin[0]), float(self.origin[1])  # scalar fast paths
        self.agent_radius = float(agent_radius)
        clearance = ndimage.distance_transform_edt(np.pad(self.free, 1))[1:-1, 1:-1] * self.res - 0.5 * self.res
        self.navigable = self.free & (clearance >= self.agent_radius)
        lab, n = ndimage.label(self.navigable, structure=_EIGHT)
        self._labels = lab
        self.largest_component = int(np.bincount(lab.ravel())[1:].argmax() + 1) if n else 0
        self._graph: csr_matrix | None = None
        self._fields: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._snap_idx: np.ndarray | None = None
        self._sample_cells: dict[bool, np.ndarray] = {}

    # ------------------------------------------------------------------ cells <-> world
    def cell_of(self, xz) -> tuple[int, int]:
        """(row iz, col ix) of the cell containing world point xz (may be out of the grid)."""
        # plain floats: the same IEEE operations as the array version, without numpy's overhead
        return math.floor((float(xz[1]) - self._oz) / self.res), math.floor((float(xz[0]) - self._ox) / self.res)

    def cells_of(self, xz: np.ndarray) -> np.ndarray:
        return grid_cells(xz, self.origin, self.res)

    def cell_centre(self, iz: int, ix: int) -> np.ndarray:
        return self.origin + (np.array([ix, iz], dtype=np.float64) + 0.5) * self.res

    def cell_centres(self, cells: np.ndarray) -> np.ndarray:
        cells = np.asarray(cells).reshape(-1, 2)
        return self.origin + (cells[:, ::-1].astype(np.float64) + 0.5) * self.res

    def _inside(self, iz: int, ix: int) -> bool:
        return 0 <= iz < self.shape[0] and 0 <= ix < self.shape[1]

    def _inside_cells(self, cells: np.ndarray) -> np.ndarray:
        """`_inside` for (K, 2) cells: a boolean mask."""
        return (cells[:, 0] >= 0) & (cells[:, 0] < self.shape[0]) & (cells[:, 1] >= 0) & (cells[:, 1] < self.shape[1])

    # ------------------------------------------------------------------ queries
    def is_navigable(self, xz) -> bool:
        iz, ix = self.cell_of(xz)
        return self._inside(iz, ix) and bool(self.navigable[iz, ix])

    def component_of(self, xz) -> int:
        iz, ix = self.cell_of(xz)
        return int(self._labels[iz, ix]) if self._inside(iz, ix) else 0

    def components_of(self, xz: np.ndarray) -> np.ndarray:
        """`component_of` for (K, 2) points: (K,) labels, 0 off the grid or off the navigable area."""
        cells = self.cells_of(xz)
        inside = self._inside_cells(cells)
        comp = np.zeros(len(cells), dtype=np.int64)
        comp[inside] = self._labels[cells[inside, 0], cells[inside, 1]]
        return comp

    def snap(self, xz) -> np.ndarray:
        """Centre of the nearest navigable cell (the cell's own centre if navigable)."""
        if self._snap_idx is None:
            _, self._snap_idx = ndimage.distance_transform_edt(~self.navigable, return_indices=True)
        iz, ix = self.cell_of(xz)
        iz, ix = int(np.clip(iz, 0, self.shape[0] - 1)), int(np.clip(ix, 0, self.shape[1] - 1))
        return self.cell_centre(int(self._snap_idx[0, iz, ix]), int(self._snap_idx[1, iz, ix]))

    def sample_navigable(self, rng: np.random.Generator, largest_component: bool = True) -> np.ndarray:
        """A random navigable cell centre (in the largest connected component by default)."""
        cells = self._sample_cells.get(bool(largest_component))
        if cells is None:  # cached: episode sampling draws up to 64 starts
            mask = self._labels == self.largest_component if largest_component else self.navigable
            cells = self._sample_cells[bool(largest_component)] = np.argwhere(mask)
        if len(cells) == 0:
            raise ValueError("the navigable grid is empty: the agent radius may be larger than every room")
        iz, ix = cells[int(rng.integers(len(cells)))]
        return self.cell_centre(int(iz), int(ix))

    def segment_free(self, a_xz, b_xz) -> bool:
        """True if every point of the segment a->b lies on navigable cells (sampled at res/2:
        n = ceil(|b - a| / (res/2)) + 1 points a + (b - a) * linspace(0, 1, n))."""
        # scalar loop (every env step calls this): the same float operations as the numpy form
        # a + (b - a) * np.linspace(0, 1, n), floor((p - origin) / res), ~10x faster for 10 points
        ax, az, bx, bz = float(a_xz[0]), float(a_xz[1]), float(b_xz[0]), float(b_xz[1])
        dx, dz = bx - ax, bz - az
        half = 0.5 * self.res
        q = math.sqrt(dx * dx + dz * dz) / half
        if abs(q - round(q)) < 1e-6:  # next to an integer the last bit decides n: ask numpy's norm
            q = float(np.linalg.norm(np.array([dx, dz]))) / half
        n = max(2, math.ceil(q) + 1)
        step = 1.0 / (n - 1)
        ox, oz, res = self._ox, self._oz, self.res
        nz, nx = self.shape
        nav = self.navigable
        for i in range(n):
            t = i * step if i < n - 1 else 1.0
            ix = math.floor((ax + dx * t - ox) / res)
            iz = math.floor((az + dz * t - oz) / res)
            if not (0 <= iz < nz and 0 <= ix < nx and nav[iz, ix]):
                return False
        return True

    # ------------------------------------------------------------------ geodesics
    def _build_graph(self) -> csr_matrix:
        nz, nx = self.shape
        nav = self.navigable
        idx = np.arange(nz * nx).reshape(nz, nx)
        src, dst, w = [], [], []
        for dz, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
            a = nav[max(0, -dz) : nz - max(0, dz), max(0, -dx) : nx - max(0, dx)]
            b = nav[max(0, dz) : nz - max(0, -dz), max(0, dx) : nx - max(0, -dx)]
            ok = a & b
            if dz and dx:  # no corner cutting: both orthogonal neighbours must be navigable too
                c1 = nav[max(0, dz) : nz - max(0, -dz), max(0, -dx) : nx - max(0, dx)]
                c2 = nav[max(0, -dz) : nz - max(0, dz), max(0, dx) : nx - max(0, -dx)]
                ok &= c1 & c2
            ia = idx[max(0, -dz) : nz - max(0, dz), max(0, -dx) : nx - max(0, dx)][ok]
            ib = idx[max(0, dz) : nz - max(0, -dz), max(0, dx) : nx - max(0, -dx)][ok]
            ww = self.res * (np.sqrt(2.0) if (dz and dx) else 1.0)
            src += [ia, ib]
            dst += [ib, ia]
            w += [np.full(len(ia), ww), np.full(len(ia), ww)]
        src, dst, w = np.concatenate(src), np.concatenate(dst), np.concatenate(w)
        return csr_matrix((w, (src, dst)), shape=(nz * nx, nz * nx))

    def _goal_cells(self, goals) -> np.ndarray:
        """Goal spec -> (K, 2) navigable cells. goals: (2,) xz point or (K, 2) xz points."""
        g = np.asarray(goals, dtype=np.float64).reshape(-1, 2)
        if len(g) == 0:
            raise ValueError("geodesic distance needs at least one goal point")
        cells = self.cells_of(g)
        inside = self._inside_cells(cells)
        ok = inside.copy()
        ok[inside] = self.navigable[cells[inside, 0], cells[inside, 1]]
        for k in np.flatnonzero(~ok):  # rare: goals off the navigable area snap to the nearest cell
            cells[k] = self.cell_of(self.snap(g[k]))
        return np.unique(cells, axis=0)

    def distance_field(self, goals) -> tuple[np.ndarray, np.ndarray]:
        """(distances (nz, nx) to the nearest goal, inf where unreachable; predecessor node ids
        pointing one step towards the goals). Cached per goal set (LRU of 16)."""
        cells = self._goal_cells(goals)
        key = cells.tobytes()
        if key in self._fields:
            self._fields.move_to_end(key)
            return self._fields[key]
        if self._graph is None:
            self._graph = self._build_graph()
        nodes = cells[:, 0] * self.shape[1] + cells[:, 1]
        dist, pred, _ = dijkstra(self._graph, directed=True, indices=nodes, min_only=True, return_predecessors=True)
        res = (dist.reshape(self.shape), pred)
        self._fields[key] = res
        if len(self._fields) > 16:
            self._fields.popitem(last=False)
        return res

    def geodesic_distance(self, a_xz, goals) -> float:
        """Shortest floor distance from a_xz to the nearest goal (xz point or (K, 2) points);
        inf if unreachable. a_xz off the navigable area is snapped to the nearest navigable cell."""
        dist, _ = self.distance_field(goals)
        return float(dist[self.start_cell(a_xz)])

    def start_cell(self, a_xz) -> tuple[int, int]:
        """The cell an agent at a_xz stands on for geodesics: its own cell if navigable, else the
        nearest navigable one. With a `distance_field` kept by the caller, `field[start_cell(p)]`
        is `geodesic_distance(p, goals)` without re-deriving the goal cells (hot paths)."""
        iz, ix = self.cell_of(a_xz)
        if not (self._inside(iz, ix) and self.navigable[iz, ix]):
            iz, ix = self.cell_of(self.snap(a_xz))
        return iz, ix

    def shortest_path(self, a_xz, goals, simplify: bool = True) -> np.ndarray:
        """(K, 2) xz waypoints from a_xz to the nearest goal cell centre (empty if unreachable).
        With simplify, intermediate cells are dropped while the straight segment stays navigable."""
        dist, pred = self.distance_field(goals)
        iz, ix = self.start_cell(a_xz)
        if not np.isfinite(dist[iz, ix]):
            return np.zeros((0, 2))
        node = iz * self.shape[1] + ix
        nodes = [node]
        while pred[node] >= 0:
            node = int(pred[node])
            nodes.append(node)
        cells = np.stack([np.asarray(nodes) // self.shape[1], np.asarray(nodes) % self.shape[1]], axis=1)
        pts = self.cell_centres(cells)
        a = np.asarray(a_xz, dtype=np.float64)[:2]
        if self.is_navigable(a):
            pts[0] = a
        if not simplify or len(pts) <= 2:
            return pts
        out = [pts[0]]
        i = 0
        while i < len(pts) - 1:  # greedy string pulling (line of sight on the grid)
            j = len(pts) - 1
            while j > i + 1 and not self.segment_free(pts[i], pts[j]):
                j -= 1
            out.append(pts[j])
            i = j
        return np.asarray(out)

    def to_image(self) -> np.ndarray:
        """(nz, nx) uint8 top-down map: 255 navigable, 128 open floor too close to obstacles, 0 blocked."""
        img = np.zeros(self.shape, dtype=np.uint8)
        img[self.free] = 128
        img[self.navigable] = 255
        return img


def navgrid_from_scene(scene, resolution: float, agent_radius: float) -> NavGrid:
    """Rasterise the scene's walkable rectangles minus object footprints (cell centres inside)."""
    x0, z0, x1, z1 = scene.bounds
    nx, nz = int(np.ceil((x1 - x0) / resolution)), int(np.ceil((z1 - z0) / resolution))
    xc = x0 + (np.arange(nx) + 0.5) * resolution
    zc = z0 + (np.arange(nz) + 0.5) * resolution
    free = np.zeros((nz, nx), dtype=bool)

    def mask(r):
        return ((zc >= r[1]) & (zc <= r[3]))[:, None] & ((xc >= r[0]) & (xc <= r[2]))[None, :]

    for r in scene.walkable_rects():
        free |= mask(r)
    for r in scene.obstacle_rects():
        free &= ~mask(r)
    return NavGrid(free, (x0, z0), resolution, agent_radius)
