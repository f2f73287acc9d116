"""Fan-out of independent tasks (data shards, evaluation episodes) over local processes or Ray.

`executor=local` runs tasks in this process (one worker) or in a spawn process pool (one GL context
per fresh process). `executor=ray` submits one Ray task per item (`pip install "v4s-agent[ray]"`):
with no `ray_address` it starts a local Ray with `num_workers` CPUs, so it works on one machine
too; `ray_address=auto` (or `ray://host:10001`) joins a running cluster. Both executors retry a
failed task once, then report it by id while the rest finish, and hand every result to the driver
as it arrives, so callers append results right away and a rerun skips what is done.

Ray does the scheduling, retries and cluster plumbing; this module only maps our (id -> argument)
tasks onto it and onto a local pool with the same contract.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

EXECUTORS = ("local", "ray")
RAY_MISSING = 'executor=ray needs Ray: pip install "v4s-agent[ray]"'


class ExecutorError(ValueError):
    """A bad executor setting or a missing extra (one line with the fix)."""


@dataclass
class TaskFailure:
    """A task that failed twice (first try and one retry)."""

    id: str
    error: str


def check_executor(executor: str, num_workers: int) -> None:
    """Raise ExecutorError for an unknown executor or a worker count below 1."""
    if executor not in EXECUTORS:
        raise ExecutorError(f"executor={executor!r} is unknown; choose one of {list(EXECUTORS)}")
    if not isinstance(num_workers, int) or num_workers < 1:
        raise ExecutorError(f"num_workers={num_workers!r} must be a positive int")


def import_ray() -> Any:
    """Ray, imported lazily: it is an optional extra."""
    try:
        import ray
    except ImportError:
        raise ExecutorError(RAY_MISSING) from None
    return ray


def start_ray(address: str = "", num_cpus: int = 1) -> Any:
    """`ray.init` for our tasks: join `address`, or start a local Ray with `num_cpus` CPUs whose
    workers run at this process's priority (Ray's default lowers workers to nice 15, which starves
    them on a machine others share)."""
    ray = import_ray()
    if address:
        # a joined cluster's workers get the rendering backend this driver uses
        env = {"env_vars": {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}}
        try:
            return ray.init(address=address, include_dashboard=False, logging_level="ERROR", runtime_env=env)
        except ConnectionError as e:
            raise ExecutorError(f"cannot reach the Ray cluster at ray_address={address!r} ({e}); start one with "
                                f"`ray start --head` or leave ray_address unset for a local Ray") from None
    for attempt in range(2):
        try:
            return ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="ERROR",
                            _system_config={"worker_niceness": 0})
        except Exception as e:  # Ray waits a fixed 30 s for its raylet: a saturated machine can miss that once
            ray.shutdown()
            if attempt == 1 or "timed out during startup" not in str(e):
                raise
    return None


def _one_line(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e  # RayTaskError wraps the task's own exception
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"


def run_tasks(fn: Callable[[Any], Any], items: Mapping[str, Any], *, executor: str = "local", num_workers: int = 1,
              ray_address: str = "", desc: str = "tasks", progress: bool = True,
              on_result: Callable[[str, Any], None] | None = None) -> tuple[dict[str, Any], list[TaskFailure]]:
    """Run `fn(arg)` for every `id -> arg` of `items`; returns ({id: result}, failures).

    `fn` must be a module-level function (it is pickled to the workers). `on_result(id, result)` is
    called on the driver as each result arrives, in completion order."""
    from tqdm import tqdm

    check_executor(executor, num_workers)
    results: dict[str, Any] = {}
    failures: list[TaskFailure] = []
    bar = tqdm(total=len(items), desc=desc, file=sys.stderr, disable=not progress)

    def finish(tid: str, res: Any) -> None:
        results[tid] = res
        if on_result is not None:
            on_result(tid, res)
        bar.update()

    def fail(tid: str, e: BaseException) -> None:
        msg = f"{desc}: task {tid} failed twice: {_one_line(e)}"
        print(msg, file=sys.stderr, flush=True)
        failures.append(TaskFailure(tid, _one_line(e)))
        bar.update()

    try:
        if executor == "ray":
            _run_ray(fn, items, num_workers, ray_address, finish, fail)
        elif num_workers == 1 or len(items) <= 1:
            for tid, arg in items.items():
                for attempt in range(2):
                    try:
                        res = fn(arg)
                    except Exception as e:
                        if attempt == 1:
                            fail(tid, e)
                        continue
                    finish(tid, res)
                    break
        else:
            _run_pool(fn, items, num_workers, finish, fail)
    finally:
        bar.close()
    return results, failures


def _run_pool(fn: Callable, items: Mapping[str, Any], num_workers: int, finish: Callable, fail: Callable) -> None:
    import multiprocessing as mp

    with ProcessPoolExecutor(min(num_workers, len(items)), mp_context=mp.get_context("spawn")) as pool:
        futures: dict[Future, tuple[str, int]] = {pool.submit(fn, arg): (tid, 0) for tid, arg in items.items()}
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for f in done:
                tid, attempt = futures.pop(f)
                e = f.exception()
                if e is None:
                    finish(tid, f.result())
                elif attempt == 0:
                    futures[pool.submit(fn, items[tid])] = (tid, 1)
                else:
                    fail(tid, e)


def _run_ray(fn: Callable, items: Mapping[str, Any], num_workers: int, address: str, finish: Callable,
             fail: Callable) -> None:
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        start_ray(address, num_workers)
    try:
        task = ray.remote(num_cpus=1, max_retries=1, retry_exceptions=True)(fn)
        refs = {task.remote(arg): tid for tid, arg in items.items()}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    res = ray.get(ref)
                except Exception as e:  # already retried once by Ray
                    fail(refs[ref], e)
                    continue
                finish(refs[ref], res)
    finally:
        if started:
            ray.shutdown()
