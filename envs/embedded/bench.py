"""`python -m v4s_agent.bench sim`: agent steps/s through EmbeddedWorld.step (RGB-D, 128x128,
semantic off, random forward/turn actions) beside raw MuJoCo render fps (camera update +
mjr_render + mjr_readPixels of RGB and depth, nothing else) at the SAME poses, in the same run.

The two are measured in interleaved blocks so that load from other processes on a shared CPU
hits both alike; ratio = steps_per_s / raw_render_fps.
"""
from __future__ import annotations

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


if __name__ == "__main__":  # pragma: no cover - the lead's v4s_agent.bench dispatches here
    import json

    print(json.dumps(bench_sim(sys.argv[1:])))
