"""`python -m v4s_agent.eval sweep [key=value ...]` — agent success against imagination quality.

The imagination-quality dial is `model=oracle_noisy` (planners.oracle.NoisyOracleImagination):
simulator renders of the true route, degraded by seeded knobs. For every dial setting, on the same
episodes, the sweep measures
- the imagination's IF with the imagination evaluator (`eval imagination`, v4s_agent/eval_imagination.py), and
- the agent's success and SPL (means with standard errors) for each planner in `planners=`
  (default `imagine` with oracle detection and `grounding` with its own imagination detector),
plus the same for the shipped model (`shipped=true`; with `model_detector=true` also `imagine` with the
model as its own detector, `detector=imagination`, planner label `imagine+imagination`) and frontier
exploration without imagination (`explore=true`, the line to beat). One JSON line per measurement is appended to `<out>/sweep.jsonl`
as it finishes (a rerun skips what is there; agent runs also resume per episode), then
`<out>/sweep.png` plots SR and SPL against IF, and one summary line goes to stdout: the IF above
which `imagine` beats exploration, and whether success rises with IF within the standard errors.
"""
from __future__ import annotations

import json
import math
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

# Dial settings, best to worst: model.<knob> overrides of model=oracle_noisy.
DIAL: dict[str, dict[str, float]] = {
    "q100": {},
    "q85": {"p_wrong": 0.15, "pose_noise_m": 0.1, "pose_noise_deg": 5.0, "p_no_box": 0.1},
    "q70": {"p_wrong": 0.3, "pose_noise_m": 0.2, "pose_noise_deg": 10.0, "resolution": 48, "blur": 0.7, "p_no_box": 0.2},
    "q50": {"p_wrong": 0.5, "pose_noise_m": 0.3, "pose_noise_deg": 15.0, "resolution": 48, "blur": 1.0, "p_no_box": 0.3},
    "q30": {"p_wrong": 0.7, "pose_noise_m": 0.4, "pose_noise_deg": 20.0, "resolution": 48, "blur": 1.2, "p_no_box": 0.4},
    "q10": {"p_wrong": 0.9, "pose_noise_m": 0.5, "pose_noise_deg": 25.0, "resolution": 48, "blur": 1.5, "p_no_box": 0.5},
}
SHIPPED, EXPLORE = "shipped", "explore"


class SweepError(ValueError):
    """Bad arguments (one line, exit 2)."""


@dataclass
class SweepConfig:
    split: str = "test"
    episodes: int = 40  # agent episodes per (setting, planner)
    seed: int = 0
    if_episodes: int = 16  # imagination-evaluator cases per setting
    settings: str | None = "all"  # "all", "none" (only shipped / explore) or a comma list of DIAL names
    planners: str = "imagine,grounding"
    shipped: bool = True  # also the shipped tiny model (model=tiny)
    model_detector: bool = True  # with shipped: also imagine + the shipped model as its own detector (detector=imagination)
    explore: bool = True  # also frontier exploration without imagination (model=none)
    out: str = "outputs/sweep"
    max_steps: int = 120
    executor: str = "local"  # agent episodes as tasks (models/executor.py): local | ray
    num_workers: int = 1  # > 1: a process pool (local) or Ray workers; results are per episode as in one process

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.if_episodes < 1:
            raise SweepError(f"episodes and if_episodes must be >= 1, got {self.episodes}, {self.if_episodes}")
        bad = [s for s in self.setting_names() if s not in DIAL]
        if bad:
            raise SweepError(f"unknown dial setting(s) {bad}; choose from {list(DIAL)} or settings=all")
        badp = [p for p in self.planner_names() if p not in ("imagine", "grounding")]
        if badp:
            raise SweepError(f"sweep planners must be imagine and/or grounding, got {badp}")
        from models.executor import check_executor

        check_executor(self.executor, self.num_workers)

    def setting_names(self) -> list[str]:
        if self.settings in (None, "", "none"):
            return []
        return list(DIAL) if self.settings == "all" else [s.strip() for s in self.settings.split(",") if s.strip()]

    def planner_names(self) -> list[str]:
        return [p.strip() for p in self.planners.split(",") if p.strip()]


def dial_model_overrides(setting: str) -> list[str]:
    """The dial's overrides. The planners read the path back from the poses the dial rendered
    (readback=true), as the oracle row does, so the dial varies generation quality only; the
    shipped model is read back by flow (it reports no poses)."""
    return ["model=oracle_noisy", "planner.readback='true'"] + [f"model.{k}={v}" for k, v in DIAL[setting].items()]


