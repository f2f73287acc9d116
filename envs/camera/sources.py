"""Frame sources: OpenCV (device index, RTSP/HTTP URL, video file, image folder, printf pattern such
as `frames/%03d.png`) and Intel RealSense (optional).

Two reading disciplines, because they fail differently:
- replay (video file): every frame in order, `frames_per_step` per action; the end of the file is
  `StreamEnded`, undecodable frames are retried up to `max_dropped_frames`.
- live (device/URL): a daemon thread keeps only the newest frame (camera buffers would otherwise
  hand back stale views); `read` waits at most `frame_timeout_s` for a frame newer than the last
  motion, so an unplugged camera or a stalled stream is a CameraError, never a hang.
"""
from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from envs.camera.errors import CameraError, StreamEnded


@dataclass
class Frame:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray | None = None  # (H, W) float32 metres
    timestamp: float = 0.0  # time.monotonic() when captured


class FrameSource(Protocol):
    width: int
    height: int
    K: np.ndarray | None  # native intrinsics when the device reports them (RealSense)
    dropped_frames: int

    def read(self, newer_than: float = 0.0) -> Frame: ...

    def close(self) -> None: ...


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    import cv2

    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _valid(ok: bool, frame: Any) -> bool:
    return bool(ok) and isinstance(frame, np.ndarray) and frame.size > 0


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def image_sequence(device: str) -> list[str] | None:
    """The files of an image folder (name order) or of a printf pattern (`frames/%03d.png`, numeric
    order); None when `device` is neither."""
    if os.path.isdir(device):
        return sorted(os.path.join(device, f) for f in os.listdir(device) if f.lower().endswith(IMAGE_SUFFIXES))
    folder, name = os.path.split(device)
    m = re.search(r"%0?\d*d", name)
    if m is None or "://" in device:
        return None
    rx = re.compile(re.escape(name[: m.start()]) + r"(\d+)" + re.escape(name[m.end():]) + "$")
    folder = folder or "."
    found = [(int(mm.group(1)), f) for f in os.listdir(folder) if (mm := rx.match(f))] if os.path.isdir(folder) else []
    return [os.path.join(folder, f) for _, f in sorted(found)]


class ImageSequenceCapture:
    """The part of cv2.VideoCapture that OpenCVSource uses, over a list of image files.

    Why by hand: OpenCV's image-sequence backend reads printf patterns only (not folders) and
    needs the numbering to start near 0; this reads both, in order, with the same replay rules
    (frames_per_step, loop, end of stream) as a video file."""

    def __init__(self, files: list[str]) -> None:
        import cv2

        self.files, self.pos = list(files), 0
        first = cv2.imread(self.files[0], cv2.IMREAD_COLOR) if self.files else None
        self._size = (0, 0) if first is None else first.shape[:2]

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's name
        return self._size != (0, 0)

    def read(self) -> tuple[bool, np.ndarray | None]:
        import cv2

        if self.pos >= len(self.files):
            return False, None
        frame = cv2.imread(self.files[self.pos], cv2.IMREAD_COLOR)
        self.pos += 1
        return frame is not None, frame

    def get(self, prop: int) -> float:
        import cv2

        return {cv2.CAP_PROP_FRAME_WIDTH: self._size[1], cv2.CAP_PROP_FRAME_HEIGHT: self._size[0],
                cv2.CAP_PROP_FRAME_COUNT: len(self.files), cv2.CAP_PROP_POS_FRAMES: self.pos}.get(prop, 0.0)

    def set(self, prop: int, value: float) -> bool:
        import cv2

        if prop == cv2.CAP_PROP_POS_FRAMES:
            self.pos = int(value)
        return True

    def release(self) -> None:
        self.files = []


def resolve_device(device: str, mode: str) -> tuple[int | str, str]:
    """(cv2 target, 'live'|'replay') from the config string."""
    dev: int | str = int(device) if device.strip().lstrip("-").isdigit() else device
    is_url = isinstance(dev, str) and "://" in dev
    if isinstance(dev, str) and not is_url:
        files = image_sequence(dev)
        if files is not None:
            if not files:
                raise CameraError(f"no images found for env.config.device={dev!r}; give a folder of images "
                                  f"({', '.join(IMAGE_SUFFIXES)}) or a pattern such as frames/%03d.png")
            return dev, "replay" if mode == "auto" else mode
    if isinstance(dev, str) and not is_url and not dev.startswith("/dev/") and not os.path.exists(dev):
        raise CameraError(f"video file {dev!r} not found; env.config.device takes a camera index, a stream URL, "
                          "a video file, an image folder or a pattern such as frames/%03d.png")
    if mode == "auto":
        mode = "replay" if isinstance(dev, str) and not is_url and not dev.startswith("/dev/") else "live"
    return dev, mode


