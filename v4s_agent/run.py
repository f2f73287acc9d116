"""`python -m v4s_agent.run [-v] [env=...] [planner=...] [model=...] [episodes=N] [seed=S] [run_name=NAME]`

Runs episodes with one progress bar and one summary line per episode (stderr), appends one JSON
line per finished episode to `outputs/<run_name>/results.jsonl` (a rerun skips the episode ids
already there), and records each episode as `episode_<id>.rrd` (Rerun, `rerun=save|spawn|connect|none`)
and `episode_<id>-success=S-spl=X.mp4` (`video=mp4|gif|none`), named by the results line's episode
id and never overwritten. stdout is exactly one JSON summary line. Per-plan logs go to
`run.log` in the output folder (`-v` shows them on stderr too). Ctrl-C keeps the finished episodes
and exits 130. Bad input (unknown name, missing checkpoint or camera, bad value) -> one line on
stderr, exit 2, and no output folder. A camera stream that ends stops the run (`stream_ended` in
the summary); exit 3 when it ended before any episode finished.

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

from models.factory import ModelConfig  # noqa: E402
from v4s_agent.config import ConfigError, RunConfig  # noqa: E402

log = logging.getLogger("v4s_agent.run")
EXIT_BAD_INPUT = 2
EXIT_NO_EPISODE = 3  # the camera stream ended before any episode finished
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
    from envs.camera.errors import CameraError
    from envs.errors import BackendUnavailableError, SceneError

    backend_cfg = cfg.env.backend_config()
    try:
        env = make_env(cfg.env.name, backend_cfg)
    except (BackendUnavailableError, SceneError, CameraError) as e:  # already one line with the fix
        raise SetupError(str(e)) from None
    except (FileNotFoundError, ValueError) as e:  # e.g. a missing calibration file: the message names the key
        raise SetupError(str(e).splitlines()[0]) from None
    except ImportError as e:
        raise SetupError(f"env {cfg.env.name!r} is not available ({e}); use env=embedded or install that backend") from None
    try:
        check_compatible(cfg, env)
    except SetupError:
        env.close()
        raise
    return env


def build_planner(cfg: RunConfig, env: Any) -> Any:
    """The planner of `cfg` for `env`, with its imagination (bound to the env when it renders from it,
    as model=oracle_noisy does) and its detector (None: the planner's own)."""
    from planners.base import PlannerError
    from planners.detect import make_detector
    from planners.factory import make_planner

    wants_model = cfg.planner.needs_imagination or getattr(cfg.detector, "name", "") == "imagination"
    imagination = load_imagination(cfg.model) if wants_model else None
    try:
        if hasattr(imagination, "bind_env"):  # an imagination rendered by the simulator (model=oracle_noisy)
            imagination.bind_env(env)
        detector = None if cfg.detector is None else make_detector(cfg.detector.name, cfg.detector, env=env, imagination=imagination)
        return make_planner(cfg.planner, env, imagination, seed=cfg.seed, detector=detector)
    except (PlannerError, ValueError) as e:
        raise SetupError(str(e)) from None


def check_compatible(cfg: RunConfig, env: Any) -> None:
    """Settings that cannot work together are refused before the first episode, with the fix."""
    if getattr(cfg.planner, "readback", None) == "flow" and not getattr(env, "has_depth", True):
        raise SetupError(f"planner.readback=flow needs depth, and env={cfg.env.name} gives none here; "
                         "pass planner.readback=idm (or a depth camera: env.config.source=realsense)")


def make_episode_list(cfg: RunConfig, env: Any) -> list[Any]:
    """Episodes of `split` for this env: the env's own generator if it has one, else the embedded task's
    (ObjectNav episodes, or waypoint routes for task=pose)."""
    from envs.errors import SceneError

    if cfg.task == "pose":
        if cfg.env.name != "embedded":
            raise SetupError(f"task=pose samples routes on the embedded world's navigation grid; use env=embedded, not env={cfg.env.name}")
        from envs.embedded.routes import make_routes

        try:
            return list(make_routes(cfg.split, cfg.episodes, cfg.seed, env.cfg))
        except ValueError as e:
            raise SetupError(str(e)) from None
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
    stream_ended: bool = False  # the camera stream ended: no more episodes can run
    finished: int = 0  # episodes finished by this invocation (resumed ones not counted)
    errors: list[str] = field(default_factory=list)
    output_dir: Path = Path(".")


class StepProgress:
    """Observer that shows the current episode's step on the run's progress bar."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.episode_id: str | None = None  # the id the env gave the episode (its recordings carry it)

    def on_start(self, env: Any, episode: Any) -> None:
        self.episode_id = episode.episode_id
        self.bar.set_postfix_str(f"{episode.episode_id} step 0")

    def on_observation(self, step: int, obs: Any) -> None:
        if step % 5 == 0:
            self.bar.set_postfix_str(f"step {step}", refresh=True)

    def on_plan(self, step: int, plan: Any) -> None: ...

    def on_end(self, result: Any) -> None: ...


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def episode_line(i: int, n: int, rec: dict) -> str:
    """The one summary line printed per finished episode."""
    return (f"episode {i}/{n} {rec['episode_id']}: success={_fmt(rec.get('success'), '.0f')} spl={_fmt(rec.get('spl'))} "
            f"soft_spl={_fmt(rec.get('soft_spl'))} distance={_fmt(rec.get('distance_to_goal'))} m steps={rec.get('num_steps')} "
            f"plans={rec.get('num_plans')} {_fmt(rec.get('episode_seconds'), '.1f')} s")


def make_recorders(cfg: RunConfig, out: Path) -> list[Any]:
    from v4s_agent.viz import RerunRecorder, VideoRecorder

    rec: list[Any] = []
    if cfg.rerun != "none":
        rec.append(RerunRecorder(out, mode=cfg.rerun, url=cfg.rerun_url, run_name=cfg.run_name))
    if cfg.video != "none":
        rec.append(VideoRecorder(out, fmt=cfg.video))
    return rec


def run_episodes(cfg: RunConfig, *, record: bool = True) -> RunOutcome:
    """Run `cfg.episodes` episodes; append each finished one to results.jsonl right away.
    Raises SetupError/ConfigError/PlannerError for bad input, before any episode starts (and
    before the output folder exists)."""
    from omegaconf import OmegaConf

    from planners.factory import PLANNERS
    from v4s_agent.console import log_file

    PLANNERS.get(cfg.planner.name)
    out = Path(cfg.output_dir)
    outcome = RunOutcome(output_dir=out)

    # The world first: a missing backend (habitat_sim) is the more basic problem to report.
    env = build_env(cfg)
    try:
        planner = build_planner(cfg, env)
        episodes = make_episode_list(cfg, env)
        config_yaml = OmegaConf.to_yaml(OmegaConf.structured(cfg))
        if cfg.resume:
            check_resumable(out, config_yaml)
        out.mkdir(parents=True, exist_ok=True)  # only once the run can start
        (out / "config.yaml").write_text(config_yaml)
        with log_file(out / "run.log"):
            _run_loop(cfg, env, planner, episodes, outcome, record)
    finally:
        try:
            env.close()
        except Exception:
            pass
    return outcome


# Keys that change how a run is shown or how many episodes it has, not what an episode's result is.
RESUME_FREE_KEYS = ("episodes", "rerun", "rerun_url", "video", "gif", "resume", "progress")


def check_resumable(out: Path, config_yaml: str) -> None:
    """Resuming skips the episode ids already in results.jsonl, which is only right when those lines came
    from the same configuration: `run env=habitat` after `run` would otherwise report the embedded
    world's result for the same episode id."""
    from omegaconf import OmegaConf

    old_path = out / "config.yaml"
    if not (out / "results.jsonl").exists() or not old_path.exists():
        return
    old, new = (OmegaConf.to_container(OmegaConf.create(t)) for t in (old_path.read_text(), config_yaml))
    for key in RESUME_FREE_KEYS:
        old.pop(key, None)
        new.pop(key, None)
    if old != new:
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise SetupError(f"{out} holds results of another configuration (differs in: {', '.join(changed)}); "
                         f"pass run_name=NAME for a new folder, or resume=false to start {out} over")


def _run_loop(cfg: RunConfig, env: Any, planner: Any, episodes: list[Any], outcome: RunOutcome, record: bool) -> None:
    from tqdm import tqdm

    from envs.camera.errors import StreamEnded
    from v4s_agent.agent import run_episode

    out = outcome.output_dir
    results = out / "results.jsonl"
    if cfg.resume:
        drop_torn_tail(results)
    done = read_done(results) if cfg.resume else {}
    if not cfg.resume and results.exists():
        results.unlink()
    bar = tqdm(total=len(episodes), desc=f"{cfg.planner.name}", unit="ep", file=sys.stderr, disable=not cfg.progress, dynamic_ncols=True)
    say = bar.write if cfg.progress else (lambda m: print(m, file=sys.stderr))
    try:
        for i, ep in enumerate(episodes):
            eid = ep.episode_id if ep is not None else f"{cfg.split}-{cfg.seed}-{i}"
            if eid in done:
                outcome.records.append(done[eid])
                bar.update(1)
                continue
            recorders = make_recorders(cfg, out) if record else []
            progress = StepProgress(bar)
            try:
                # a route starts at its first pose: no look-around (it would turn, and drift, first)
                res = run_episode(env, planner, ep, cfg.max_steps, look_around=cfg.look_around and cfg.task != "pose",
                                  observers=[*recorders, progress], seed=cfg.seed + i)
            except StreamEnded as e:
                outcome.stream_ended = True
                say(f"stream ended: {e}")
                log.info("stream ended in episode %d: %s", i, e)
                break
            except Exception as e:  # an env fault in one episode: report it once, keep the run going
                # a rig names its episodes at reset: report that id, the one its recordings carry
                msg = f"episode {progress.episode_id or eid} failed: {type(e).__name__}: {e}"
                log.error(msg)
                outcome.errors.append(msg)
                bar.update(1)
                continue
            finally:
                for r in recorders:  # every path (done, failed, stream ended, Ctrl-C): release files and viewers
                    r.close()
            rec = res.record()
            rec["seed"] = cfg.seed
            if recorders:  # what the recordings cost this episode (wall seconds per recorder)
                rec["recording_seconds"] = {type(r).__name__: round(r.seconds, 3) for r in recorders}
            with results.open("a") as f:  # one complete line per finished episode
                f.write(json.dumps(rec) + "\n")
                f.flush()
                os.fsync(f.fileno())
            outcome.records.append(rec)
            outcome.finished += 1
            bar.update(1)
            say(episode_line(i + 1, len(episodes), rec))
            log.info(episode_line(i + 1, len(episodes), rec))
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        bar.close()


POSE_KEYS = ("final_position_error", "final_yaw_error_deg", "ate")


def summarize(records: list[dict]) -> dict[str, Any]:
    """Means over episodes of the `eval agent` keys; for pose-following episodes also the
    pose measures, each with its standard error (`<key>_se`)."""
    import numpy as np

    def se(v: list[float]) -> float | None:
        return float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None

    pose = [r for r in records if "final_position_error" in (r.get("extra") or {})]
    if pose:
        out: dict[str, Any] = {}
        for key in ("success", *POSE_KEYS):
            v = [float(r["success"] if key == "success" else r["extra"][key]) for r in pose
                 if (r["success"] if key == "success" else r["extra"].get(key)) is not None]
            out[key], out[f"{key}_se"] = (float(np.mean(v)) if v else None), se(v)
        out.update(episodes=len(records), planner_errors=int(sum(r.get("planner_errors") or 0 for r in records)))
        return out

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


def fail(msg: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def run_cli(cfg: RunConfig) -> int:
    """The body of `python -m v4s_agent.run` once the config is valid; returns the exit code."""
    from planners.base import PlannerError
    from v4s_agent.console import stdout_to_stderr

    try:
        with stdout_to_stderr():
            outcome = run_episodes(cfg, record=True)
    except (SetupError, ConfigError, PlannerError) as e:
        return fail(str(e))
    summary = summarize(outcome.records)
    summary.update(output_dir=str(outcome.output_dir), errors=len(outcome.errors), interrupted=outcome.interrupted,
                   stream_ended=outcome.stream_ended)
    print(json.dumps(summary), flush=True)
    if outcome.interrupted:
        print(f"interrupted: {len(outcome.records)} finished episode(s) kept in {outcome.output_dir / 'results.jsonl'}; "
              "run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if outcome.stream_ended and not outcome.records:
        print("error: the stream ended before any episode finished; use a longer recording or env.config.loop=true",
              file=sys.stderr)
        return EXIT_NO_EPISODE
    return 0


def main(argv: list[str] | None = None) -> int:
    """Hydra overrides composed with conf/config.yaml and checked before anything is built (the compose
    API: bad input is one line, exit 2, and no folder is made). `--cfg` prints the composed config."""
    from omegaconf import OmegaConf

    from v4s_agent.config import compose_run_config
    from v4s_agent.console import pop_verbose, setup_logging

    argv, verbose = pop_verbose(list(sys.argv[1:] if argv is None else argv))
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__, file=sys.stderr)
        return 0
    show = "--cfg" in argv
    argv = [a for a in argv if a != "--cfg"]
    if any(a.startswith("-") for a in argv):
        return fail(f"unknown flag(s) {[a for a in argv if a.startswith('-')]}; flags: -v, --cfg, --help; "
                    "settings are key=value overrides")
    setup_logging(verbose)
    try:
        cfg = compose_run_config(argv)
    except ConfigError as e:
        return fail(str(e))
    if show:
        print(OmegaConf.to_yaml(OmegaConf.structured(cfg)), end="")
        return 0
    try:
        return run_cli(cfg)
    except KeyboardInterrupt:  # before the first episode (env build, model load)
        return fail("interrupted before any episode finished", EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
