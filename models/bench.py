"""`python -m v4s_agent.bench generate [key=value ...]`: seconds per grounding rollout, with and without
the context cache, on CPU (DESIGN.md command contract; the dispatcher prints the JSON line).

Defaults: 16 target frames at the model resolution (64²), 16 context frames (agent camera 128², resized
inside the pipeline as in the agent loop), 10 steps, joint CFG (batch 2). Uses the shipped tiny
checkpoint when present, else a randomly initialised tiny config (same cost). Runs are interleaved
(cache, no cache, cache, ...) and medians reported, so load changes on a shared machine hit both.
"""
from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch

KEYS = ("frames", "context_frames", "steps", "repeats", "threads", "seed", "guidance_scale", "checkpoint")


def bench_generate(argv: list[str]) -> dict:
    opts: dict[str, str] = {}
    for a in argv:
        if "=" not in a:
            raise ValueError(f"argument {a!r} is not key=value; known keys: {KEYS}")
        k, v = a.split("=", 1)
        if k not in KEYS:
            raise ValueError(f"unknown option {k!r}; known keys: {KEYS}")
        opts[k] = v
    frames = int(opts.get("frames", 16))
    n_ctx = int(opts.get("context_frames", 16))
    steps = int(opts.get("steps", 10))
    repeats = int(opts.get("repeats", 3))
    # 1 thread by default: on the shared 2-core box it was 0.50 s vs 1.5-1.9 s with 2 threads while
    # another job ran (2 threads only win on an idle machine: 0.35 s); pass threads=2 to compare
    threads = int(opts.get("threads", 1))
    seed = int(opts.get("seed", 0))
    ckpt = opts.get("checkpoint", "default")
    if threads > 0:
        torch.set_num_threads(threads)

    from models.pipeline import DEFAULT_CHECKPOINT, load_default_pipeline, tiny_pipeline
    from models.types import VideoContext, grounding_instruction

    if ckpt == "random" or (ckpt == "default" and not (DEFAULT_CHECKPOINT / "model_index.json").exists()):
        pipe, source = tiny_pipeline(seed=seed), "random-tiny"
    else:
        path = None if ckpt == "default" else ckpt
        pipe, source = load_default_pipeline(path=path), str(path or DEFAULT_CHECKPOINT)
    pipe.settings.num_frames = frames
    pipe.settings.num_box_frames = min(pipe.settings.num_box_frames, frames - 1)
    pipe.codec.check_target_frames(frames)
    gs = float(opts.get("guidance_scale", pipe.settings.guidance_scale if pipe.settings.guidance_scale > 1 else 3.0))
    rng = np.random.default_rng(seed)
    ctx = VideoContext(frames=rng.integers(0, 256, (n_ctx, 128, 128, 3), dtype=np.uint8),
                       indices=np.arange(n_ctx) * 5)
    instr = grounding_instruction("a small apartment", "a sofa")
    print(f"bench generate: {source}, {frames} target + {n_ctx} context frames, {steps} steps, CFG {gs}, "
          f"{torch.get_num_threads()} threads", file=sys.stderr, flush=True)

    cpu: dict[bool, list[float]] = {True: [], False: []}

    def run(cache: bool) -> float:
        t, c = time.perf_counter(), time.process_time()
        v = pipe(ctx, instruction=instr, num_inference_steps=steps, guidance_scale=gs, seed=seed,
                 use_context_cache=cache, max_context_frames=n_ctx)
        assert v.frames.shape[1] == frames
        cpu[cache].append(time.process_time() - c)
        return time.perf_counter() - t

    run(True)  # warm-up (allocations, text embedding cache)
    with_cache, without = [], []
    for r in range(repeats):
        with_cache.append(run(True))
        without.append(run(False))
        print(f"  repeat {r + 1}/{repeats}: cache {with_cache[-1]:.3f} s, no cache {without[-1]:.3f} s",
              file=sys.stderr, flush=True)
    a, b = statistics.median(with_cache), statistics.median(without)
    return {"seconds_per_rollout": round(a, 4), "seconds_per_rollout_no_cache": round(b, 4),
            "cache_speedup": round(b / a, 3),
            # CPU seconds (all threads) are robust to other jobs on a shared machine; wall time is the contract
            "cpu_seconds_per_rollout": round(statistics.median(cpu[True][1:]), 4),
            "cpu_seconds_per_rollout_no_cache": round(statistics.median(cpu[False]), 4),
            # best-of-repeats: on a shared 2-core machine the minimum is the least disturbed run
            "seconds_per_rollout_min": round(min(with_cache), 4),
            "seconds_per_rollout_no_cache_min": round(min(without), 4),
            "cache_speedup_min": round(min(without) / min(with_cache), 3),
            "load_average_1min": round(__import__("os").getloadavg()[0], 2), "frames": frames, "context_frames": n_ctx, "steps": steps,
            "guidance_scale": gs, "threads": torch.get_num_threads(), "repeats": repeats, "model": source,
            "context_attention": pipe.transformer.config.context_attention}
