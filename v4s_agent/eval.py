"""`python -m v4s_agent.eval SUBCOMMAND [key=value ...]` — measurements with one JSON line on stdout.

  agent         planner=NAME split=test episodes=N [seed=S model=... env=...]
                [executor=local|ray num_workers=N ray_address=auto]  (one task per episode; models/executor.py)
                -> success, spl, soft_spl, distance_to_goal, seconds_per_plan, episodes
  imagination   split=test episodes=N  (v4s_agent/eval_imagination.py: eval_imagination(argv) -> dict)
  sweep         split=test episodes=40 settings=all planners=imagine,grounding out=outputs/sweep
                -> agent SR/SPL against imagination IF over the model=oracle_noisy dial, plus explore and the
                   shipped model (imagine, grounding, imagine with detector=imagination) (v4s_agent/sweep.py)
  detector      detector=imagination model=tiny split=val episodes=N  (v4s_agent/eval_detector.py)
                -> how often the stop fires facing the target, turned away from it, and at the start

Progress goes to stderr. Overrides use the same Hydra config as `v4s_agent.run` (composed with the
compose API, so no Hydra output dirs). Per-episode lines land in outputs/<run_name>/results.jsonl;
no recordings are written unless asked for (rerun=save video=mp4). stdout is only the JSON line;
`-v` shows per-plan logs on stderr (they always go to run.log).
"""
from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

USAGE = __doc__.split("\n\n")[0] + "\n" + __doc__.split("\n\n")[1]

# subcommand -> "module:function"; function(argv: list[str]) -> dict. Imported lazily.
SUBCOMMANDS: dict[str, str] = {
    "agent": "v4s_agent.eval:eval_agent",
    "imagination": "v4s_agent.eval_imagination:eval_imagination",
    "sweep": "v4s_agent.sweep:eval_sweep",
    "detector": "v4s_agent.eval_detector:eval_detector",
}


class EvalError(ValueError):
    pass


def split_executor_args(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Pull executor=, num_workers=, ray_address= out of `argv` -> ({} for the one-process loop, rest)."""
    from models.executor import check_executor

    keys = {"executor": "local", "num_workers": "1", "ray_address": ""}
    given = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in argv if o.split("=", 1)[0] in keys}
    rest = [o for o in argv if o.split("=", 1)[0] not in keys]
    if not given:
        return {}, rest
    opts = {**keys, **given}
    try:
        workers = int(opts["num_workers"])
    except ValueError:
        raise EvalError(f"num_workers={opts['num_workers']!r} must be a positive int") from None
    check_executor(opts["executor"], workers)
    return {"executor": opts["executor"], "num_workers": workers, "ray_address": opts["ray_address"]}, rest


def eval_agent(argv: list[str]) -> dict[str, Any]:
    """Run the agent on `episodes` test episodes; summary dict with the `eval agent` keys."""
    from planners.base import PlannerError
    from v4s_agent.config import ConfigError, compose_run_config
    from v4s_agent.run import SetupError, run_episodes, summarize

    fanout, argv = split_executor_args(argv)
    names = {o.split("=", 1)[0] for o in argv}
    defaults = ["rerun=none", "video=none", "resume=false"]
    if "run_name" not in names:
        planner = next((o.split("=", 1)[1] for o in argv if o.startswith("planner=")), "imagine")
        split = next((o.split("=", 1)[1] for o in argv if o.startswith("split=")), "test")
        defaults.append(f"run_name=eval-{planner}-{split}")
    cfg = compose_run_config(defaults + list(argv))
    try:
        if fanout:
            from v4s_agent.episode_tasks import run_episodes_as_tasks

            outcome = run_episodes_as_tasks(cfg, **fanout)
        else:
            outcome = run_episodes(cfg, record=cfg.rerun != "none" or cfg.video != "none")
    except (SetupError, ConfigError, PlannerError) as e:
        raise EvalError(str(e)) from None
    out = summarize(outcome.records)
    out.update(planner=cfg.planner.name, split=cfg.split, seed=cfg.seed, max_steps=cfg.max_steps,
               errors=len(outcome.errors), interrupted=outcome.interrupted,
               results=str(outcome.output_dir / "results.jsonl"))
    return out


def dispatch(sub: str) -> Callable[[list[str]], dict]:
    if sub not in SUBCOMMANDS:
        raise EvalError(f"unknown subcommand {sub!r}; choose one of {sorted(SUBCOMMANDS)}")
    module, _, attr = SUBCOMMANDS[sub].partition(":")
    if module == __name__ or module == "v4s_agent.eval":  # this module (also when run as __main__)
        return globals()[attr]
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise EvalError(f"`eval {sub}` is not available yet ({module}.{attr}: {e})") from None


def main(argv: list[str] | None = None) -> int:
    from v4s_agent.console import pop_verbose, setup_logging, stdout_to_stderr

    argv, verbose = pop_verbose(list(sys.argv[1:] if argv is None else argv))
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, file=sys.stderr)
        return 0 if argv else 2
    setup_logging(verbose)
    try:
        with stdout_to_stderr():
            result = dispatch(argv[0])(argv[1:])
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ValueError as e:  # EvalError and every subcommand's bad-input error: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 130 if result.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
