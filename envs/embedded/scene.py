"""Seeded procedural apartments: 1-5 rooms on a grid joined by doorways, textured walls/floors,
furniture placed against walls (and table sets in the middle), each object an instance with a
category. Everything is in the Habitat world frame (Y-up, floor at y=0); the MuJoCo model and the
.glb export are both built from the `Part` list, so they cannot disagree.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from envs.embedded.categories import CATEGORIES
from envs.embedded.config import WorldConfig
from envs.embedded.objects import Part, build_object
from envs.embedded.textures import FLOOR_KINDS, WALL_KINDS, make_texture

WALL_T = 0.1  # wall thickness (m)
WALL_H = 2.5  # ceiling height (m)
DOOR_H = 2.1
FLOOR_T = 0.05

_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}

# Room contents: (category, probability, kind) in placement order; "table_set" = table + chairs.
_ROOM_CONTENTS: dict[str, list[tuple[str, float]]] = {
    "living room": [("sofa", 1.0), ("tv_monitor", 1.0), ("coffee_table", 0.6), ("plant", 0.8), ("lamp", 0.5),
                    ("bookshelf", 0.5), ("chair", 0.5), ("cabinet", 0.3)],
    "bedroom": [("bed", 1.0), ("cabinet", 0.7), ("plant", 0.5), ("lamp", 0.5), ("tv_monitor", 0.3), ("chair", 0.4),
                ("bookshelf", 0.3)],
    "kitchen": [("refrigerator", 1.0), ("table_set", 1.0), ("cabinet", 0.8), ("cabinet", 0.5), ("plant", 0.5)],
    "bathroom": [("toilet", 1.0), ("bathtub", 0.7), ("cabinet", 0.5), ("plant", 0.4)],
    "office": [("table_set", 1.0), ("bookshelf", 0.8), ("plant", 0.6), ("tv_monitor", 0.4), ("lamp", 0.4),
               ("sofa", 0.3)],
    "studio": [("bed", 1.0), ("sofa", 1.0), ("tv_monitor", 1.0), ("plant", 0.8), ("table_set", 0.6), ("lamp", 0.4),
               ("cabinet", 0.4), ("chair", 0.4)],
}


@dataclass
class Room:
    name: str
    kind: str
    cell: tuple[int, int]  # (row, col) in the layout grid
    x0: float
    z0: float
    x1: float
    z1: float  # cell rectangle on the wall centre lines; the walkable interior is WALL_T/2 inside

    @property
    def interior(self) -> tuple[float, float, float, float]:
        h = WALL_T / 2
        return (self.x0 + h, self.z0 + h, self.x1 - h, self.z1 - h)

    @property
    def centre_xz(self) -> np.ndarray:
        return np.array([(self.x0 + self.x1) / 2, (self.z0 + self.z1) / 2])


@dataclass
class Door:
    rooms: tuple[int, int]
    centre_xz: np.ndarray
    along: str  # "x" (door in a wall running along x) or "z"
    width: float

    def rect(self, depth: float = WALL_T) -> tuple[float, float, float, float]:
        """Floor rectangle (x0, z0, x1, z1) of the opening, `depth` across the wall."""
        cx, cz = self.centre_xz
        if self.along == "x":
            return (cx - self.width / 2, cz - depth / 2, cx + self.width / 2, cz + depth / 2)
        return (cx - depth / 2, cz - self.width / 2, cx + depth / 2, cz + self.width / 2)


@dataclass
class SceneObject:
    instance_id: int
    category: str
    position: np.ndarray  # (3,) Habitat world, centre of the bounding box
    aabb_min: np.ndarray
    aabb_max: np.ndarray
    room: str
    colour: str
    yaw: float = 0.0

    def __post_init__(self) -> None:
        if self.instance_id < 1:
            raise ValueError(f"instance ids start at 1 (0 = no object), got {self.instance_id}")


@dataclass
class SceneSpec:
    seed: int
    rooms: list[Room]
    doors: list[Door]
    objects: list[SceneObject]
    parts: list[Part]
    bounds: tuple[float, float, float, float]  # (xmin, zmin, xmax, zmax) floor-plane extent incl. walls
    textures: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (H, W, 3) uint8
    materials: dict[str, tuple[str, float]] = field(default_factory=dict)  # name -> (texture, repeats per metre)

    def scene_phrase(self) -> str:
        n = len(self.rooms)
        return f"a {_NUMBER_WORDS[n]}-room apartment"

    def object(self, instance_id: int) -> SceneObject:
        for o in self.objects:
            if o.instance_id == instance_id:
                return o
        raise KeyError(f"scene {self.seed} has no instance {instance_id}; ids: {[o.instance_id for o in self.objects]}")

    def instances_of(self, category: str) -> list[SceneObject]:
        return [o for o in self.objects if o.category == category]

    @property
    def categories_present(self) -> list[str]:
        return [c for c in CATEGORIES if any(o.category == c for o in self.objects)]

    def walkable_rects(self) -> list[tuple[float, float, float, float]]:
        """Floor rectangles the agent may stand on (room interiors + door openings)."""
        return [r.interior for r in self.rooms] + [d.rect(WALL_T + 0.02) for d in self.doors]

    def obstacle_rects(self) -> list[tuple[float, float, float, float]]:
        return [(o.aabb_min[0], o.aabb_min[2], o.aabb_max[0], o.aabb_max[2]) for o in self.objects]


# ----------------------------------------------------------------------------------------- layout
def _layout(rng: np.random.Generator) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
    n = int(rng.choice([1, 2, 3, 4, 5], p=[0.1, 0.2, 0.3, 0.25, 0.15]))
    if n == 1:
        rows, cols = 1, 1
    elif n == 2:
        rows, cols = 1, 2
    elif n == 3:
        rows, cols = (1, 3) if rng.uniform() < 0.4 else (2, 2)
    elif n == 4:
        rows, cols = 2, 2
    else:
        rows, cols = 2, 3
    cells = [(i, j) for i in range(rows) for j in range(cols)]
    corners = [c for c in [(0, 0), (0, cols - 1), (rows - 1, 0), (rows - 1, cols - 1)] if c in cells]
    corners = list(dict.fromkeys(corners))
    for _ in range(rows * cols - n):  # dropping grid corners keeps the rest connected
        c = corners.pop(int(rng.integers(len(corners))))
        cells.remove(c)
    if n == 1:
        xs = np.array([0.0, rng.uniform(4.5, 6.0)])
        zs = np.array([0.0, rng.uniform(4.5, 6.0)])
    else:
        xs = np.concatenate([[0.0], np.cumsum(rng.uniform(3.2, 5.0, size=cols))])
        zs = np.concatenate([[0.0], np.cumsum(rng.uniform(3.2, 5.0, size=rows))])
    return cells, xs, zs


def _room_kinds(n: int, rng: np.random.Generator) -> list[str]:
    if n == 1:
        return ["studio"]
    if n == 2:
        return ["living room", str(rng.choice(["bedroom", "bathroom", "kitchen"]))]
    kinds = ["living room", "bedroom", "bathroom", "kitchen", str(rng.choice(["office", "bedroom"]))][:n]
    return kinds


class _Find:  # union-find for the random spanning tree of doors
    def __init__(self, n: int) -> None:
        self.p = list(range(n))

    def __call__(self, a: int) -> int:
        while self.p[a] != a:
            self.p[a] = self.p[self.p[a]]
            a = self.p[a]
        return a


def _rect_overlap(a, b, gap: float = 0.0) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


# ----------------------------------------------------------------------------------- furnishing
class _RoomPlacer:
    """Places furniture in one room, keeping the door zones clear and the room connected."""

    RES = 0.05

    def __init__(self, room: Room, doors: list[Door], agent_radius: float, rng: np.random.Generator) -> None:
        self.room, self.rng, self.radius = room, rng, agent_radius
        self.ix0, self.iz0, self.ix1, self.iz1 = room.interior
        self.keep_clear: list[tuple[float, float, float, float]] = []
        self.door_points: list[np.ndarray] = []
        for d in doors:
            cx, cz = d.centre_xz
            if d.along == "x":  # wall along x -> room is above or below
                sgn = 1.0 if cz <= room.z0 + 1e-6 else -1.0
                zz = [cz, cz + sgn * 1.1]
                self.keep_clear.append((cx - d.width / 2 - 0.2, min(zz), cx + d.width / 2 + 0.2, max(zz)))
                self.door_points.append(np.array([cx, cz + sgn * 0.35]))
            else:
                sgn = 1.0 if cx <= room.x0 + 1e-6 else -1.0
                xx = [cx, cx + sgn * 1.1]
                self.keep_clear.append((min(xx), cz - d.width / 2 - 0.2, max(xx), cz + d.width / 2 + 0.2))
                self.door_points.append(np.array([cx + sgn * 0.35, cz]))
        self.placed: list[tuple[float, float, float, float]] = []
        nx = int(np.ceil((self.ix1 - self.ix0) / self.RES))
        nz = int(np.ceil((self.iz1 - self.iz0) / self.RES))
        self.shape = (nz, nx)
        zc = self.iz0 + (np.arange(nz) + 0.5) * self.RES
        xc = self.ix0 + (np.arange(nx) + 0.5) * self.RES
        self.zc, self.xc = zc, xc
        self.occ = np.zeros(self.shape, dtype=bool)
        if not self.door_points:  # single room: keep its centre reachable instead
            self.door_points.append(room.centre_xz)

    def _mask(self, r) -> np.ndarray:
        mz = (self.zc >= r[1]) & (self.zc <= r[3])
        mx = (self.xc >= r[0]) & (self.xc <= r[2])
        return mz[:, None] & mx[None, :]

    def _connected_ok(self, occ: np.ndarray) -> bool:
        free = ~occ
        free = np.pad(free, 1, constant_values=False)  # walls around the room
        clear = ndimage.distance_transform_edt(free)[1:-1, 1:-1] * self.RES > self.radius + 0.03
        lab, n = ndimage.label(clear)
        if n == 0:
            return False
        ids = set()
        for p in self.door_points:
            iz = int(np.clip((p[1] - self.iz0) / self.RES, 0, self.shape[0] - 1))
            ix = int(np.clip((p[0] - self.ix0) / self.RES, 0, self.shape[1] - 1))
            win = lab[max(0, iz - 3) : iz + 4, max(0, ix - 3) : ix + 4]
            v = win[win > 0]
            if v.size == 0:
                return False
            ids.add(int(np.bincount(v).argmax()))
        if len(ids) != 1:
            return False
        # the connected free area must stay a decent share of the room
        return (lab == ids.pop()).sum() > 0.3 * clear.size

    def try_rects(self, rects: list[tuple[float, float, float, float]], gap: float) -> bool:
        for r in rects:
            if r[0] < self.ix0 - 1e-6 or r[1] < self.iz0 - 1e-6 or r[2] > self.ix1 + 1e-6 or r[3] > self.iz1 + 1e-6:
                return False
            if any(_rect_overlap(r, k) for k in self.keep_clear):
                return False
            if any(_rect_overlap(r, p, gap) for p in self.placed):
                return False
        occ = self.occ.copy()
        for r in rects:
            occ |= self._mask(r)
        if not self._connected_ok(occ):
            return False
        self.occ = occ
        self.placed.extend(rects)
        return True

    def wall_pose(self, hx: float, hz: float) -> tuple[np.ndarray, float, tuple[float, float, float, float]]:
        """A random pose with the object's back against a wall: (xz, yaw, footprint rect)."""
        side = int(self.rng.integers(4))
        gap = 0.02
        if side == 0:  # north wall (z = iz0), facing +z
            yaw, wx, wz = 0.0, hx, hz
            x = self.rng.uniform(self.ix0 + wx, self.ix1 - wx) if self.ix1 - self.ix0 > 2 * wx else np.nan
            z = self.iz0 + wz + gap
        elif side == 1:  # south wall, facing -z
            yaw, wx, wz = np.pi, hx, hz
            x = self.rng.uniform(self.ix0 + wx, self.ix1 - wx) if self.ix1 - self.ix0 > 2 * wx else np.nan
            z = self.iz1 - wz - gap
        elif side == 2:  # west wall (x = ix0), facing +x
            yaw, wx, wz = np.pi / 2, hz, hx
            x = self.ix0 + wx + gap
            z = self.rng.uniform(self.iz0 + wz, self.iz1 - wz) if self.iz1 - self.iz0 > 2 * wz else np.nan
        else:  # east wall, facing -x
            yaw, wx, wz = -np.pi / 2, hz, hx
            x = self.ix1 - wx - gap
            z = self.rng.uniform(self.iz0 + wz, self.iz1 - wz) if self.iz1 - self.iz0 > 2 * wz else np.nan
        return np.array([x, z]), yaw, (x - wx, z - wz, x + wx, z + wz)


