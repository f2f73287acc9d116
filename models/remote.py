"""An imagination on another machine: the wire format and `RemoteImagination`, the HTTP client that
`model=remote model.url=http://host:8765` loads (server: `python -m v4s_agent.serve`).

Wire format: request and response bodies are uncompressed `.npz` archives read with
`allow_pickle=False` (never pickle, never JSON lists of pixels). A request holds `frames` (N, H, W, 3)
uint8, `indices` (N,) int64, `seed` and `num_samples` (int64 scalars), and `instruction` (a unicode
scalar, grounding) or `waypoints` (F, 6) float64 (navigation). A response holds `frames`
(S, F, H, W, 3) uint8, `seconds` (the server's model time) and `meta` (a JSON string).

The client retries a busy server (503 + Retry-After) with backoff until `deadline_s`; an unreachable
or dead server is one `ImaginationUnavailableError`, which the planners' fault path turns into a
failed plan and a replan.
"""
from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.config import check
from models.factory import ModelConfig, ModelUnavailableError
from models.types import ImaginedVideo, VideoContext

WIRE_TYPE = "application/x-npz"
TOKEN_ENV = "V4S_SERVE_TOKEN"


class WireError(ValueError):
    """A malformed payload; `field` names the part that is wrong."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field


class ImaginationUnavailableError(RuntimeError):
    """The imagination server cannot be reached, died mid-request, or stayed busy past the deadline."""


@dataclass
class RemoteModelConfig(ModelConfig):
    """`model=remote`: a `python -m v4s_agent.serve` server at `url`."""

    name: str = "remote"
    url: str = "http://127.0.0.1:8765"
    token: str = ""  # bearer token ("" = the V4S_SERVE_TOKEN environment variable, if set)
    deadline_s: float = 600.0  # how long one call may take, retries of a busy server included

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.url.startswith(("http://", "https://")), f"model.url must be http://host:port, got {self.url!r}")
        check(self.deadline_s > 0, f"model.deadline_s must be > 0 seconds, got {self.deadline_s}")


def load_remote(model: RemoteModelConfig) -> RemoteImagination:
    """The registry's loader for `model=remote`: connects and reads the server's /health."""
    try:
        return RemoteImagination(model.url, token=model.token, deadline_s=model.deadline_s)
    except ImaginationUnavailableError as e:
        raise ModelUnavailableError(str(e)) from None


def encode(**arrays: Any) -> bytes:
    """npz bytes of `arrays` (str values become unicode scalars, ints int64 scalars)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def decode(data: bytes) -> dict[str, np.ndarray]:
    """npz bytes -> {name: array}; anything else (or a pickled object array) is a WireError on `body`."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # zipfile / numpy format errors of every kind
        raise WireError("body", f"not an npz archive of plain arrays ({type(e).__name__}: {str(e)[:120]})") from None


def _scalar_int(d: dict[str, np.ndarray], name: str, default: int) -> int:
    if name not in d:
        return default
    v = d[name]
    if v.shape != () or v.dtype.kind not in "iu":
        raise WireError(name, f"must be an integer scalar, got {v.dtype} {v.shape}")
    return int(v)


def parse_request(d: dict[str, np.ndarray], mode: str, max_samples: int) -> dict[str, Any]:
    """Checked keyword arguments of `ground` / `navigate` from a decoded request (WireError naming the field)."""
    for name in ("frames", "indices") + (("instruction",) if mode == "ground" else ("waypoints",)):
        if name not in d:
            raise WireError(name, "missing")
    f = d["frames"]
    if f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3 or not 1 <= len(f) <= 512 or max(f.shape[1:3]) > 1024:
        raise WireError("frames", f"must be uint8 (N, H, W, 3) with 1 <= N <= 512, H, W <= 1024; got {f.dtype} {f.shape}")
    if d["indices"].dtype.kind not in "iu":
        raise WireError("indices", f"must be integers, got {d['indices'].dtype}")
    try:
        context = VideoContext(frames=f, indices=d["indices"])
    except ValueError as e:
        raise WireError("indices", str(e)) from None
    n = _scalar_int(d, "num_samples", 1)
    if not 1 <= n <= max_samples:
        raise WireError("num_samples", f"must be in [1, {max_samples}] (the server's batch cap), got {n}")
    kw: dict[str, Any] = {"context": context, "num_samples": n, "seed": _scalar_int(d, "seed", 0)}
    if mode == "ground":
        ins = d["instruction"]
        if ins.dtype.kind != "U" or ins.shape != () or not 0 < len(str(ins)) <= 4096:
            raise WireError("instruction", "must be a non-empty unicode scalar of at most 4096 characters")
        kw["instruction"] = str(ins)
    else:
        wp = d["waypoints"]
        if wp.dtype.kind != "f" or wp.ndim != 2 or wp.shape[1] != 6 or not np.all(np.isfinite(wp)):
            raise WireError("waypoints", f"must be finite floats (F, 6), got {wp.dtype} {wp.shape}")
        kw["waypoints"] = wp.astype(np.float64)
    return kw


class RemoteImagination:
    """`Imagination` over HTTP: ground/navigate run on the server; sizes come from its /health."""

    def __init__(self, url: str, token: str = "", deadline_s: float = 600.0, connect_timeout_s: float = 5.0) -> None:
        import requests

        self.url = url.rstrip("/")
        self.deadline_s = float(deadline_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.session = requests.Session()
        token = token or os.environ.get(TOKEN_ENV, "")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.info = self._request("GET", "/health").json()
        self.height, self.width = int(self.info["height"]), int(self.info["width"])
        self.num_frames, self.num_box_frames = int(self.info["num_frames"]), int(self.info.get("num_box_frames", 0))

    def ground(self, context: VideoContext, instruction: str, num_samples: int = 1, seed: int = 0) -> ImaginedVideo:
        body = encode(frames=context.frames, indices=context.indices, instruction=str(instruction),
                      num_samples=int(num_samples), seed=int(seed))
        return self._video("/ground", body, "grounding", instruction=instruction)

    def navigate(self, context: VideoContext, waypoints: np.ndarray, num_samples: int = 1, seed: int = 0) -> ImaginedVideo:
        wp = np.asarray(waypoints, dtype=np.float64)
        body = encode(frames=context.frames, indices=context.indices, waypoints=wp, num_samples=int(num_samples),
                      seed=int(seed))
        return self._video("/navigate", body, "navigation", waypoints=wp)

    def _video(self, path: str, body: bytes, mode: str, **fields: Any) -> ImaginedVideo:
        t0 = time.perf_counter()
        d = decode(self._request("POST", path, data=body, headers={"Content-Type": WIRE_TYPE}).content)
        meta = json.loads(str(d["meta"])) if "meta" in d else {}
        meta.update(server_seconds=float(d["seconds"]), remote=self.url)
        return ImaginedVideo(frames=d["frames"], mode=mode, seconds=time.perf_counter() - t0, meta=meta, **fields)

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        """One HTTP call; 503 is retried with backoff (the server's Retry-After, at least) until the deadline."""
        import requests

        deadline = time.monotonic() + self.deadline_s
        backoff = 0.1
        while True:
            left = deadline - time.monotonic()
            try:
                r = self.session.request(method, self.url + path, timeout=(self.connect_timeout_s, max(left, 1.0)), **kw)
            except requests.RequestException as e:
                raise ImaginationUnavailableError(
                    f"imagination server {self.url} did not answer {path} ({type(e).__name__}); is "
                    f"`python -m v4s_agent.serve` running there?") from None
            if r.status_code == 503:
                wait = max(float(r.headers.get("Retry-After", 0) or 0), backoff)
                if time.monotonic() + wait > deadline:
                    raise ImaginationUnavailableError(f"imagination server {self.url} stayed busy for {self.deadline_s:.0f} s")
                time.sleep(wait)
                backoff = min(2 * backoff, 2.0)
                continue
            if r.status_code == 401:
                raise ImaginationUnavailableError(f"imagination server {self.url} refused the token: pass model.token= "
                                                  f"or set {TOKEN_ENV} to the server's token")
            if r.status_code >= 400:
                try:
                    detail = r.json().get("detail", r.text)
                except ValueError:
                    detail = r.text[:200]
                raise ValueError(f"imagination server {self.url}{path} answered {r.status_code}: {detail}")
            return r
