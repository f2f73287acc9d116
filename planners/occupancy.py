"""Top-down occupancy map built from depth + pose, and its frontiers (Yamauchi 1997).

The `explore` baseline needs what a real frontier explorer has: a map of what the agent has seen,
so it can head for the nearest boundary between known floor and unknown space. Each depth frame is
back-projected into the world; points near the floor mark cells free, points between `obstacle_min`
and `obstacle_max` above it mark cells occupied (occupied wins). Paths are planned on the known free
floor only (an `envs.navgrid.NavGrid`, scipy), inflated by the agent radius.
Nothing here reads simulator ground truth: depth and pose are what any backend (Habitat, a rig with
odometry) provides.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from envs.geometry import backproject_depth, pose_to_matrix
from envs.navgrid import NavGrid, grid_cells
from envs.types import Pose

UNKNOWN, FREE, OCCUPIED = 0, 1, 2


@dataclass
class MapConfig:
    resolution: float = 0.1  # metres per cell
    size_m: float = 30.0  # square extent centred on the first pose
    max_range: float = 5.0  # metres of depth used (far floor is sparse and grazing)
    floor_tolerance: float = 0.1  # points within this of the floor height are floor
    obstacle_min: float = 0.15  # points this far above the floor up to obstacle_max block the agent
    obstacle_max: float = 1.5
    stride: int = 2  # use every stride-th pixel of the depth image


class OccupancyMap:
    """(n, n) grid of UNKNOWN / FREE / OCCUPIED cells in the floor plane (Habitat x, z), from hit
    counts: a cell any obstacle point fell into is OCCUPIED, else FREE if any floor point did."""

    def __init__(self, cfg: MapConfig, centre_xz: tuple[float, float], floor_y: float) -> None:
        self.cfg = cfg
        n = int(np.ceil(cfg.size_m / cfg.resolution))
        self.floor_hits = np.zeros((n, n), dtype=np.int32)
        self.obstacle_hits = np.zeros((n, n), dtype=np.int32)
        self.origin = np.asarray(centre_xz, dtype=np.float64) - 0.5 * n * cfg.resolution
        self.floor_y = float(floor_y)

    @property
    def state(self) -> np.ndarray:
        s = np.where(self.floor_hits > 0, FREE, UNKNOWN).astype(np.uint8)
        s[self.obstacle_hits > 0] = OCCUPIED
        return s

    def cells_of(self, xz: np.ndarray) -> np.ndarray:
        """(N, 2) world xz -> (N, 2) (row iz, col ix), the same cells as the NavGrid it makes."""
        return grid_cells(xz, self.origin, self.cfg.resolution)

    def _add(self, hits: np.ndarray, xz: np.ndarray) -> None:
        c = self.cells_of(xz)
        n = hits.shape[0]
        c = c[(c >= 0).all(axis=1) & (c < n).all(axis=1)]
        np.add.at(hits, (c[:, 0], c[:, 1]), 1)

    def update(self, depth: np.ndarray, pose: Pose, K: np.ndarray, agent_radius: float = 0.0) -> None:
        """Add one depth frame seen from `pose` (camera-to-world, envs.geometry conventions)."""
        s = self.cfg.stride
        d = depth[::s, ::s].reshape(-1)
        pts = backproject_depth(depth, K)[::s, ::s].reshape(-1, 3)
        pts = pts[np.isfinite(d) & (d > 0) & (d <= self.cfg.max_range)]
        T = pose_to_matrix(pose)
        world = pts @ T[:3, :3].T + T[:3, 3]
        h = world[:, 1] - self.floor_y
        blocking = (h >= self.cfg.obstacle_min) & (h <= self.cfg.obstacle_max)
        self._add(self.floor_hits, world[np.abs(h) <= self.cfg.floor_tolerance][:, [0, 2]])
        eye = pose.xyz[[0, 2]]
        self._add(self.floor_hits, self._free_rays(eye, world[blocking][:, [0, 2]]))
        self._add(self.obstacle_hits, world[blocking][:, [0, 2]])
        # the agent stands here, so the floor under it is free (it may be hidden below the view)
        r = max(agent_radius, self.cfg.resolution)
        g = np.arange(-r, r + 1e-9, 0.5 * self.cfg.resolution)
        dx, dz = np.meshgrid(g, g)
        inside = dx**2 + dz**2 <= r * r
        self._add(self.floor_hits, eye + np.stack([dx[inside], dz[inside]], 1))

    def mark_bump(self, pose: Pose, reach: float, half_width: float) -> None:
        """A forward step from `pose` did not move the agent: something the depth did not show blocks
        the strip `reach` ahead (habitat explorers keep such a collision map too)."""
        fwd = pose.forward[[0, 2]]
        side = np.array([fwd[1], -fwd[0]])
        lateral = np.arange(-half_width, half_width + 1e-9, 0.5 * self.cfg.resolution)
        xz = pose.xyz[[0, 2]] + reach * fwd + lateral[:, None] * side
        self._add(self.obstacle_hits, xz)

    def _free_rays(self, eye_xz: np.ndarray, hit_xz: np.ndarray) -> np.ndarray:
        """Floor points on the lines of sight from the camera to the obstacles it sees: the floor in
        front of an obstacle is open, also where it is too close to be in view (below the image)."""
        if len(hit_xz) == 0:
            return np.zeros((0, 2))
        step = 0.5 * self.cfg.resolution
        d = hit_xz - eye_xz
        dist = np.linalg.norm(d, axis=1)
        t = np.arange(0.0, float(dist.max()), step)
        pts = eye_xz + d[:, None, :] * (t[None, :, None] / np.maximum(dist, 1e-9)[:, None, None])
        before = t[None, :] < (dist[:, None] - self.cfg.resolution)  # stop one cell short of the hit
        return pts[before]

    def navgrid(self, agent_radius: float) -> NavGrid:
        """Known free floor as a NavGrid (unknown is not walkable: pessimistic planning)."""
        return NavGrid(self.state == FREE, (float(self.origin[0]), float(self.origin[1])), self.cfg.resolution, agent_radius)

    def _frontier_labels(self, min_cells: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels of 8-connected clusters of FREE cells 4-adjacent to UNKNOWN ones, ids of the
        clusters at least `min_cells` big)."""
        state = self.state
        edge = (state == FREE) & ndimage.binary_dilation(state == UNKNOWN, structure=ndimage.generate_binary_structure(2, 1))
        lab, _ = ndimage.label(edge, structure=np.ones((3, 3), dtype=bool))
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0  # background
        return lab, np.flatnonzero(sizes >= min_cells)

    def frontier_mask(self, min_cells: int = 3) -> np.ndarray:
        """(n, n) bool: the cells of every frontier cluster (see `frontiers`)."""
        lab, keep = self._frontier_labels(min_cells)
        return np.isin(lab, keep)

    def frontiers(self, min_cells: int = 3) -> list[np.ndarray]:
        """Frontier clusters: FREE cells 4-adjacent to UNKNOWN ones, 8-connected, at least `min_cells`
        big. Each is an (N, 2) array of (iz, ix) cells."""
        lab, keep = self._frontier_labels(min_cells)
        return [np.argwhere(lab == k) for k in keep]

    def explored_area(self) -> float:
        """Square metres of floor known free."""
        return float((self.state == FREE).sum()) * self.cfg.resolution**2

    def to_image(self) -> np.ndarray:
        """(n, n) uint8: 255 free, 0 occupied, 128 unknown (for viewers)."""
        state = self.state
        img = np.full(state.shape, 128, dtype=np.uint8)
        img[state == FREE] = 255
        img[state == OCCUPIED] = 0
        return img
