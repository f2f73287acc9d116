"""`python -m v4s_agent.run [env=...] [planner=...] [model=...] [episodes=N] [seed=S] [run_name=NAME]`

Runs episodes with a progress bar, appends one JSON line per finished episode to
`outputs/<run_name>/results.jsonl` (a rerun skips the episode ids already there), and writes
`episode_<id>.rrd` (Rerun) and `episode_<id>.gif` per episode. Ctrl-C keeps the finished episodes
and exits 130. Bad input (unknown name, missing checkpoint, bad value) -> one line on stderr, exit 2.

`run_episodes` is the shared core; `v4s_agent.eval agent` calls it without recordings.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must precede any mujoco import

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from models.factory import ModelConfig  # noqa: E402
from v4s_agent.config import ConfigError, RunConfig, register_configs  # noqa: E402

log = logging.getLogger("v4s_agent.run")
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class SetupError(RuntimeError):
    """Something the user must fix before a run can start (one line, with the fix)."""


# ------------------------------------------------------------------------------------ builders
def load_imagination(model: ModelConfig) -> Any:
    """The imagination named by `model=` (models.factory.MODELS)."""
    from models.factory import ModelUnavailableError, make_imagination

    try:
        return make_imagination(model)
    except ModelUnavailableError as e:
        raise SetupError(str(e)) from None


def build_env(cfg: RunConfig) -> Any:
    from envs.base import make_env
    from envs.errors import BackendUnavailableError, SceneError

    backend_cfg = cfg.env.backend_config()
    try:
        return make_env(cfg.env.name, backend_cfg)
    except (BackendUnavailableError, SceneError) as e:  # already one line with the fix
        raise SetupError(str(e)) from None
    except ImportError as e:
        raise SetupError(f"env {cfg.env.name!r} is not available ({e}); use env=embedded or install that backend") from None


def make_episode_list(cfg: RunConfig, env: Any) -> list[Any]:
    """Episodes of `split` for this env: the env's own generator if it has one, else the embedded task's."""
    from envs.errors import SceneError

    if hasattr(env, "make_episodes"):
        try:
            return list(env.make_episodes(cfg.split, cfg.episodes, cfg.seed))
        except SceneError as e:  # a bad scene or episode file: one line, exit 2
            raise SetupError(str(e)) from None
    if cfg.env.name == "embedded":
        from envs.embedded.task import make_episodes

        return list(make_episodes(cfg.split, cfg.episodes, cfg.seed))
    return [None] * cfg.episodes  # the backend picks (rig: one "episode" per run)


# -------------------------------------------------------------------------------------- runner
def read_done(path: Path) -> dict[str, dict]:
    """episode_id -> record of the lines already in results.jsonl (a torn last line is ignored)."""
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
            done[str(rec["episode_id"])] = rec
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return done


def drop_torn_tail(path: Path) -> None:
    """Cut a last line left without its newline by a hard crash mid-write, so the next append starts
    on a line of its own (that episode is simply run again)."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


@dataclass
class RunOutcome:
    records: list[dict] = field(default_factory=list)  # all episodes of this run (resumed ones too)
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)
    output_dir: Path = Path(".")


def _safe_name(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(s))


