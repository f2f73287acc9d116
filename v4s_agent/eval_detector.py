"""`python -m v4s_agent.eval detector [detector=imagination model=tiny split=val episodes=N seed=S ...]`

How often a detector's STOP fires where it should and where it should not, at controlled poses of
the embedded world's episodes (choose a detector's thresholds on `val` with it, never on `test`):

- `facing`: the target's view point nearest to the object, facing it (a STOP there succeeds);
- `away90`, `away180`: the same spot turned away (the target is out of view);
- `start`: the episode's start pose (usually far from the target).

At each pose the memory holds a look-around from that spot (as the agent's would), then the detector
is asked once and the shared stop rule (`planners.base.should_stop`, the planner's gamma and
stop_distance) decides. One line per episode goes to stderr; the JSON line is the fire rate per pose
kind with its standard error. Overrides are `v4s_agent.run`'s (detector.*, model.*, planner.*).
"""
from __future__ import annotations

import math
import sys
from typing import Any

KINDS = ("facing", "away90", "away180", "start")


class DetectorEvalError(ValueError):
    """Bad input (one line, exit 2)."""


def detector_poses(world: Any, episode: Any) -> dict[str, Any]:
    """The four probe poses of `episode` (see the module doc)."""
    from envs.types import Pose

    face = world.centring_pose(episode.target_instance_ids[0], pitch=False)
    return {"facing": face, "away90": Pose(face.position, face.yaw + math.pi / 2),
            "away180": Pose(face.position, face.yaw + math.pi), "start": episode.start}


def probe(world: Any, detector: Any, pose: Any, turn_deg: float, gamma: float, stop_distance: float) -> bool:
    """Whether the detector's box at `pose` (after a look-around there) passes the stop rule."""
    from envs.types import Pose
    from models.memory import Memory
    from planners.base import should_stop

    memory = Memory()
    n = int(round(360.0 / turn_deg))
    for k in range(n, 0, -1):  # a full turn that ends facing `pose`
        memory.add(world.render_at(Pose(pose.position, pose.yaw + math.radians(turn_deg * k), pose.pitch)))
    obs = world.render_at(pose)
    memory.add(obs)
    box = detector(obs, memory)
    H, W = obs.rgb.shape[:2]
    return bool(should_stop(box, obs.depth, W, H, gamma, stop_distance, world.K))


def eval_detector(argv: list[str]) -> dict[str, Any]:
    """Entry point of `python -m v4s_agent.eval detector key=value ...`."""
    from planners.base import PlannerError
    from v4s_agent.config import compose_run_config
    from v4s_agent.run import SetupError

    names = {o.split("=", 1)[0] for o in argv}
    cfg = compose_run_config((["detector=imagination"] if "detector" not in names else []) + ["split=val"] * ("split" not in names)
                             + list(argv))
    if cfg.env.name != "embedded":
        raise DetectorEvalError(f"eval detector probes poses of the embedded world's episodes; use env=embedded, not env={cfg.env.name}")
    try:
        return _probe_episodes(cfg)
    except (SetupError, PlannerError) as e:
        raise DetectorEvalError(str(e)) from None


def _probe_episodes(cfg: Any) -> dict[str, Any]:
    from planners.base import PlannerError
    from planners.detect import make_detector
    from v4s_agent.run import SetupError, build_env, load_imagination, make_episode_list
    from v4s_agent.sweep import mean_se

    env = build_env(cfg)
    try:
        imagination = load_imagination(cfg.model) if cfg.detector.name == "imagination" else None
        try:
            detector = make_detector(cfg.detector.name, cfg.detector, env=env, imagination=imagination)
        except (PlannerError, ValueError) as e:
            raise SetupError(str(e)) from None
        fired: dict[str, list[float]] = {k: [] for k in KINDS}
        for i, ep in enumerate(make_episode_list(cfg, env)):
            obs = env.reset(ep)
            detector.reset(ep, obs)
            line = []
            for kind, pose in detector_poses(env, ep).items():
                f = probe(env, detector, pose, env.turn_degrees, cfg.planner.gamma, cfg.planner.stop_distance)
                fired[kind].append(float(f))
                line.append(f"{kind}={int(f)}")
            print(f"episode {i + 1} {ep.episode_id}: " + " ".join(line), file=sys.stderr, flush=True)
    finally:
        env.close()
    out: dict[str, Any] = {"detector": cfg.detector.name, "split": cfg.split, "seed": cfg.seed, "episodes": len(fired["facing"])}
    for kind, v in fired.items():
        out[f"fires_{kind}"], out[f"fires_{kind}_se"] = mean_se(v)
    return out