def _footprint_rect(xz: np.ndarray, yaw: float, hx: float, hz: float) -> tuple[float, float, float, float]:
    c, s = abs(np.cos(yaw)), abs(np.sin(yaw))
    wx, wz = c * hx + s * hz, s * hx + c * hz
    return (xz[0] - wx, xz[1] - wz, xz[0] + wx, xz[1] + wz)


def _furnish(
    room: Room, doors: list[Door], rng: np.random.Generator, cfg: WorldConfig, next_id: list[int]
) -> tuple[list[SceneObject], list[Part]]:
    placer = _RoomPlacer(room, doors, cfg.agent_radius, rng)
    objects: list[SceneObject] = []
    parts: list[Part] = []

    def add(category: str, builder, variant: str, xz: np.ndarray, yaw: float) -> None:
        iid = next_id[0]
        next_id[0] += 1
        ps = builder.place(xz, yaw, iid)
        lo = np.min([p.aabb()[0] for p in ps], axis=0)
        hi = np.max([p.aabb()[1] for p in ps], axis=0)
        objects.append(SceneObject(iid, category, (lo + hi) / 2, lo, hi, room.name, variant, float(yaw)))
        parts.extend(ps)

    for item, prob in _ROOM_CONTENTS[room.kind]:
        if rng.uniform() >= prob:
            continue
        if item == "table_set":
            b, var = build_object("table", rng)
            hx, hz = b.footprint()
            nchairs = int(rng.integers(2, 5))
            chairs = [build_object("chair", rng, variant=str(rng.choice(["blue", "light wood", "black"]))) for _ in range(nchairs)]
            for _ in range(40):
                xz = np.array([rng.uniform(placer.ix0 + 1.0, placer.ix1 - 1.0), rng.uniform(placer.iz0 + 1.0, placer.iz1 - 1.0)])
                if not np.all(np.isfinite(xz)) or placer.ix1 - placer.ix0 < 2.2 or placer.iz1 - placer.iz0 < 2.2:
                    break
                yaw = float(rng.choice([0.0, np.pi / 2]))
                rects = [_footprint_rect(xz, yaw, hx, hz)]
                # chairs around the table, each facing it (chair front = local +z)
                slots = [(0.0, hz + 0.12, np.pi), (0.0, -hz - 0.12, 0.0), (hx + 0.12, 0.0, -np.pi / 2), (-hx - 0.12, 0.0, np.pi / 2)]
                cposes = []
                for k, (cb, cvar) in enumerate(chairs):
                    lx, lz, cyaw = slots[k]
                    chx, chz = cb.footprint()
                    off = np.array([lx + np.sign(lx) * chz, lz + np.sign(lz) * chz])
                    c, s = np.cos(yaw), np.sin(yaw)
                    wxz = xz + np.array([c * off[0] + s * off[1], -s * off[0] + c * off[1]])
                    cposes.append((cb, cvar, wxz, yaw + cyaw))
                    rects.append(_footprint_rect(wxz, yaw + cyaw, chx, chz))
                if placer.try_rects(rects, gap=0.5):
                    add("table", b, var, xz, yaw)
                    for cb, cvar, wxz, cyaw in cposes:
                        add("chair", cb, cvar, wxz, cyaw)
                    break
            continue
        category, kind = ("table", "coffee") if item == "coffee_table" else (item, "")
        b, var = build_object(category, rng, kind=kind)
        hx, hz = b.footprint()
        for _ in range(30):
            if kind == "coffee":  # in front of the sofa area: anywhere away from walls
                if placer.ix1 - placer.ix0 < 2.4 or placer.iz1 - placer.iz0 < 2.4:
                    break
                xz = np.array([rng.uniform(placer.ix0 + 1.0, placer.ix1 - 1.0), rng.uniform(placer.iz0 + 1.0, placer.iz1 - 1.0)])
                yaw = float(rng.choice([0.0, np.pi / 2]))
                rect, gap = _footprint_rect(xz, yaw, hx, hz), 0.45
            else:
                xz, yaw, rect = placer.wall_pose(hx, hz)
                gap = 0.05
                if not np.all(np.isfinite(xz)):
                    continue
            if placer.try_rects([rect], gap=gap):
                add(category, b, var, xz, yaw)
                break
    return objects, parts


