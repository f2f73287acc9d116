"""Episodes as independent tasks: `eval agent ... executor=ray|local num_workers=N` fans them out.

Each episode is a pure function of (config, episode, seed + index): planners reset per episode and
draw their sampling seeds from the run seed and plan counters, so an episode gives the same
results.jsonl line on any worker, in any order, as in the one-process loop of `v4s_agent.run`.
A worker builds the env, imagination and planner once and reuses them for every episode it gets.
The driver appends each line as it arrives (a rerun skips the ids already there) and reports an
episode that failed twice by its id while the others finish.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

_WORKER: dict[str, Any] = {}  # per worker process: the config key and the env/planner built for it


def _worker_parts(cfg: Any) -> tuple[Any, Any]:
    """(env, planner) for `cfg`, built on this worker's first episode of the run and then reused."""
    from v4s_agent.run import build_env, build_planner

    key = repr(cfg)
    if _WORKER.get("key") != key:
        if "env" in _WORKER:
            _WORKER.pop("env").close()
        env = build_env(cfg)
        # the same planner as the one-process loop builds: its detector= and a dial bound to this env
        _WORKER.update(key=key, env=env, planner=build_planner(cfg, env))
    return _WORKER["env"], _WORKER["planner"]


def episode_task(args: tuple[Any, int, Any]) -> dict:
    """Run episode `index` of the run (`episode` as the driver listed it) -> its results.jsonl record."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    from v4s_agent.agent import run_episode

    cfg, index, episode = args
    env, planner = _worker_parts(cfg)
    res = run_episode(env, planner, episode, cfg.max_steps, look_around=cfg.look_around, observers=[],
                      seed=cfg.seed + index)
    rec = res.record()
    rec["seed"] = cfg.seed
    return rec


def list_episodes(cfg: Any) -> list[tuple[str, Any]]:
    """(episode_id, episode) of the run, as `v4s_agent.run` numbers them."""
    if cfg.env.name == "embedded":
        from envs.embedded.task import make_episodes

        eps: list[Any] = list(make_episodes(cfg.split, cfg.episodes, cfg.seed))
    else:
        from v4s_agent.run import build_env, make_episode_list

        env = build_env(cfg)
        try:
            eps = make_episode_list(cfg, env)
        finally:
            env.close()
    return [(ep.episode_id if ep is not None else f"{cfg.split}-{cfg.seed}-{i}", ep) for i, ep in enumerate(eps)]


def run_episodes_as_tasks(cfg: Any, executor: str, num_workers: int, ray_address: str = "") -> Any:
    """`run_episodes` with one task per episode on `executor`; returns a `v4s_agent.run.RunOutcome`."""
    from models.executor import run_tasks
    from planners.factory import PLANNERS
    from v4s_agent.run import RunOutcome, read_done

    PLANNERS.get(cfg.planner.name)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = read_done(results) if cfg.resume else {}
    if not cfg.resume and results.exists():
        results.unlink()
    episodes = list_episodes(cfg)
    todo = {eid: (cfg, i, ep) for i, (eid, ep) in enumerate(episodes) if eid not in done}

    def append(_: str, rec: dict) -> None:
        with results.open("a") as f:  # one complete line per finished episode
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())

    new, failed = run_tasks(episode_task, todo, executor=executor, num_workers=num_workers, ray_address=ray_address,
                            desc=f"{cfg.planner.name} episodes", progress=cfg.progress, on_result=append)
    outcome = RunOutcome(output_dir=out)
    outcome.records = [done.get(eid) or new[eid] for eid, _ in episodes if eid in done or eid in new]
    outcome.errors = [f"episode {f.id} failed: {f.error}" for f in failed]
    return outcome
