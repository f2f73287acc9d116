"""Nav-grid collision on synthetic grids: world points to cells, inside/navigable tests, and the
segment check every step runs, compared with the numpy form its docstring states."""
from __future__ import annotations

import math

import numpy as np

from envs.navgrid import NavGrid, grid_cells


def _grid() -> NavGrid:
    free = np.zeros((12, 15), bool)
    free[1:11, 1:14] = True
    free[6, 3:12] = False  # a wall with gaps at both ends
    free[3, 8] = False  # a one-cell pillar
    return NavGrid(free, origin_xz=(-0.3, 0.2), resolution=0.1, agent_radius=0.0)


def test_grid_cells_floor_world_points_to_row_col():
    cells = grid_cells(np.array([[0.25, 0.05], [-0.01, 0.0], [0.0, -0.01], [0.95, 1.95]]), np.zeros(2), 0.1)
    np.testing.assert_array_equal(cells, [[0, 2], [0, -1], [-1, 0], [19, 9]])  # (iz, ix); floor, not round
    assert cells.dtype == np.int64
    np.testing.assert_array_equal(grid_cells([0.35, 0.55], np.array([0.1, 0.2]), 0.1), [[3, 2]])


def test_cell_of_is_the_array_version_for_single_points():
    g = _grid()
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1.0, 2.0, (300, 2))
    pts[:20] = np.round(pts[:20], 1)  # on cell borders
    np.testing.assert_array_equal(g.cells_of(pts), [g.cell_of(p) for p in pts])
    assert g.cell_of((-0.3, 0.2)) == (0, 0) and g.cell_of((-0.31, 0.19)) == (-1, -1)


def test_inside_and_navigable_at_the_grid_edges():
    g = _grid()
    nz, nx = g.shape
    cells = np.array([[0, 0], [nz - 1, nx - 1], [-1, 0], [0, -1], [nz, 0], [0, nx], [nz - 1, 0], [0, nx - 1]])
    want = [True, True, False, False, False, False, True, True]
    np.testing.assert_array_equal(g._inside_cells(cells), want)
    assert [g._inside(int(a), int(b)) for a, b in cells] == want
    centre = g.cell_centre
    assert g.is_navigable(centre(1, 1)) and g.is_navigable(centre(10, 13))
    assert not g.is_navigable(centre(0, 5)) and not g.is_navigable(centre(6, 5)) and not g.is_navigable(centre(3, 8))
    assert not g.is_navigable(centre(-1, 5)) and not g.is_navigable(centre(5, nx)) and not g.is_navigable(centre(nz, 5))


def _segment_free_numpy(g: NavGrid, a, b) -> bool:
    """The documented form: n = ceil(|b - a| / (res/2)) + 1 points a + (b - a) * linspace(0, 1, n)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = max(2, math.ceil(np.linalg.norm(b - a) / (0.5 * g.res)) + 1)
    cells = g.cells_of(a + (b - a) * np.linspace(0.0, 1.0, n)[:, None])
    inside = g._inside_cells(cells)
    return bool(inside.all() and g.navigable[cells[:, 0], cells[:, 1]].all())


def test_segment_free_equals_its_numpy_form():
    g = _grid()
    rng = np.random.default_rng(1)
    a = rng.uniform((-0.25, 0.25), (1.15, 1.35), (3000, 2))
    b = a + rng.normal(0.0, 0.2, (3000, 2))
    b[:200] = a[:200] + rng.choice([-1, 1], (200, 2)) * 0.05 * rng.integers(0, 8, (200, 1))  # exact multiples of res/2
    got = [g.segment_free(p, q) for p, q in zip(a, b)]
    want = [_segment_free_numpy(g, p, q) for p, q in zip(a, b)]
    assert got == want
    assert 0.2 < np.mean(got) < 0.8  # both outcomes are exercised
    # floor open up to the grid's edges, and end points exactly on cell borders
    free = np.ones((8, 9), bool)
    free[4, 2:7] = False
    edge = NavGrid(free, origin_xz=(-0.3, 0.2), resolution=0.1, agent_radius=0.0)
    lattice = edge.origin + 0.1 * rng.integers(-1, 10, (2000, 2, 2))
    for p, q in lattice:
        assert edge.segment_free(p, q) == _segment_free_numpy(edge, p, q), (p, q)


def test_segment_free_blocks_walls_pillars_and_leaving_the_grid():
    g = _grid()
    c = g.cell_centre
    assert g.segment_free(c(2, 2), c(2, 12))
    assert g.segment_free(c(4, 4), c(4, 4))  # standing still on the floor
    assert not g.segment_free(c(3, 2), c(3, 12))  # through the pillar
    assert not g.segment_free(c(4, 5), c(8, 5))  # through the wall
    assert g.segment_free(c(4, 2), c(8, 2))  # through the gap
    assert not g.segment_free(c(2, 2), c(2, 14))  # ends on a wall cell
    assert not g.segment_free(c(2, 2), (c(2, 2)[0], -1.0))  # leaves the grid