# ------------------------------------------------------------------------------------ structure
def _structure(rooms: list[Room], doors: list[Door], cells, xs, zs, rng) -> tuple[list[Part], dict, dict]:
    parts: list[Part] = []
    textures: dict[str, np.ndarray] = {}
    materials: dict[str, tuple[str, float]] = {}
    I3 = np.eye(3)
    white = (1.0, 1.0, 1.0)
    cell_room = {r.cell: k for k, r in enumerate(rooms)}
    wall_mat: dict[int, str] = {}
    for k, r in enumerate(rooms):
        fk = {"bathroom": "tiles", "kitchen": str(rng.choice(["tiles", "wood"]))}.get(r.kind, str(rng.choice(FLOOR_KINDS)))
        wk = {"bathroom": str(rng.choice(["plaster", "panels"]))}.get(r.kind, str(rng.choice(WALL_KINDS)))
        textures[f"floor{k}"] = make_texture(fk, rng)
        textures[f"wall{k}"] = make_texture(wk, rng)
        materials[f"floor{k}"] = (f"floor{k}", {"tiles": 0.8, "carpet": 0.7}.get(fk, 0.5))
        materials[f"wall{k}"] = (f"wall{k}", {"stripes": 0.8, "dots": 1.0}.get(wk, 0.6))
        wall_mat[k] = f"wall{k}"
        cx, cz = r.centre_xz
        hx, hz = (r.x1 - r.x0) / 2, (r.z1 - r.z0) / 2
        parts.append(Part("box", np.array([cx, -FLOOR_T / 2, cz]), np.array([hx, FLOOR_T / 2, hz]), I3, white, f"floor{k}"))
        # plain ceiling (no texture): it fills the top of the frame and textures cost fill rate
        parts.append(Part("box", np.array([cx, WALL_H + 0.025, cz]), np.array([hx, 0.025, hz]), I3, (0.93, 0.93, 0.9)))

    door_on = {}
    for d in doors:
        door_on[tuple(sorted(d.rooms))] = d
    h = WALL_T / 2

    def wall_line(along: str, fixed: float, a: float, b: float, side_rooms: tuple[int | None, int | None]) -> None:
        """Wall on the line (x = fixed if along == 'z', z = fixed if along == 'x') from a to b;
        side_rooms = (room on the low side, room on the high side), one half-thick box per room side."""
        d = door_on.get(tuple(sorted(r for r in side_rooms if r is not None))) if None not in side_rooms else None
        spans = [(a - h, b + h, 0.0, WALL_H)]
        if d is not None:
            c = d.centre_xz[0] if along == "x" else d.centre_xz[1]
            spans = [(a - h, c - d.width / 2, 0.0, WALL_H), (c + d.width / 2, b + h, 0.0, WALL_H),
                     (c - d.width / 2, c + d.width / 2, DOOR_H, WALL_H)]
        for sgn, rid in zip((-1, 1), side_rooms):
            if rid is None:
                continue
            for s0, s1, y0, y1 in spans:
                mid, half = (s0 + s1) / 2, (s1 - s0) / 2
                off = fixed + sgn * h / 2
                if along == "x":
                    c, hh = np.array([mid, (y0 + y1) / 2, off]), np.array([half, (y1 - y0) / 2, h / 2])
                else:
                    c, hh = np.array([off, (y0 + y1) / 2, mid]), np.array([h / 2, (y1 - y0) / 2, half])
                parts.append(Part("box", c, hh, I3, white, wall_mat[rid]))

    rows, cols = len(zs) - 1, len(xs) - 1
    for j in range(cols + 1):  # lines x = xs[j], walls run along z
        for i in range(rows):
            left, right = cell_room.get((i, j - 1)), cell_room.get((i, j))
            if left is None and right is None:
                continue
            wall_line("z", xs[j], zs[i], zs[i + 1], (left, right))
    for i in range(rows + 1):  # lines z = zs[i], walls run along x
        for j in range(cols):
            up, down = cell_room.get((i - 1, j)), cell_room.get((i, j))
            if up is None and down is None:
                continue
            wall_line("x", zs[i], xs[j], xs[j + 1], (up, down))
    return parts, textures, materials


