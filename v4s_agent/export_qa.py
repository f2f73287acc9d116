"""Export World2VLM-style spatial QA (tasks A1-A4, D1-D4) from simulated or imagined rollouts.

    python -m v4s_agent.export_qa source=simulated split=train n=1000 [out=DIR seed=0 ...]
    python -m v4s_agent.export_qa source=imagined split=val n=40 [checkpoint=default|tiny|PATH steps=10]
    python -m v4s_agent.export_qa validate path=DIR/records.jsonl

Records are validated as they are made and appended to DIR/records.jsonl (rejects to
rejected.jsonl with their reasons); rerunning the same command resumes. Progress goes to stderr;
stdout gets one JSON line: counts per task, rejection counts per reason, flagged counts, wall time.
Why: the simulator + imagination produce action-aligned view pairs with known poses and boxes, the
training-time supervision World2VLM distils into VLMs.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from envs.config import check_at_least, check_one_of, parse_overrides  # noqa: E402

log = logging.getLogger("v4s_agent.export_qa")


@dataclass
class ValidateConfig:
    """`python -m v4s_agent.export_qa validate path=DIR/records.jsonl (or DIR)`."""

    path: str = ""

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("usage: python -m v4s_agent.export_qa validate path=DIR/records.jsonl (or DIR)")


@dataclass
class ExportConfig:
    """Settings of one export (stored in DIR/config.json; a resume must match them)."""

    source: str = "simulated"
    split: str = "train"
    n: int = 100
    out: str = ""
    seed: int = 0
    scenes: int = 20  # scene seeds taken from the split
    per_scene: int = 10  # consecutive trajectories per scene
    tasks: str = "A1,A2,A3,A4,D1,D2,D3,D4"
    balance: bool = True  # cap each task at ceil(n / len(tasks))
    size: int = 128  # simulator render size (imagined frames are the pipeline's size)
    checkpoint: str = "default"  # imagined: default (shipped tiny; falls back to tiny with a warning) | tiny | PATH
    steps: int = 0  # imagined: denoising steps (0 = the checkpoint's setting)
    readback: str = "flow"  # imagined: flow | idm
    max_trajectories: int = 0  # 0 = 20 * n

    def __post_init__(self) -> None:
        from envs.splits import SPLITS
        from v4s_agent.qa.tasks import TASKS

        check_one_of(self, source=("simulated", "imagined"), split=sorted(SPLITS))
        check_at_least(self, n=1, scenes=1, per_scene=1)
        if self.scenes > len(SPLITS[self.split]):
            raise ValueError(f"split {self.split!r} has {len(SPLITS[self.split])} scenes, asked for scenes={self.scenes}")
        bad = [t for t in self.task_list if t not in TASKS]
        if bad or not self.task_list:
            raise ValueError(f"tasks must be a comma list of {','.join(TASKS)}, got {self.tasks!r}")
        if not 16 <= self.size <= 1024:
            raise ValueError(f"size must be in [16, 1024] pixels, got {self.size}")
        if self.steps < 0 or self.max_trajectories < 0:
            raise ValueError("steps and max_trajectories must be >= 0")
        check_one_of(self, readback=("flow", "idm"))
        if not self.out:
            self.out = f"outputs/qa/{self.source}-{self.split}-n{self.n}-s{self.seed}"

    @property
    def task_list(self) -> list[str]:
        return [t.strip() for t in self.tasks.split(",") if t.strip()]

    def identity(self) -> dict[str, Any]:
        """What a resume must match (n may grow: a larger n continues the export; the folder may move)."""
        d = asdict(self)
        d.pop("n")
        d.pop("out")
        return d


def _pipeline(cfg: ExportConfig):
    from models.pipeline import load_default_pipeline, tiny_pipeline

    if cfg.checkpoint == "tiny":
        return tiny_pipeline(cfg.seed), "tiny-random-init"
    if cfg.checkpoint == "default":
        try:
            return load_default_pipeline(), "default"
        except FileNotFoundError as e:
            log.warning("%s -- falling back to the random-init tiny pipeline: imagined answers will mostly be flagged", e)
            return tiny_pipeline(cfg.seed), "tiny-random-init"
    return load_default_pipeline(path=cfg.checkpoint), cfg.checkpoint


def summarise(out: Path, trajectories: list[dict], records: list[dict], rejected: list[dict]) -> dict[str, Any]:
    flagged = Counter(f for r in records for f in r["metadata"].get("flag_reasons", []))
    traj_status = Counter(t["status"] for t in trajectories)
    return {
        "records": len(records),
        "per_task": dict(sorted(Counter(r["task"] for r in records).items())),
        "answer_source": dict(Counter(r["answer_source"] for r in records)),
        "rejected_total": len(rejected),
        "rejected": dict(sorted(Counter(r["reasons"][0] for r in rejected).items())),
        "rejected_per_task": dict(sorted(Counter(r["task"] for r in rejected).items())),
        "flagged_total": sum(bool(r["metadata"].get("flagged")) for r in records),
        "flagged": dict(sorted(flagged.items())),
        "trajectories": len(trajectories),
        "trajectory_status": dict(sorted(traj_status.items())),
        "truncated_pairs": sum(bool(t.get("truncated")) for t in trajectories),
        "task_skips": dict(sorted(sum((Counter(t.get("task_skips", {})) for t in trajectories), Counter()).items())),
        "object_filter": dict(sorted(sum((Counter(t.get("object_filter", {})) for t in trajectories), Counter()).items())),
        "out": str(out),
    }


def export(cfg: ExportConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) an export; returns the summary dict."""
    from tqdm import tqdm

    from envs.embedded.config import WorldConfig
    from envs.embedded.world import EmbeddedWorld
    from envs.splits import split_seeds
    from v4s_agent.qa.sources import ImaginedSource, SimulatedSource, SkipTrajectory, SourceConfig
    from v4s_agent.qa.tasks import Skip, TaskBuilder, Tolerances
    from v4s_agent.qa.validate import Validator
    from v4s_agent.qa.writers import ExportWriter

    t0 = time.perf_counter()
    writer = ExportWriter(cfg.out, cfg.identity())
    scene_seeds = split_seeds(cfg.split, cfg.scenes)
    world = EmbeddedWorld(WorldConfig(width=cfg.size, height=cfg.size), scene_seed=scene_seeds[0])
    if cfg.source == "imagined":
        pipe, ckpt = _pipeline(cfg)
        if cfg.steps:
            pipe.settings.num_inference_steps = cfg.steps  # navigate() samples with the pipeline's settings
        source = ImaginedSource(world, pipe, SourceConfig(readback=cfg.readback))
    else:
        source, ckpt = SimulatedSource(world, SourceConfig()), None
    tol = Tolerances()
    validator = Validator(writer.out)
    validator.seen.update(r["id"] for r in writer.records)
    tasks = cfg.task_list
    cap = math.ceil(cfg.n / len(tasks)) if cfg.balance else cfg.n
    max_traj = cfg.max_trajectories or 20 * cfg.n
    bar = tqdm(total=cfg.n, initial=min(len(writer.records), cfg.n), file=sys.stderr, disable=not progress,
               desc=f"export_qa {cfg.source}")
    ti = writer.done_through + 1
    resumed = writer.resumed
    try:
        while len(writer.records) < cfg.n and ti < max_traj:
            needed = [t for t in tasks if writer.per_task[t] < cap]
            rng = np.random.default_rng([cfg.seed, ti])
            scene = scene_seeds[(ti // cfg.per_scene) % len(scene_seeds)]
            line: dict[str, Any] = {"traj_index": ti, "scene_seed": scene}
            good: list[dict] = []
            bad: list[dict] = []
            try:
                tr = source.make(ti, scene, rng, needed)
            except SkipTrajectory as e:
                line["status"] = f"skip:{e.args[0]}"
            else:
                imgs = (writer.image(f"t{ti:06d}_anchor", tr.anchor_rgb), writer.image(f"t{ti:06d}_target", tr.target_rgb))
                answers = Counter((r["task"], r["answer"]) for r in writer.records if r["task"] in ("A4", "D2", "D4"))
                builder = TaskBuilder(tr, imgs, rng, tol, cfg.split, answers)
                skips: Counter = Counter()
                for task in needed:
                    try:
                        rec = builder.build(task).to_json()
                    except Skip as e:
                        skips[f"{task}:{e.args[0]}"] += 1
                        continue
                    reasons = validator.check(rec)
                    if reasons:
                        bad.append({**rec, "reasons": reasons})
                    elif len(writer.records) + len(good) < cfg.n:
                        good.append(rec)
                line.update(status="ok", commanded=rec_text(tr.commanded), program=rec_text(tr.program),
                            endpoint_frame=tr.endpoint_frame, truncated=tr.truncated, readback=tr.readback,
                            records=[r["id"] for r in good], task_skips=dict(skips),
                            object_filter=dict(Counter(o.filter_reason or "pass" for o in tr.anchor_objects.values())),
                            **tr.extra)
            writer.write_trajectory(good, bad, line)
            bar.update(len(good))
            ti += 1
    finally:
        bar.close()
        world.close()
    summary = {"command": "export", "source": cfg.source, "split": cfg.split, "n": cfg.n, "seed": cfg.seed,
               "checkpoint": ckpt, "resumed": resumed}
    summary.update(summarise(writer.out, writer.trajectories, writer.records, writer.rejected))
    summary["wall_s"] = round(time.perf_counter() - t0, 2)
    if len(writer.records) < cfg.n:
        summary["warning"] = f"stopped at max_trajectories={max_traj} with {len(writer.records)} of {cfg.n} records"
    return summary


def rec_text(program) -> str:
    from v4s_agent.qa.actions import program_text

    return program_text(program)


def main(argv: list[str] | None = None) -> int:
    from v4s_agent.console import pop_verbose, setup_logging, stdout_to_stderr

    argv, verbose = pop_verbose(list(sys.argv[1:] if argv is None else argv))
    setup_logging(verbose)
    try:
        with stdout_to_stderr():  # library output never reaches the JSON line's stream
            if argv and argv[0] == "validate":
                from v4s_agent.qa.validate import validate_file

                p = Path(parse_overrides(ValidateConfig, argv[1:]).path)
                report = validate_file(p / "records.jsonl" if p.is_dir() else p)
                summary = {"command": "validate", "path": str(p), **report.summary()}
                code = 0 if report.valid == report.total else 1
            else:
                summary, code = export(parse_overrides(ExportConfig, argv)), 0
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