class DialPipeline:
    """The dial as the imagination evaluator's `pipe`: the evaluator binds each case (the world is
    reset to an episode starting at the case's pose, for the case's category) before generating."""

    def __init__(self, overrides: dict[str, float], seed: int = 0, hfov_deg: float = 79.0) -> None:
        from planners.oracle import NoisyOracleConfig

        self.model = NoisyOracleConfig(seed=seed, **overrides)
        self.height = self.width = self.model.resolution
        self.num_frames, self.num_box_frames = self.model.num_frames, self.model.num_box_frames
        self.max_context_frames = 16
        self.settings = SimpleNamespace(hfov_deg=hfov_deg, num_inference_steps=1, guidance_scale=1.0)
        self._imag: Any = None
        self._case = 0

    def bind_case(self, world: Any, case: Any) -> None:
        from envs.types import Episode
        from planners.oracle import NoisyOracleImagination

        m = self.model
        if self._imag is None or self._imag.world is not world:
            self._imag = NoisyOracleImagination(world, m.resolution, m.num_frames, m.num_box_frames, m.p_wrong,
                                                m.pose_noise_m, m.pose_noise_deg, m.blur, m.p_no_box, m.seed)
        self._case += 1
        world.reset(Episode(f"if-{case.scene_seed}-{self._case}", case.scene_seed, case.station.current, case.category))

    def __call__(self, context: Any, instruction: str = "", num_samples: int = 1, seed: int = 0, **_: Any) -> Any:
        return self._imag.ground(context, instruction, num_samples=num_samples, seed=seed)


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std / sqrt(n); 0 for one value)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0


