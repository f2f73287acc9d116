"""`python -m v4s_agent.serve model=tiny host=127.0.0.1 port=8765 [--token T] [key=value ...]`

The imagination as an HTTP service (FastAPI on uvicorn), for robots whose computer cannot hold the
model: `POST /ground`, `POST /navigate` (npz bodies, models/remote.py describes the wire format) and
`GET /health` (the model, its settings, the device). Agents use it with `model=remote
model.url=http://host:8765`; `run`, `eval agent` and every planner work unchanged.

Safety: it binds only to `host` (loopback by default). On any other address it requires a bearer
token (`--token T`, `token=T` or the V4S_SERVE_TOKEN environment variable) and refuses to start
without one. Bodies over `max_request_mb` get 413, a bad payload 400 naming the field, a batch over
`max_samples` 400. One model call runs at a time (it uses every core or the whole GPU); up to
`max_waiting` more wait, beyond that the answer is 503 with Retry-After and the client backs off.
Model keys (`model=...`, `model.num_inference_steps=...`) are the run's Hydra model group.
"""
from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from envs.config import parse_overrides
from models.remote import TOKEN_ENV, WIRE_TYPE, WireError, decode, encode, parse_request

os.environ.setdefault("MUJOCO_GL", "egl")
SERVE_MISSING = 'serving needs FastAPI and uvicorn: pip install "v4s-agent[serve]"'

try:  # FastAPI resolves the endpoints' `request: Request` annotation from this module's globals
    from fastapi import Request
except ImportError:  # the serve extra is missing; main() says so in one line
    Request = Any  # type: ignore[misc,assignment]