def generate_scene(seed: int, cfg: WorldConfig | None = None) -> SceneSpec:
    """The apartment of scene seed `seed` (deterministic; same seed -> identical spec)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"scene seed must be a non-negative int, got {seed!r}; see envs/splits.py for the split ranges")
    cfg = cfg or WorldConfig()
    rng = np.random.default_rng([int(seed), 0x5EED])
    cells, xs, zs = _layout(rng)
    kinds = _room_kinds(len(cells), rng)
    order = rng.permutation(len(cells))
    rooms: list[Room] = []
    for k, ci in enumerate(order):
        i, j = cells[ci]
        rooms.append(Room(kinds[k], kinds[k], (i, j), xs[j], zs[i], xs[j + 1], zs[i + 1]))
    rooms.sort(key=lambda r: r.cell)
    # doors: random spanning tree over adjacent rooms, plus sometimes one extra loop
    idx = {r.cell: k for k, r in enumerate(rooms)}
    edges = [(idx[(i, j)], idx[(i + di, j + dj)]) for (i, j) in idx for di, dj in ((0, 1), (1, 0)) if (i + di, j + dj) in idx]
    edges = [edges[e] for e in rng.permutation(len(edges))]
    find = _Find(len(rooms))
    chosen = []
    for a, b in edges:
        if find(a) != find(b):
            find.p[find(a)] = find(b)
            chosen.append((a, b))
        elif rng.uniform() < 0.3:
            chosen.append((a, b))
    doors: list[Door] = []
    for a, b in chosen:
        ra, rb = rooms[a], rooms[b]
        w = float(rng.uniform(0.9, 1.1))
        if ra.cell[0] == rb.cell[0]:  # same row -> shared vertical wall x = ra.x1, door runs along z
            lo, hi = max(ra.z0, rb.z0), min(ra.z1, rb.z1)
            c = rng.uniform(lo + 0.35 + w / 2, hi - 0.35 - w / 2)
            doors.append(Door((a, b), np.array([ra.x1, c]), "z", w))
        else:
            lo, hi = max(ra.x0, rb.x0), min(ra.x1, rb.x1)
            c = rng.uniform(lo + 0.35 + w / 2, hi - 0.35 - w / 2)
            doors.append(Door((a, b), np.array([c, ra.z1]), "x", w))
    parts, textures, materials = _structure(rooms, doors, cells, xs, zs, rng)
    objects: list[SceneObject] = []
    next_id = [1]
    for k, r in enumerate(rooms):
        rdoors = [d for d in doors if k in d.rooms]
        objs, ps = _furnish(r, rdoors, rng, cfg, next_id)
        objects += objs
        parts += ps
    bounds = (float(xs[0] - WALL_T), float(zs[0] - WALL_T), float(xs[-1] + WALL_T), float(zs[-1] + WALL_T))
    return SceneSpec(int(seed), rooms, doors, objects, parts, bounds, textures, materials)