def _done(path: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
                out[rec["key"]] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return out


def _append(path: Path, rec: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(rec) + "\n")
        f.flush()


def measure_if(cfg: SweepConfig, setting: str) -> dict[str, Any]:
    from v4s_agent.eval_imagination import ImaginationEvalConfig, evaluate

    # natural draws only (out_of_view=0): the dial's IF on the states the agent meets, as the sweep was measured
    ecfg = ImaginationEvalConfig(split=cfg.split, episodes=cfg.if_episodes, seed=cfg.seed, baselines="none",
                                 navigation=False, out_of_view=0.0)
    pipe = None if setting == SHIPPED else DialPipeline(DIAL[setting], seed=cfg.seed)
    r = evaluate(ecfg, pipe=pipe)
    return {k: r[k] for k in ("IF", "IF_box", "SD", "box_found", "episodes")}


def agent_overrides(cfg: SweepConfig, setting: str, planner: str) -> list[str]:
    """`v4s_agent.run` overrides of one agent row; `planner` is a planner name, or NAME+DETECTOR."""
    if setting == EXPLORE:
        model = ["model=none"]
    elif setting == SHIPPED:
        model = ["model=tiny"]
    else:
        model = dial_model_overrides(setting)
    name, _, detector = planner.partition("+")
    return [f"planner={name}", *model, *([f"detector={detector}"] if detector else []), f"split={cfg.split}",
            f"episodes={cfg.episodes}", f"seed={cfg.seed}", f"max_steps={cfg.max_steps}", "rerun=false", "gif=false",
            "resume=true", f"run_name=sweep-{setting}-{planner}", f"output_dir={Path(cfg.out) / f'{setting}-{planner}'}"]


def sweep_jobs(cfg: SweepConfig) -> list[tuple[str, str, str]]:
    """(kind, setting, planner) of every measurement, in the order they run."""
    settings = cfg.setting_names() + ([SHIPPED] if cfg.shipped else [])  # the dial's quick rows first
    jobs: list[tuple[str, str, str]] = [("agent", EXPLORE, "explore")] if cfg.explore else []
    for s in settings:
        jobs.append(("imagination", s, ""))
        jobs += [("agent", s, p) for p in cfg.planner_names()]
        if s == SHIPPED and cfg.model_detector:
            jobs.append(("agent", s, "imagine+imagination"))
    return jobs


def measure_agent(cfg: SweepConfig, setting: str, planner: str) -> dict[str, Any]:
    from planners.base import PlannerError
    from v4s_agent.config import compose_run_config
    from v4s_agent.run import SetupError, run_episodes

    ov = agent_overrides(cfg, setting, planner)
    try:
        if cfg.executor == "local" and cfg.num_workers == 1:
            outcome = run_episodes(compose_run_config(ov), record=False)
        else:
            from v4s_agent.episode_tasks import run_episodes_as_tasks

            outcome = run_episodes_as_tasks(compose_run_config(ov), cfg.executor, cfg.num_workers)
    except (SetupError, PlannerError) as e:  # one line, as `eval agent` reports it
        raise SweepError(str(e)) from None
    if outcome.interrupted:
        raise KeyboardInterrupt
    recs = outcome.records
    sr, sr_se = mean_se([r["success"] or 0.0 for r in recs])
    spl, spl_se = mean_se([r["spl"] or 0.0 for r in recs])
    return {"success": sr, "success_se": sr_se, "spl": spl, "spl_se": spl_se, "episodes": len(recs),
            "episode_ids_crc": zlib.crc32(",".join(sorted(r["episode_id"] for r in recs)).encode()), "overrides": ov}


def summarize_sweep(rows: list[dict]) -> dict[str, Any]:
    """Per planner: IF-sorted points, whether SR rises with IF within the standard errors, and the
    IF above which `imagine` beats exploration (linear interpolation between the dial points)."""
    ifs = {r["setting"]: r["IF"] for r in rows if r["kind"] == "imagination"}
    agents = [r for r in rows if r["kind"] == "agent"]
    explore = next((r for r in agents if r["setting"] == EXPLORE), None)
    out: dict[str, Any] = {"explore_success": explore["success"] if explore else None}
    for planner in sorted({r["planner"] for r in agents if r["setting"] != EXPLORE}):
        pts = sorted((ifs[r["setting"]], r["success"], r["success_se"], r["spl"], r["setting"]) for r in agents
                     if r["planner"] == planner and r["setting"] in ifs and r["setting"] != SHIPPED)
        rising = all(b[1] + (a[2] + b[2]) >= a[1] for a, b in zip(pts, pts[1:]))
        entry: dict[str, Any] = {"points": [{"setting": p[4], "IF": p[0], "success": p[1], "success_se": p[2], "spl": p[3]} for p in pts],
                                 "success_rises_with_IF": rising}
        if explore and pts:
            entry["beats_explore_above_IF"] = crossover(pts, explore["success"])
        out[planner] = entry
    return out


def crossover(pts: list[tuple], level: float) -> float | None:
    """Lowest IF from which the (IF-sorted) success curve stays above `level`; None if it never does."""
    above = [p[1] > level for p in pts]
    if not above[-1]:
        return None
    i = len(pts) - 1
    while i > 0 and above[i - 1]:
        i -= 1
    if i == 0:
        return float(pts[0][0])
    (x0, y0), (x1, y1) = pts[i - 1][:2], pts[i][:2]
    return float(x0 + (level - y0) * (x1 - x0) / (y1 - y0)) if y1 != y0 else float(x1)


def plot_sweep(rows: list[dict], summary: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SweepError("the sweep plot needs matplotlib: pip install 'v4s-agent[viz]'") from None
    ifs = {r["setting"]: r["IF"] for r in rows if r["kind"] == "imagination"}
    agents = [r for r in rows if r["kind"] == "agent"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colours = {"imagine": "tab:blue", "grounding": "tab:orange", "imagine+imagination": "tab:green"}
    for ax, key, label in ((axes[0], "success", "success rate"), (axes[1], "spl", "SPL")):
        for planner, c in colours.items():
            pts = sorted((ifs[r["setting"]], r[key], r[f"{key}_se"]) for r in agents
                         if r["planner"] == planner and r["setting"] in ifs and r["setting"] != SHIPPED)
            if pts:
                x, y, e = zip(*pts)
                ax.errorbar(x, y, yerr=e, marker="o", color=c, capsize=3, label=f"{planner} (dial)")
            shipped = next((r for r in agents if r["planner"] == planner and r["setting"] == SHIPPED), None)
            if shipped is not None and SHIPPED in ifs:
                ax.errorbar([ifs[SHIPPED]], [shipped[key]], yerr=[shipped[f"{key}_se"]], marker="*", markersize=14,
                            color=c, linestyle="none", capsize=3, label=f"{planner} (shipped v4s-tiny)")
        ex = next((r for r in agents if r["setting"] == EXPLORE), None)
        if ex is not None:
            ax.axhline(ex[key], color="grey", linestyle="--", label="explore (no imagination)")
            ax.axhspan(ex[key] - ex[f"{key}_se"], ex[key] + ex[f"{key}_se"], color="grey", alpha=0.15)
        ax.set_xlabel("imagination IF (eval imagination)")
        ax.set_ylabel(label)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    x = (summary.get("imagine") or {}).get("beats_explore_above_IF")
    axes[0].set_title("imagine beats explore above IF = " + (f"{x:.2f}" if x is not None else "(never)"), fontsize=10)
    axes[1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def eval_sweep(argv: list[str]) -> dict[str, Any]:
    """Entry point of `python -m v4s_agent.eval sweep key=value ...`."""
    from envs.config import parse_overrides

    cfg = parse_overrides(SweepConfig, list(argv))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "sweep.jsonl"
    done = _done(table)
    for kind, setting, planner in sweep_jobs(cfg):
        key = f"{kind}/{setting}/{planner}/{cfg.split}/{cfg.seed}/{cfg.episodes if kind == 'agent' else cfg.if_episodes}"
        if key in done:
            continue
        print(f"sweep: {kind} {setting} {planner}", file=sys.stderr, flush=True)
        res = measure_if(cfg, setting) if kind == "imagination" else measure_agent(cfg, setting, planner)
        rec = {"key": key, "kind": kind, "setting": setting, "planner": planner, "knobs": DIAL.get(setting, {}), **res}
        _append(table, rec)
        done[key] = rec
    rows = [done[k] for k in done if k.endswith(f"/{cfg.split}/{cfg.seed}/{cfg.episodes}") or
            (done[k]["kind"] == "imagination" and k.endswith(f"/{cfg.split}/{cfg.seed}/{cfg.if_episodes}"))]
    summary = summarize_sweep(rows)
    plot_sweep(rows, summary, out / "sweep.png")
    return {**summary, "table": str(table), "plot": str(out / "sweep.png"), "split": cfg.split, "seed": cfg.seed,
            "episodes": cfg.episodes, "if_episodes": cfg.if_episodes}
