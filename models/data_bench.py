"""`python -m v4s_agent.bench data [key=value ...]`: clip rendering rate of `executor=ray` with
`workers` workers against one local worker, side by side in one run.

Each round renders the same scenes twice into fresh folders: once with one local worker (in this
process), once with Ray (one task per scene). Rounds alternate the two, and which goes first, so load
changes on a shared machine hit both alike; the first round warms both up (world build, Ray worker start) and is reported but
not counted. `local_cpu_s_per_clip` is the CPU time per clip of the local runs (all threads of this
process, the software renderer's included): a rendering cost that does not depend on the load. Ray's own start is timed apart. Every round also checks that the two sets of shard
files are byte-identical.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from envs.config import parse_overrides


@dataclass
class DataBenchConfig:
    split: str = "train"
    scenes: int = 8  # one shard (one Ray task) per scene
    clips_per_scene: int = 8
    workers: int = 2
    rounds: int = 4  # the first is a warm-up
    ray_address: str = ""


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def bench_data(argv: list[str]) -> dict:
    from models.data import ClipGenConfig, generate
    from models.executor import import_ray, start_ray

    cfg = parse_overrides(DataBenchConfig, argv)
    if cfg.rounds < 2:
        raise ValueError("rounds must be >= 2 (the first round is a warm-up)")
    ray = import_ray()
    load_before = _load()
    t0 = time.perf_counter()
    start_ray(cfg.ray_address, cfg.workers)
    ray_start = time.perf_counter() - t0
    rates: dict[str, list[float]] = {"local": [], "ray": []}
    cpu_per_clip: list[float] = []  # this process's CPU time per clip in the local runs (render threads included)
    identical = True
    loads: list[float] = []  # 1-minute load average after each timed round
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(cfg.rounds):
                shards = {}
                arms = [("local", {"num_workers": 1}), ("ray", {"executor": "ray", "num_workers": cfg.workers})]
                for name, kw in arms[:: 1 if r % 2 else -1]:  # ABBA order: neither arm always runs first
                    out = Path(tmp) / f"{r}-{name}"
                    cpu0 = time.process_time()
                    m = generate(ClipGenConfig(out=str(out), split=cfg.split, scenes=cfg.scenes,
                                               clips_per_scene=cfg.clips_per_scene, shard_clips=cfg.clips_per_scene,
                                               **kw), progress=False)
                    rates[name].append(m["clips"] / m["seconds_this_run"])
                    if name == "local" and r > 0:
                        cpu_per_clip.append((time.process_time() - cpu0) / m["clips"])
                    shards[name] = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "manifest.json"}
                identical &= shards["local"] == shards["ray"]
                if r > 0:
                    loads.append(_load()[0])
                print(f"round {r}{' (warm-up)' if r == 0 else ''}: local {rates['local'][-1]:.2f} clips/s, "
                      f"ray x{cfg.workers} {rates['ray'][-1]:.2f} clips/s, load {_load()}", file=sys.stderr, flush=True)
    finally:
        ray.shutdown()
    ratios = [b / a for a, b in zip(rates["local"][1:], rates["ray"][1:])]
    se = statistics.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else float("nan")
    return {"clips_per_run": int(cfg.scenes * cfg.clips_per_scene), "workers": cfg.workers,
            "local_clips_per_s": round(statistics.median(rates["local"][1:]), 3),
            "ray_clips_per_s": round(statistics.median(rates["ray"][1:]), 3),
            "ratio_median": round(statistics.median(ratios), 3), "ratio_mean": round(statistics.mean(ratios), 3),
            "ratio_se": round(se, 3), "local_cpu_s_per_clip": round(statistics.median(cpu_per_clip), 4), "ratios": [round(x, 3) for x in ratios], "identical_shards": identical,
            "ray_start_s": round(ray_start, 2), "loadavg_before": load_before, "loadavg_after": _load(),
            "load_1min_per_round": loads,
            "cpus": os.cpu_count()}
