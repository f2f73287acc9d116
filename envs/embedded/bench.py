"""Simulator speed, each bench timed in interleaved blocks so that load from other processes on a
shared CPU hits every variant alike.

`python -m v4s_agent.bench sim`: agent steps/s through EmbeddedWorld.step (RGB-D, 128x128,
semantic off, random forward/turn actions) beside raw MuJoCo render fps (camera update +
mjr_render + mjr_readPixels of RGB and depth, nothing else) at the SAME poses, in the same run;
ratio = steps_per_s / raw_render_fps.

`python -m v4s_agent.bench vector num_envs=1,2,4`: env steps/s of the gymnasium env alone and of
N envs in gymnasium's SyncVectorEnv and AsyncVectorEnv (built with gymnasium.make_vec), side by
side; headline ratio = async with 2 envs / one env. Beside the wall rates it reports CPU time per
env step of every process (parent and workers), which a loaded machine blurs far less than wall
time, the ratios that CPU cost allows at best on this machine's cores (`cpu_bound_ratios`), and a
profile of one env step: raw render vs the rest.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from envs.config import check, parse_overrides


@dataclass
class SimBenchConfig:
    steps: int = 600  # agent steps to time
    block: int = 50  # steps per interleaved block
    width: int = 128
    height: int = 128
    scene_seed: int = 0
    seed: int = 0
    semantic: bool = False  # also render instance ids in env.step

    def __post_init__(self) -> None:
        check(self.steps >= 1 and self.block >= 1, f"steps and block must be positive, got {self.steps}, {self.block}")


def bench_sim(argv: list[str]) -> dict:
    a = parse_overrides(SimBenchConfig, argv)
    from envs.embedded.gl import ensure_backend

    ensure_backend()
    import mujoco

    from envs.embedded.config import WorldConfig
    from envs.embedded.world import EmbeddedWorld
    from envs.types import Action

    cfg = WorldConfig(width=a.width, height=a.height, render_semantic=a.semantic)
    world = EmbeddedWorld(cfg, scene_seed=a.scene_seed)
    rng = np.random.default_rng(a.seed)
    world.reset(seed=a.seed)
    r = world._renderer  # the raw path uses the very same context, model and buffers
    actions = rng.choice([Action.MOVE_FORWARD, Action.TURN_LEFT, Action.TURN_RIGHT], size=a.steps, p=[0.6, 0.2, 0.2])
    for k in range(20):  # warm-up (first frames upload textures)
        world.step(int(actions[k % len(actions)])) if not world.done else world.reset(seed=a.seed + k)
    t_env = t_raw = 0.0
    n = 0
    print(f"bench sim: {a.steps} steps, {a.width}x{a.height}, semantic={a.semantic}", file=sys.stderr)
    while n < a.steps:
        k = min(a.block, a.steps - n)
        poses = []
        t0 = time.perf_counter()
        for i in range(k):
            if world.done:
                world.reset(seed=a.seed + n + i)
            poses.append(world.step(int(actions[n + i])).pose)
        t1 = time.perf_counter()
        for p in poses:
            r._set_camera(p)
            mujoco.mjr_render(r._rect, r.scn, r._con)
            mujoco.mjr_readPixels(r._rgb, r._zbuf, r._rect, r._con)
        t2 = time.perf_counter()
        t_env += t1 - t0
        t_raw += t2 - t1
        n += k
        print(f"  {n}/{a.steps}: env {n / t_env:.1f} steps/s, raw {n / t_raw:.1f} fps", file=sys.stderr)
    renderer = ""
    try:
        from OpenGL import GL

        renderer = GL.glGetString(GL.GL_RENDERER).decode()
    except Exception:  # PyOpenGL is optional; the string is informative only
        pass
    world.close()
    steps_per_s, raw = n / t_env, n / t_raw
    return {
        "steps_per_s": round(steps_per_s, 1),
        "raw_render_fps": round(raw, 1),
        "ratio": round(steps_per_s / raw, 3),
        "steps": n,
        "width": a.width,
        "height": a.height,
        "semantic": bool(a.semantic),
        "scene_seed": a.scene_seed,
        "gl_renderer": renderer,
    }


@dataclass
class VectorBenchConfig:
    num_envs: str = "1,2,4"  # comma list; 1 = the plain env (and AsyncVectorEnv of one: the IPC cost alone)
    steps: int = 200  # vector steps per configuration per round
    rounds: int = 5  # interleaved rounds (standard errors are across rounds)
    width: int = 128
    height: int = 128
    obs_keys: str = "rgb,depth,pose,goal"
    context: str = "fork"  # AsyncVectorEnv start method: fork | spawn | forkserver
    copy: bool = True  # vector envs return a copy of the batched observation (gymnasium's default)
    seed: int = 0

    def __post_init__(self) -> None:
        parts = str(self.num_envs).split(",")
        check(all(p.strip().isdigit() and int(p) >= 1 for p in parts),
              f"num_envs={self.num_envs!r} must be a comma list of positive ints, e.g. num_envs=1,2,4")
        check(self.steps >= 1 and self.rounds >= 2, "steps must be >= 1 and rounds >= 2 (standard errors are across rounds)")
        check(self.context in ("fork", "spawn", "forkserver"), f"context={self.context!r} must be fork, spawn or forkserver")


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds a process's threads ran, from /proc/PID/task/*/schedstat (nanoseconds, unlike the
    10 ms ticks of /proc/PID/stat)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:  # the thread ended while we listed them
            continue
    return total * 1e-9


class _Timed:
    """One configuration: a step function, its env count, its worker PIDs, and what was measured."""

    def __init__(self, name: str, env, n: int, vector: bool) -> None:
        self.name, self.env, self.n, self.vector = name, env, n, vector
        self.workers = [p.pid for p in getattr(env, "processes", [])]
        self.rates: list[float] = []
        self.cpu_parent = self.cpu_workers = 0.0
        self.env_steps = 0

    def run(self, actions: np.ndarray) -> None:
        env = self.env
        c_par, c_wrk = time.process_time(), sum(_proc_cpu_s(p) for p in self.workers)
        t0 = time.perf_counter()
        if self.vector:
            for a in actions:
                env.step(a[: self.n])
        else:
            for a in actions:
                _, _, term, trunc, _ = env.step(int(a[0]))
                if term or trunc:
                    env.reset()
        wall = time.perf_counter() - t0
        self.cpu_parent += time.process_time() - c_par
        self.cpu_workers += sum(_proc_cpu_s(p) for p in self.workers) - c_wrk
        self.rates.append(len(actions) * self.n / wall)
        self.env_steps += len(actions) * self.n

    def summary(self) -> dict:
        r = np.asarray(self.rates)
        return {
            "env_steps_per_s": round(float(r.mean()), 1),
            "stderr": round(float(r.std(ddof=1) / np.sqrt(len(r))), 1),
            "cpu_ms_per_env_step": round(1e3 * (self.cpu_parent + self.cpu_workers) / self.env_steps, 3),
            "parent_cpu_ms_per_env_step": round(1e3 * self.cpu_parent / self.env_steps, 3),
        }


def _step_profile(env, actions: np.ndarray) -> dict:
    """CPU ms of one env step, and of the raw render (camera + mjr_render + readPixels) at the same poses."""
    import mujoco

    world = env.unwrapped.world
    r = world._renderer  # the very same context, model and buffers the env renders with
    depth = world.cfg.render_depth
    poses = []
    t0 = time.process_time()
    for a in actions:
        _, _, term, trunc, _ = env.step(int(a))
        poses.append(world.agent_pose)
        if term or trunc:
            env.reset()
    t1 = time.process_time()
    for p in poses:
        r._set_camera(p)
        mujoco.mjr_render(r._rect, r.scn, r._con)
        mujoco.mjr_readPixels(r._rgb, r._zbuf if depth else None, r._rect, r._con)
    t2 = time.process_time()
    step, render = 1e3 * (t1 - t0) / len(actions), 1e3 * (t2 - t1) / len(actions)
    return {"step_cpu_ms": round(step, 3), "raw_render_cpu_ms": round(render, 3),
            "rest_of_step_cpu_ms": round(step - render, 3), "rest_share": round((step - render) / step, 3)}


def bench_vector(argv: list[str]) -> dict:
    a = parse_overrides(VectorBenchConfig, argv)
    import gymnasium as gym

    from envs.gym_env import ENV_ID
    from envs.types import Action

    ns = sorted({int(n) for n in a.num_envs.split(",")})
    kw = {"obs_keys": tuple(a.obs_keys.split(",")), "width": a.width, "height": a.height, "scene_seeds": [0, 1, 2, 3]}
    load_start = os.getloadavg()
    print(f"bench vector: num_envs={ns}, {a.rounds} rounds x {a.steps} vector steps, {a.width}x{a.height}, "
          f"obs_keys={kw['obs_keys']}, context={a.context}, load average {load_start[0]:.2f}", file=sys.stderr)
    single = gym.make(ENV_ID, **kw)
    single.reset(seed=a.seed)
    runs = [_Timed("single", single, 1, vector=False)]
    for n in ns:
        if n > 1:
            runs.append(_Timed(f"sync_{n}", gym.make_vec(ENV_ID, n, vectorization_mode="sync",
                                                         vector_kwargs={"copy": a.copy}, **kw), n, vector=True))
        runs.append(_Timed(f"async_{n}", gym.make_vec(ENV_ID, n, vectorization_mode="async",
                                                      vector_kwargs={"copy": a.copy, "context": a.context}, **kw),
                           n, vector=True))
    rng = np.random.default_rng(a.seed)
    moves = [Action.MOVE_FORWARD, Action.TURN_LEFT, Action.TURN_RIGHT]  # no STOP: episodes run to the time limit
    for t in runs:
        if t.vector:
            t.env.reset(seed=a.seed)
        t.run(rng.choice(moves, size=(20, max(ns)), p=[0.6, 0.2, 0.2]))  # warm-up: first frames upload textures
        t.rates.clear()
        t.cpu_parent = t.cpu_workers = 0.0
        t.env_steps = 0
    for k in range(a.rounds):
        for t in runs:
            t.run(rng.choice(moves, size=(a.steps, max(ns)), p=[0.6, 0.2, 0.2]))
        print(f"  round {k + 1}/{a.rounds}: " + ", ".join(f"{t.name} {t.rates[-1]:.0f}" for t in runs)
              + f" env steps/s (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
    profile = _step_profile(single, rng.choice(moves, size=a.steps, p=[0.6, 0.2, 0.2]))
    results = {t.name: t.summary() for t in runs}
    for t in runs:
        t.env.close()
    base = results["single"]["env_steps_per_s"]
    ratios = {name: round(r["env_steps_per_s"] / base, 3) for name, r in results.items() if name != "single"}
    # what the CPU work allows on an idle machine: one env keeps one core busy; N processes at best keep
    # min(N, cores) busy at their measured CPU cost per env step (perfect overlap, no waiting)
    cores, c1 = os.cpu_count() or 1, results["single"]["cpu_ms_per_env_step"]
    cpu_bound = {t.name: round(min(t.n if t.workers else 1, cores) * c1 / results[t.name]["cpu_ms_per_env_step"], 3)
                 for t in runs if t.name != "single"}
    head = "async_2" if "async_2" in ratios else f"async_{ns[-1]}"
    return {
        "ratio": ratios[head],
        "headline": f"{head} env steps/s / one env",
        "ratios": ratios,
        "cpu_bound_ratios": cpu_bound,
        "results": results,
        "single_step_profile": profile,
        "cpu_count": os.cpu_count(),
        "load_avg_start": [round(x, 2) for x in load_start],
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        "rounds": a.rounds,
        "steps": a.steps,
        "width": a.width,
        "height": a.height,
        "obs_keys": list(kw["obs_keys"]),
        "context": a.context,
        "copy": a.copy,
    }


if __name__ == "__main__":  # pragma: no cover - the lead's v4s_agent.bench dispatches here
    import json

    print(json.dumps(bench_sim(sys.argv[1:])))