@dataclass
class ServeConfig:
    """Server keys (everything else on the command line is a model override)."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str = ""  # required beyond loopback; also --token or the V4S_SERVE_TOKEN environment variable
    max_request_mb: float = 64.0
    max_samples: int = 8  # videos per request (the batch the model runs at once)
    max_waiting: int = 8  # requests queued behind the running one before 503
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port={self.port} must be in 1..65535")
        if self.max_request_mb <= 0 or self.max_samples < 1 or self.max_waiting < 0:
            raise ValueError("max_request_mb must be > 0, max_samples >= 1 and max_waiting >= 0")
        if not self.token and not is_loopback(self.host):
            raise ValueError(f"host={self.host} is reachable from other machines: give a bearer token (--token T, token=T "
                             f"or {TOKEN_ENV}=T) or bind to 127.0.0.1")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe(imagination: Any, model_name: str) -> dict[str, Any]:
    """What /health reports: the model, its sampling settings and the device it runs on."""
    settings = getattr(imagination, "settings", None)
    device = getattr(imagination, "device", "cpu")
    return {"model": model_name, "height": int(imagination.height), "width": int(imagination.width),
            "num_frames": int(imagination.num_frames), "num_box_frames": int(getattr(imagination, "num_box_frames", 0)),
            "settings": dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else {},
            "device": str(device)}


def make_app(imagination: Any, cfg: ServeConfig, info: dict[str, Any]) -> Any:
    """The FastAPI app serving `imagination` with the limits of `cfg`."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="v4s imagination", docs_url=None, redoc_url=None, openapi_url=None)
    model_lock = threading.Lock()
    state = {"admitted": 0, "served": 0, "busy_rejections": 0}
    max_bytes = int(cfg.max_request_mb * 2**20)

    def error(status: int, detail: str, **headers: str) -> Any:
        return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)

    def authorised(request: Request) -> bool:
        if not cfg.token:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {cfg.token}".encode())

    @app.get("/health")
    async def health(request: Request) -> Any:
        if not authorised(request):
            return error(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
        return {**info, "running": min(state["admitted"], 1), "waiting": max(state["admitted"] - 1, 0),
                "served": state["served"], "busy_rejections": state["busy_rejections"],
                "max_samples": cfg.max_samples, "max_request_bytes": max_bytes}

    async def serve(request: Request, mode: str) -> Any:
        if not authorised(request):
            return error(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
        if int(request.headers.get("content-length") or 0) > max_bytes:
            return error(413, f"body: over the server's max_request_mb={cfg.max_request_mb}")
        body = bytearray()
        async for chunk in request.stream():  # a lying or missing Content-Length is capped here
            body += chunk
            if len(body) > max_bytes:
                return error(413, f"body: over the server's max_request_mb={cfg.max_request_mb}")
        try:
            kw = parse_request(decode(bytes(body)), mode, cfg.max_samples)
        except WireError as e:
            return error(400, str(e))
        if state["admitted"] >= 1 + cfg.max_waiting:  # one running + max_waiting queued
            state["busy_rejections"] += 1
            return error(503, "busy: retry later", **{"Retry-After": str(cfg.retry_after_s)})
        state["admitted"] += 1

        def call() -> Any:
            with model_lock:
                return getattr(imagination, mode)(**kw)

        try:
            video = await run_in_threadpool(call)
        except ValueError as e:  # the model's own argument checks (e.g. waypoints rows != num_frames)
            field = "waypoints" if "waypoints" in str(e) else "context" if "context" in str(e) else "request"
            return error(400, f"{field}: {str(e).splitlines()[0]}")
        except Exception as e:
            return error(500, f"model failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        finally:
            state["admitted"] -= 1
        state["served"] += 1
        out = encode(frames=video.frames, seconds=float(video.seconds), meta=json.dumps(video.meta, default=str))
        return Response(out, media_type=WIRE_TYPE)

    @app.post("/ground")
    async def ground(request: Request) -> Any:
        return await serve(request, "ground")

    @app.post("/navigate")
    async def navigate(request: Request) -> Any:
        return await serve(request, "navigate")

    return app


def split_args(argv: list[str]) -> tuple[ServeConfig, list[str]]:
    """Command line -> (server config, model overrides); `--token T` / `--token=T` are accepted too."""
    keys = {f.name for f in dataclasses.fields(ServeConfig)}
    argv = list(argv)
    if "--token" in argv:
        i = argv.index("--token")
        if i + 1 >= len(argv):
            raise ValueError("--token needs a value: --token T")
        argv[i : i + 2] = [f"token={argv[i + 1]}"]
    argv = [a[2:] if a.startswith("--token=") else a for a in argv]
    serve_args = [a for a in argv if a.split("=", 1)[0] in keys]
    model_args = [a for a in argv if a.split("=", 1)[0] not in keys]
    bad = [a for a in model_args if not a.startswith("model")]
    if bad:
        raise ValueError(f"unknown argument(s) {bad}; server keys: {sorted(keys)}, model keys: model=NAME model.KEY=VALUE")
    env_token = os.environ.get(TOKEN_ENV, "")
    return parse_overrides(ServeConfig, ([f"token={env_token}"] if env_token else []) + serve_args), model_args


def load_model(model_args: list[str]) -> tuple[Any, str]:
    """(imagination, name) from `model=...` overrides, composed like `v4s_agent.run`'s model group."""
    from v4s_agent.config import compose_run_config
    from v4s_agent.run import load_imagination

    cfg = compose_run_config(["model=tiny", *model_args])
    if cfg.model.name in ("none", "remote"):
        raise ValueError(f"model={cfg.model.name} cannot be served; use model=tiny or model=random")
    return load_imagination(cfg.model), cfg.model.name


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg, model_args = split_args(argv)
        imagination, name = load_model(model_args)
    except (ValueError, RuntimeError) as e:  # config errors, SetupError (missing checkpoint)
        print(f"serve: {e}", file=sys.stderr)
        return 2
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        print(f"serve: {SERVE_MISSING}", file=sys.stderr)
        return 2
    info = describe(imagination, name)
    print(f"serving {name} ({info['height']}x{info['width']}, {info['num_frames']} frames) on http://{cfg.host}:{cfg.port}"
          f"{' with a bearer token' if cfg.token else ''}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    uvicorn.run(make_app(imagination, cfg, info), host=cfg.host, port=cfg.port, log_level="warning")
    print(f"stopped after {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# ------------------------------------------------------------------------------------- benchmark
@dataclass
class ServeBenchConfig:
    model: str = "tiny"
    requests: int = 8  # grounding calls timed each way
    clients: int = 4  # concurrent clients for the requests/s measurement
    context_frames: int = 8  # the grounding planner's default context
    # torch CPU threads on both sides (the server gets OMP_NUM_THREADS): equal counts make the outputs
    # bitwise comparable, and on a loaded machine spinning thread teams distort the timing of either side
    threads: int = 1


def bench_serve(argv: list[str]) -> dict[str, Any]:
    """`python -m v4s_agent.bench serve`: latency of a grounding call through a loopback server against
    the same call in-process (interleaved, same seeds, results compared), then requests/s with
    `clients` concurrent clients against the in-process rate."""
    import socket
    import statistics
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import torch

    from models.remote import RemoteImagination
    from models.types import VideoContext

    cfg = parse_overrides(ServeBenchConfig, argv)
    torch.set_num_threads(cfg.threads)
    local, _ = load_model([f"model={cfg.model}"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "v4s_agent.serve", f"model={cfg.model}", f"port={port}",
                             f"max_waiting={cfg.clients}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": str(cfg.threads)})
    try:
        url = f"http://127.0.0.1:{port}"
        t_end = time.monotonic() + 300
        while True:
            try:
                remote = RemoteImagination(url, deadline_s=600)
                break
            except RuntimeError:
                if proc.poll() is not None or time.monotonic() > t_end:
                    raise RuntimeError("the benchmark's server did not start") from None
                time.sleep(0.5)
        rng = np.random.default_rng(0)
        ctx = VideoContext(rng.integers(0, 256, (cfg.context_frames, local.height, local.width, 3), dtype=np.uint8),
                           np.arange(cfg.context_frames) * 3)
        text = "The camera moves across a flat. Finally, it focuses on a chair in the centre of the frame."
        remote.ground(ctx, text, seed=0), local.ground(ctx, text, seed=0)  # warm-up both
        t_local, t_remote, same = [], [], True
        for i in range(cfg.requests):
            t0 = time.perf_counter()
            a = local.ground(ctx, text, seed=i).frames
            t1 = time.perf_counter()
            b = remote.ground(ctx, text, seed=i).frames
            t2 = time.perf_counter()
            t_local.append(t1 - t0)
            t_remote.append(t2 - t1)
            same &= bool(np.array_equal(a, b))
            print(f"request {i}: in-process {t_local[-1]:.3f} s, remote {t_remote[-1]:.3f} s", file=sys.stderr, flush=True)
        clients = [RemoteImagination(url, deadline_s=600) for _ in range(cfg.clients)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(cfg.clients) as pool:
            list(pool.map(lambda i: clients[i % cfg.clients].ground(ctx, text, seed=i), range(cfg.requests)))
        wall = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait()
    med_l, med_r = statistics.median(t_local), statistics.median(t_remote)
    return {"model": cfg.model, "requests": cfg.requests, "identical_to_in_process": same,
            "in_process_s": round(med_l, 4), "remote_s": round(med_r, 4), "added_latency_s": round(med_r - med_l, 4),
            "latency_ratio": round(med_r / med_l, 3), "in_process_requests_per_s": round(1 / med_l, 3),
            "remote_requests_per_s_concurrent": round(cfg.requests / wall, 3), "clients": cfg.clients, "threads": cfg.threads,
            "loadavg": [round(x, 2) for x in os.getloadavg()]}
