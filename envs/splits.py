"""Scene seed splits — the one place they are fixed. Disjoint by construction."""
from __future__ import annotations

SPLITS: dict[str, range] = {
    "train": range(0, 100_000),
    "val": range(100_000, 100_100),
    "test": range(200_000, 200_100),
}


def split_seeds(split: str, n: int | None = None) -> list[int]:
    """First `n` scene seeds of a split (all when n is None)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
    r = SPLITS[split]
    if n is not None and n > len(r):
        raise ValueError(f"split {split!r} has {len(r)} scenes, asked for {n}")
    return list(r if n is None else r[:n])


def split_of(seed: int) -> str:
    for name, r in SPLITS.items():
        if seed in r:
            return name
    raise ValueError(f"scene seed {seed} is in no split; see envs/splits.py for the ranges")