class OpenCVSource:
    """cv2.VideoCapture behind the FrameSource protocol. `capture` lets callers pass an opened
    capture (or a wrapper around one), e.g. to inject faults in tests."""

    def __init__(self, device: str, mode: str = "auto", frame_timeout_s: float = 2.0,
                 max_dropped_frames: int = 5, frames_per_step: int = 1, loop: bool = False,
                 capture: Any = None):
        import cv2

        self.device, self.K = device, None
        self.frame_timeout_s, self.max_dropped = frame_timeout_s, max_dropped_frames
        self.frames_per_step, self.loop = frames_per_step, loop
        self.dropped_frames, self._delivered = 0, 0
        target, self.mode = resolve_device(device, mode)
        files = image_sequence(target) if isinstance(target, str) and "://" not in target else None
        if capture is None and files:
            capture = ImageSequenceCapture(files)
        if capture is None:
            ms = int(frame_timeout_s * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            capture = cv2.VideoCapture(target, cv2.CAP_ANY, params) if isinstance(target, str) else cv2.VideoCapture(target)
        self._cap = capture
        if not self._cap.isOpened():
            raise CameraError(f"could not open camera {device!r}: no such device, stream unreachable, or unreadable "
                              "file; check the cable / URL (`v4l2-ctl --list-devices`, `ffprobe URL`)")
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._seq, self._seen_seq, self._error = 0, 0, None
        self._stop = threading.Event()
        self._thread = None
        if self.mode == "live":
            fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
            # a file read "live" is paced at its frame rate, like a camera
            self._period = 1.0 / fps if isinstance(target, str) and "://" not in target and fps > 0 else 0.0
            self._thread = threading.Thread(target=self._reader, name=f"camera-{device}", daemon=True)
            self._thread.start()

    # --- live ---------------------------------------------------------------------------------
    def _reader(self) -> None:
        fails = 0
        while not self._stop.is_set():
            t0 = time.monotonic()
            ok, frame = self._cap.read()
            if _valid(ok, frame):
                fails = 0
                f = Frame(_to_rgb(frame), None, time.monotonic())
                with self._cond:
                    self._latest, self._seq = f, self._seq + 1
                    self._cond.notify_all()
            else:
                fails += 1
                self.dropped_frames += 1
                if fails > self.max_dropped:
                    with self._cond:
                        self._error = (f"camera {self.device!r} stopped delivering frames ({fails} failed reads in a "
                                       "row): unplugged, or the stream ended")
                        self._cond.notify_all()
                    return
                time.sleep(0.01)
            if self._period:
                time.sleep(max(0.0, self._period - (time.monotonic() - t0)))

    def _read_live(self, newer_than: float) -> Frame:
        deadline = time.monotonic() + self.frame_timeout_s
        with self._cond:
            while True:
                f = self._latest
                if f is not None and self._seq != self._seen_seq and f.timestamp > newer_than:
                    self._seen_seq = self._seq
                    return f
                if self._error is not None:
                    raise CameraError(self._error)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CameraError(f"no new frame from camera {self.device!r} within {self.frame_timeout_s:g} s: "
                                      "unplugged or stalled stream (raise env.config.frame_timeout_s for slow streams)")
                self._cond.wait(left)

    # --- replay -------------------------------------------------------------------------------
    def _read_one(self) -> np.ndarray:
        import cv2

        fails = 0
        while True:
            ok, frame = self._cap.read()
            if _valid(ok, frame):
                return frame
            pos, count = self._cap.get(cv2.CAP_PROP_POS_FRAMES), self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
            if count > 0 and pos < count - 1:  # a frame failed to decode mid-file: dropped, not the end
                fails += 1
                self.dropped_frames += 1
                if fails > self.max_dropped:
                    raise CameraError(f"video {self.device!r}: {fails} consecutive frames failed to decode at frame "
                                      f"{int(pos)}; the file is corrupt (re-encode it) or raise env.config.max_dropped_frames")
                continue
            if self.loop and self._delivered > 0:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self._cap.read()
                if _valid(ok, frame):
                    return frame
            raise StreamEnded(f"video {self.device!r} ended after {self._delivered} delivered frames; "
                              "set env.config.loop=true to replay it again, or record a longer video")

    def _read_replay(self) -> Frame:
        n = 1 if self._delivered == 0 else self.frames_per_step
        frame = None
        for _ in range(n):
            frame = self._read_one()
        self._delivered += 1
        return Frame(_to_rgb(frame), None, time.monotonic())

    # --- protocol -----------------------------------------------------------------------------
    def read(self, newer_than: float = 0.0) -> Frame:
        if self._cap is None:
            raise CameraError(f"camera {self.device!r} is closed")
        return self._read_live(newer_than) if self.mode == "live" else self._read_replay()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.frame_timeout_s)
            if self._thread.is_alive():  # blocked inside cap.read(): releasing now would race it
                self._cap = None
                return
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class RealSenseSource:
    """Intel RealSense colour + depth aligned to colour (pyrealsense2, optional extra `realsense`)."""

    def __init__(self, width: int = 640, height: int = 480, fps: int = 30, depth: bool = True,
                 serial: str = "", frame_timeout_s: float = 2.0):
        try:
            import pyrealsense2 as rs
        except ImportError as e:
            import importlib.util

            from envs.errors import BackendUnavailableError

            if importlib.util.find_spec("pyrealsense2") is None:
                raise BackendUnavailableError("env.config.source=realsense needs pyrealsense2: `pip install pyrealsense2` "
                                              "(or `pip install -e .[realsense]`), or use env.config.source=opencv") from e
            raise BackendUnavailableError(f"pyrealsense2 is installed but cannot be imported ({e}); on Linux it "
                                          "needs libusb: `apt-get install libusb-1.0-0`") from e
        self._rs, self.frame_timeout_s, self.dropped_frames = rs, frame_timeout_s, 0
        self.width, self.height, self._depth = width, height, depth
        self.has_depth = depth
        self._pipe, conf = rs.pipeline(), rs.config()
        if serial:
            conf.enable_device(serial)
        conf.enable_stream(rs.stream.color, width, height, rs.format.rgb8, fps)
        if depth:
            conf.enable_stream(rs.stream.depth, width, height, rs.format.z16, fps)
        try:
            profile = self._pipe.start(conf)
        except RuntimeError as e:
            raise CameraError(f"could not start RealSense {serial or '(any)'} at {width}x{height}@{fps}: {e}; is it "
                              "plugged into a USB3 port and is the mode supported? (`rs-enumerate-devices`)") from None
        self._scale = profile.get_device().first_depth_sensor().get_depth_scale() if depth else 0.0
        self._align = rs.align(rs.stream.color) if depth else None
        i = profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics()
        self.K = np.array([[i.fx, 0, i.ppx], [0, i.fy, i.ppy], [0, 0, 1]], dtype=np.float64)

    def read(self, newer_than: float = 0.0) -> Frame:
        deadline = time.monotonic() + self.frame_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CameraError(f"no new RealSense frame within {self.frame_timeout_s:g} s (unplugged?)")
            try:
                frames = self._pipe.wait_for_frames(max(1, int(left * 1000)))
            except RuntimeError as e:
                raise CameraError(f"no RealSense frame within {self.frame_timeout_s:g} s ({e}); unplugged or USB "
                                  "bandwidth exhausted") from None
            t = time.monotonic()
            if t <= newer_than:
                continue
            if self._align is not None:
                frames = self._align.process(frames)
            color = frames.get_color_frame()
            if not color:
                self.dropped_frames += 1
                continue
            rgb = np.asanyarray(color.get_data()).copy()
            depth = None
            if self._depth:
                d = frames.get_depth_frame()
                depth = (np.asanyarray(d.get_data()).astype(np.float32) * self._scale) if d else None
            return Frame(rgb, depth, t)

    def close(self) -> None:
        try:
            self._pipe.stop()
        except RuntimeError:
            pass
