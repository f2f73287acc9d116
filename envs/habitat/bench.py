"""`python -m v4s_agent.bench habitat`: agent steps/s at 128x128 RGB-D of `env=habitat` (the pip-only
MuJoCo renderer on an exported .glb) beside the embedded world on the SAME apartment, episode and
actions, timed in interleaved blocks so that load from other processes hits both alike.

`candidates=pyrender,moderngl,open3d` also times raw RGB-D frames of the same .glb at the same poses
with those libraries when they are installed (the renderer comparison in docs/backends.md); a
candidate that is missing or cannot open a headless context is reported with the reason.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs.config import check, parse_overrides


@dataclass
class HabitatBenchConfig:
    steps: int = 600  # agent steps to time per world
    block: int = 50  # steps per interleaved block
    size: int = 128  # square frame size
    split: str = "test"
    seed: int = 0  # picks the episode (and so the apartment) of the split
    candidates: str = ""  # comma list of pyrender, moderngl, open3d

    def __post_init__(self) -> None:
        check(self.steps >= 1 and self.block >= 1 and self.size >= 8, "steps, block must be positive and size >= 8")


def bench_habitat(argv: list[str]) -> dict:
    a = parse_overrides(HabitatBenchConfig, argv)
    from envs.embedded.config import WorldConfig
    from envs.embedded.world import EmbeddedWorld
    from envs.habitat.config import HabitatConfig
    from envs.habitat.mesh_world import MeshWorld
    from envs.habitat.procedural import export_episodes
    from envs.types import Action

    tmp = Path(tempfile.mkdtemp(prefix="bench_habitat_"))  # removed at the end
    print(f"bench habitat: exporting the {a.split} episode of seed {a.seed} to {tmp}", file=sys.stderr)
    path = export_episodes(tmp, a.split, 1, a.seed, WorldConfig(width=a.size, height=a.size))
    mesh = MeshWorld(HabitatConfig(renderer="mujoco", width=a.size, height=a.size, min_depth=0.0, max_depth=10.0))
    (hab_ep,) = mesh.load_episodes(path)
    emb = EmbeddedWorld(WorldConfig(width=a.size, height=a.size, render_semantic=False))
    from envs.embedded.task import make_episodes

    (emb_ep,) = make_episodes(a.split, 1, a.seed, emb.cfg)
    mesh.cfg.render_semantic = False  # RGB-D steps, as the embedded world's default bench
    rng = np.random.default_rng(a.seed)
    actions = rng.choice([Action.MOVE_FORWARD, Action.TURN_LEFT, Action.TURN_RIGHT], size=a.steps, p=[0.6, 0.2, 0.2])
    worlds = {"embedded": (emb, emb_ep), "habitat_mujoco": (mesh, hab_ep)}
    for w, ep in worlds.values():  # warm-up: first frames upload textures
        w.reset(ep)
        for k in range(20):
            w.step(int(actions[k % len(actions)])) if not w.done else w.reset(ep)
        w.reset(ep)
    elapsed = dict.fromkeys(worlds, 0.0)
    poses = []
    n = 0
    while n < a.steps:
        k = min(a.block, a.steps - n)
        for name, (w, ep) in worlds.items():
            t0 = time.perf_counter()
            for i in range(k):
                if w.done:
                    w.reset(ep)
                obs = w.step(int(actions[n + i]))
                if name == "habitat_mujoco":
                    poses.append(obs.pose)
            elapsed[name] += time.perf_counter() - t0
        n += k
        print(f"  {n}/{a.steps}: " + ", ".join(f"{m} {n / t:.1f} steps/s" for m, t in elapsed.items()), file=sys.stderr)
    same = np.allclose(emb.agent_pose.xyz, mesh.agent_pose.xyz) and abs(emb.agent_pose.yaw - mesh.agent_pose.yaw) < 1e-9
    out = {
        "embedded_steps_per_s": round(n / elapsed["embedded"], 1),
        "habitat_mujoco_steps_per_s": round(n / elapsed["habitat_mujoco"], 1),
        "ratio": round(elapsed["embedded"] / elapsed["habitat_mujoco"], 3),
        "same_final_pose": bool(same),
        "steps": n,
        "size": a.size,
        "scene": Path(hab_ep.scene_id).name,
    }
    if a.candidates:
        from envs.habitat.render_candidates import time_candidates

        glb = Path(hab_ep.scene_id)
        def reference(p):
            o = emb.render_at(p, semantic=False)
            return o.rgb, o.depth

        out["raw_rgbd"] = time_candidates(glb, poses[: min(len(poses), 200)], a.size, mesh,
                                          [c for c in a.candidates.split(",") if c], reference)
    emb.close()
    mesh.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return out