def run_episodes(cfg: RunConfig, *, record: bool = True) -> RunOutcome:
    """Run `cfg.episodes` episodes; append each finished one to results.jsonl right away.
    Raises SetupError/ConfigError/PlannerError for bad input, before any episode starts."""
    from tqdm import tqdm

    from planners.base import PlannerError
    from planners.detect import make_detector
    from planners.factory import PLANNERS, make_planner
    from v4s_agent.agent import run_episode
    from v4s_agent.viz import GifRecorder, RerunRecorder

    PLANNERS.get(cfg.planner.name)
    out = Path(cfg.output_dir)
    results = out / "results.jsonl"
    outcome = RunOutcome(output_dir=out)

    # The world first: a missing backend (habitat_sim) is the more basic problem to report.
    env = build_env(cfg)
    try:
        wants_model = cfg.planner.needs_imagination or getattr(cfg.detector, "name", "") == "imagination"
        imagination = load_imagination(cfg.model) if wants_model else None
        try:
            if hasattr(imagination, "bind_env"):  # an imagination rendered by the simulator (model=oracle_noisy)
                imagination.bind_env(env)
            detector = None if cfg.detector is None else make_detector(cfg.detector.name, cfg.detector, env=env, imagination=imagination)
            planner = make_planner(cfg.planner, env, imagination, seed=cfg.seed, detector=detector)
        except (PlannerError, ValueError) as e:
            raise SetupError(str(e)) from None
        out.mkdir(parents=True, exist_ok=True)  # only once the run can start
        if cfg.resume:
            drop_torn_tail(results)
        done = read_done(results) if cfg.resume else {}
        if not cfg.resume and results.exists():
            results.unlink()
        episodes = make_episode_list(cfg, env)
        bar = tqdm(total=len(episodes), desc=f"{cfg.planner.name} episodes", unit="ep", file=sys.stderr, disable=not cfg.progress)
        try:
            for i, ep in enumerate(episodes):
                eid = ep.episode_id if ep is not None else f"{cfg.split}-{cfg.seed}-{i}"
                if eid in done:
                    outcome.records.append(done[eid])
                    bar.update(1)
                    continue
                observers: list[Any] = []
                if record and cfg.rerun:
                    observers.append(RerunRecorder(out / f"episode_{_safe_name(eid)}.rrd", recording_id=f"{cfg.run_name}-{eid}"))
                if record and cfg.gif:
                    observers.append(GifRecorder(out / f"episode_{_safe_name(eid)}.gif"))
                try:
                    res = run_episode(env, planner, ep, cfg.max_steps, look_around=cfg.look_around,
                                      observers=observers, seed=cfg.seed + i)
                except KeyboardInterrupt:
                    for o in observers:
                        if hasattr(o, "close"):
                            o.close()
                    raise
                except Exception as e:  # an env fault in one episode: report it, keep the run going
                    msg = f"episode {eid} failed: {type(e).__name__}: {e}"
                    log.error(msg)
                    print(msg, file=sys.stderr)
                    outcome.errors.append(msg)
                    bar.update(1)
                    continue
                rec = res.record()
                rec["seed"] = cfg.seed
                with results.open("a") as f:  # one complete line per finished episode
                    f.write(json.dumps(rec) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                outcome.records.append(rec)
                bar.update(1)
                bar.set_postfix(success=f"{sum(r['success'] or 0 for r in outcome.records) / len(outcome.records):.2f}")
        except KeyboardInterrupt:
            outcome.interrupted = True
        finally:
            bar.close()
    finally:
        try:
            env.close()
        except Exception:
            pass
    return outcome


def summarize(records: list[dict]) -> dict[str, Any]:
    """Means over episodes of the `eval agent` keys."""
    import numpy as np

    def mean(key: str) -> float | None:
        v = [r[key] for r in records if r.get(key) is not None]
        return float(np.mean(v)) if v else None

    plans = [(r["seconds_per_plan"], r["num_plans"]) for r in records if r.get("seconds_per_plan") is not None and r.get("num_plans")]
    spp = sum(s * n for s, n in plans) / sum(n for _, n in plans) if plans else None
    return {
        "success": mean("success"),
        "spl": mean("spl"),
        "soft_spl": mean("soft_spl"),
        "distance_to_goal": mean("distance_to_goal"),
        "seconds_per_plan": spp,
        "episodes": len(records),
        "planner_errors": int(sum(r.get("planner_errors") or 0 for r in records)),
    }


def to_run_config(cfg: DictConfig) -> RunConfig:
    """DictConfig -> validated RunConfig (ConfigError with one line on a bad value)."""
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, RunConfig)
    return obj


def fail(msg: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def run_cli(cfg: RunConfig) -> int:
    """The body of `python -m v4s_agent.run` once the config is valid; returns the exit code."""
    from planners.base import PlannerError

    try:
        outcome = run_episodes(cfg, record=True)
    except (SetupError, ConfigError, PlannerError) as e:
        return fail(str(e))
    summary = summarize(outcome.records)
    summary.update(output_dir=str(outcome.output_dir), errors=len(outcome.errors), interrupted=outcome.interrupted)
    print(json.dumps(summary))
    if outcome.interrupted:
        print(f"interrupted: {len(outcome.records)} finished episode(s) kept in {outcome.output_dir / 'results.jsonl'}; "
              "run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


register_configs()


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    try:
        rc = to_run_config(cfg)
    except ConfigError as e:
        sys.exit(fail(str(e)))
    except Exception as e:  # OmegaConf validation errors: keep the first line
        sys.exit(fail(str(e).splitlines()[0]))
    try:
        code = run_cli(rc)
    except KeyboardInterrupt:  # before the first episode (env build, model load)
        code = fail("interrupted before any episode finished", EXIT_INTERRUPTED)
    sys.exit(code)


def cli() -> None:
    """`python -m v4s_agent.run`: the overrides are composed and checked first, so bad input is one line
    (exit 2) instead of Hydra's report; Hydra's own flags (--help, --cfg, -m) go straight to Hydra."""
    from v4s_agent.config import compose_run_config

    args = sys.argv[1:]
    if not any(a.startswith("-") for a in args):
        try:
            compose_run_config(args)
        except ConfigError as e:
            sys.exit(fail(str(e)))
    main()


if __name__ == "__main__":
    cli()
