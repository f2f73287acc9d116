"""Real-browser check of an episode recording (not part of the tests): serve a `.rrd` with the
venv's own Rerun web viewer on 127.0.0.1, open it in headless Chromium, wait until the viewer has
loaded and laid out the recording, and save a screenshot.

    python docs/rerun_screenshot.py outputs/default/episode_<id>.rrd [docs/episode_rerun.png] [--wait 45]

Needs Debian's `chromium` (`apt-get install -y chromium`) and `pip install "v4s-agent[docs]"` (Rerun, and
`websockets` for the Chrome DevTools protocol). Why DevTools and not `chromium --screenshot`: the web viewer needs tens of
seconds of real time to load its wasm and the data, and `--virtual-time-budget` only captures the
loading screen. Chromium renders WebGL through SwiftShader here (`--use-gl=swiftshader` crashes its
GPU process, `--use-angle=swiftshader` works).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"error: nothing answered at {url} within {timeout:.0f} s") from None
            time.sleep(0.5)


async def capture(devtools_port: int, url: str, wait_s: float, width: int, height: int) -> bytes:
    import websockets

    pages = json.loads(wait_http(f"http://127.0.0.1:{devtools_port}/json/list", 30))
    ws_url = next(p["webSocketDebuggerUrl"] for p in pages if p.get("type") == "page")
    async with websockets.connect(ws_url, max_size=64 * 2**20) as ws:
        n = 0

        async def call(method: str, **params: object) -> dict:
            nonlocal n
            n += 1
            await ws.send(json.dumps({"id": n, "method": method, "params": params}))
            while True:
                msg = json.loads(await ws.recv())
                if msg.get("id") == n:
                    return msg.get("result", {})

        await call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        await call("Page.enable")
        await call("Page.navigate", url=url)
        await asyncio.sleep(wait_s)  # wasm download + compile + data load + first layout
        shot = await call("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rrd", type=Path)
    ap.add_argument("out", type=Path, nargs="?", default=Path(__file__).with_name("episode_rerun.png"))
    ap.add_argument("--wait", type=float, default=45.0, help="seconds the viewer gets before the screenshot")
    ap.add_argument("--size", default="1600x1000", help="browser window WIDTHxHEIGHT")
    args = ap.parse_args()
    if not args.rrd.exists():
        print(f"error: {args.rrd} not found; record one with `python -m v4s_agent.run`", file=sys.stderr)
        return 2
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        print("error: no chromium on PATH; `apt-get install -y chromium`", file=sys.stderr)
        return 2
    rerun = Path(sys.executable).with_name("rerun")
    width, height = (int(v) for v in args.size.split("x"))
    web_port, grpc_port, devtools_port = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen] = []
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    # compacted chunks: the viewer ingests a few large chunks instead of one message per logged row,
    # which is what makes a slow (software-rendered, busy) browser take minutes to reach the last step
    compact = Path(tempfile.mkdtemp()) / args.rrd.name
    subprocess.run([str(rerun), "rrd", "optimize", str(args.rrd), "-o", str(compact)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # the `rerun` entry point starts a child binary: own process group, so both stop together
        procs.append(subprocess.Popen([str(rerun), "--serve-web", "--bind", "127.0.0.1", "--web-viewer-port", str(web_port),
                                       "--port", str(grpc_port), str(compact)], stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        wait_http(f"http://127.0.0.1:{web_port}/", 60)
        log.flush()
        found = re.search(r"http://127\.0\.0\.1:\d+/\?url=\S+", Path(log.name).read_text())
        url = found.group(0) if found else f"http://127.0.0.1:{web_port}/?url=rerun%2Bhttp://127.0.0.1:{grpc_port}/proxy"
        procs.append(subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--use-angle=swiftshader",
                                       "--enable-unsafe-swiftshader", "--hide-scrollbars", f"--window-size={width},{height}",
                                       f"--remote-debugging-port={devtools_port}", "--user-data-dir=" + tempfile.mkdtemp(),
                                       "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        png = asyncio.run(capture(devtools_port, url, args.wait, width, height))
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
    args.out.write_bytes(png)
    print(json.dumps({"screenshot": str(args.out), "bytes": len(png), "url": url}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
