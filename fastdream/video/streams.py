"""Live sources and sinks: cameras (OpenCV), URLs (rtsp/http/...: PyAV, OpenCV as fallback), raw RGB24
frames on stdin; raw RGB24 to stdout, a preview window, files.

A reader thread pulls frames from the source into a ``FrameFeed``. With ``drop`` (the default for
cameras and URLs) the feed keeps only the newest frame: when dreaming is slower than the source, older
frames are counted as dropped and the picture stays current. With ``block`` every frame is processed in
order and the source waits (stdin and files default to this: a pipe pushes back).
"""
from __future__ import annotations

import fractions
import re
import sys
import threading
import time

import numpy as np

from fastdream.errors import InputError

URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def source_kind(spec: str) -> str:
    """``stdin`` for ``-``, ``camera`` for an index like ``0``, ``url`` for ``scheme://...``, else ``file``."""
    if spec == "-":
        return "stdin"
    if spec.isdigit():
        return "camera"
    if URL.match(spec) and not spec.startswith("file://"):
        return "url"
    return "file"


def parse_size(s: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", s or "")
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise InputError(f"--size must be WIDTHxHEIGHT (like 640x480), got {s!r}")
    return int(m.group(1)), int(m.group(2))


class Source:
    width: int
    height: int
    fps: fractions.Fraction
    live: bool
    name: str
    lost: int = 0

    def read(self) -> np.ndarray | None:  # [H, W, 3] uint8 RGB; None at the end
        raise NotImplementedError

    def close(self) -> None:
        pass


class StdinSource(Source):
    """Raw RGB24 frames (``width * height * 3`` bytes each, no header) on a binary stream."""

    def __init__(self, size: tuple[int, int], fps: float, stream=None):
        self.width, self.height = size
        self.fps = fractions.Fraction(fps).limit_denominator(1001)
        self.live = False
        self.name = "stdin"
        self.stream = stream if stream is not None else sys.stdin.buffer
        self.nbytes = self.width * self.height * 3
        self.frames = 0

    def read(self):
        buf = bytearray()
        while len(buf) < self.nbytes:
            chunk = self.stream.read(self.nbytes - len(buf))
            if not chunk:
                break
            buf += chunk
        if not buf:
            return None
        if len(buf) < self.nbytes:
            raise InputError(f"stdin: {len(buf)} byte(s) left after {self.frames} frame(s), not a whole "
                             f"{self.width}x{self.height} RGB24 frame ({self.nbytes} bytes): does --size match "
                             "the input?")
        self.frames += 1
        return np.frombuffer(buf, np.uint8).reshape(self.height, self.width, 3)  # a writable bytearray


def _quiet_cv2():
    """OpenCV's capture back-ends log their own warnings to stderr; our errors say it in one line."""
    import cv2

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:
        try:
            cv2.setLogLevel(2)
        except AttributeError:
            pass
    return cv2


class CameraSource(Source):
    """An OpenCV capture device by index. ``vanished``: it stopped giving frames (unplugged)."""

    vanished = False

    def __init__(self, index: int, size=None, fps=None):
        cv2 = _quiet_cv2()

        self.cap = cv2.VideoCapture(index)
        if not self.cap.isOpened():
            raise InputError(f"camera {index}: cannot open it (no such device, or it is busy)")
        if size:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        ok, first = self.cap.read()
        if not ok or first is None:
            self.cap.release()
            raise InputError(f"camera {index}: opened, but it gives no frames")
        self._first = first
        self.height, self.width = first.shape[:2]
        f = fps or self.cap.get(cv2.CAP_PROP_FPS) or 30
        self.fps = fractions.Fraction(f).limit_denominator(1001)
        self.live = True
        self.name = f"camera {index}"

    def read(self):
        import cv2

        if self._first is not None:
            f, self._first = self._first, None
        else:
            try:
                ok, f = self.cap.read()
            except cv2.error:  # the device went away under the capture back-end
                ok, f = False, None
            if not ok or f is None:
                self.vanished = True  # a camera does not end: it was unplugged or stopped
                return None
        return cv2.cvtColor(f, cv2.COLOR_BGR2RGB)

    def close(self):
        self.cap.release()


class CvSource(CameraSource):
    """A URL that FFmpeg (PyAV) could not open, tried with OpenCV's capture back-ends."""

    def __init__(self, spec: str):
        cv2 = _quiet_cv2()
        self.cap = cv2.VideoCapture(spec)
        ok, first = (self.cap.read() if self.cap.isOpened() else (False, None))
        if not ok or first is None:
            self.cap.release()
            raise InputError(f"{spec}: cannot open the stream (neither FFmpeg nor OpenCV could read it)")
        self._first = first
        self.height, self.width = first.shape[:2]
        self.fps = fractions.Fraction(self.cap.get(cv2.CAP_PROP_FPS) or 30).limit_denominator(1001)
        self.live = True
        self.name = spec


class AVSource(Source):
    """A URL (or a file) through PyAV/FFmpeg; ``timeout`` seconds to open and between packets."""

    def __init__(self, spec: str, live: bool, timeout: float = 10.0):
        import av

        from fastdream.video.io import _err, _rate

        self.name = spec
        try:
            self.c = av.open(spec, "r", timeout=(timeout, timeout))
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise InputError(f"{spec}: cannot open the stream ({_err(e)})") from None
        if not self.c.streams.video:
            self.c.close()
            raise InputError(f"{spec}: has no video stream")
        v = self.c.streams.video[0]
        v.thread_type = "AUTO"
        self.width, self.height = v.codec_context.width, v.codec_context.height
        self.fps = _rate(v)
        self.expected = int(v.frames) if v.frames else None
        self.live = live
        self._it = self.c.decode(v)
        self.error = None
        self.decoded = 0

    def read(self):
        import av

        try:
            f = next(self._it)
        except StopIteration:
            return None
        except (av.error.FFmpegError, OSError) as e:
            self.error = str(e)
            return None
        a = f.to_ndarray(format="rgb24")
        if a.shape[:2] != (self.height, self.width):
            import cv2

            a = cv2.resize(a, (self.width, self.height), interpolation=cv2.INTER_AREA)
        self.decoded += 1
        return a

    @property
    def lost(self):
        return max(0, self.expected - self.decoded) if self.expected else 0

    def close(self):
        self.c.close()


def open_source(spec: str, size=None, fps=None, timeout: float = 10.0) -> Source:
    kind = source_kind(spec)
    if kind == "stdin":
        if size is None:
            raise InputError("reading raw RGB24 frames from stdin needs --size WxH (and --fps F)")
        return StdinSource(size, fps or 30)
    if kind == "camera":
        return CameraSource(int(spec), size, fps)
    if kind == "url":
        try:
            return AVSource(spec, live=True, timeout=timeout)
        except InputError:
            return CvSource(spec)
    from fastdream.video.io import open_input

    open_input(spec).close()  # the file checks and messages of the file path
    return AVSource(spec, live=False)


class FrameFeed:
    """Frames from a source on a reader thread. ``drop``: keep only the newest unprocessed frame (older ones
    are counted in ``dropped``); otherwise a bounded queue that makes the source wait."""

    def __init__(self, source: Source, drop: bool, depth: int = 4):
        self.source, self.drop, self.depth = source, drop, depth
        self.cond = threading.Condition()
        self.items: list = []
        self.ended = False
        self.error: BaseException | None = None
        self.read = 0
        self.dropped = 0
        self._stop = False
        self.t0 = None
        self.thread = threading.Thread(target=self._run, name="fastdream-feed", daemon=True)

    def start(self):
        self.t0 = time.perf_counter()
        self.thread.start()
        return self

    def _run(self):
        try:
            while not self._stop:
                f = self.source.read()
                t = time.perf_counter()
                if f is None:
                    break
                with self.cond:
                    self.read += 1
                    if self.drop:
                        self.dropped += len(self.items)
                        self.items = [(self.read - 1, f, t)]
                    else:
                        while len(self.items) >= self.depth and not self._stop:
                            self.cond.wait(0.1)
                        self.items.append((self.read - 1, f, t))
                    self.cond.notify_all()
        except BaseException as e:  # handed to the consumer
            self.error = e
        finally:
            with self.cond:
                self.ended = True
                self.cond.notify_all()

    def get(self):
        """``(index, frame, arrival_time)``, or None at the end of the source."""
        with self.cond:
            while not self.items and not self.ended:
                self.cond.wait(0.1)
            if self.items:
                item = self.items.pop(0)
                self.cond.notify_all()
                return item
            if self.error is not None:
                raise self.error
            return None

    def stop(self, timeout: float = 10.0):
        """Stop reading, and wait for the reader thread: the source may be closed only once no thread
        decodes from it (PyAV crashes when a container closes under a running decode)."""
        self._stop = True
        with self.cond:
            self.cond.notify_all()
        self.source.close() if isinstance(self.source, (CameraSource,)) else None
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout)


# -- sinks ----------------------------------------------------------------------------------------------
class StdoutSink:
    """Raw RGB24 frames to stdout (for ffmpeg/ffplay: ``-f rawvideo -pix_fmt rgb24 -s WxH -r F -i -``)."""

    name = "stdout"

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stdout.buffer

    def write(self, frame: np.ndarray):
        self.stream.write(np.ascontiguousarray(frame).tobytes())
        self.stream.flush()

    def close(self):
        self.stream.flush()

    def abort(self):
        pass


class PreviewSink:
    """An OpenCV window; closing it (or pressing q / Esc) ends the stream."""

    name = "preview"

    def __init__(self, title="fastdream"):
        import os

        import cv2

        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("win32", "darwin")):
            raise InputError("--preview: no display here (DISPLAY is not set)")
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise InputError("--preview: this OpenCV has no window support (opencv-python-headless); "
                             "install opencv-python, or write to a file or to '-'") from None
        self.title = title
        self.closed = False

    def write(self, frame):
        import cv2

        cv2.imshow(self.title, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27) or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.closed = True

    def close(self):
        import cv2

        cv2.destroyWindow(self.title)

    abort = close


def run_stream(source: Source, sinks: list, processor, coherence, device, *, drop: bool, max_frames=None,
               progress=True) -> dict:
    """Process a stream until it ends (or ``max_frames``, or Ctrl-C on a live source, or the preview
    window closes). Returns the report's figures. ``coherence=None``: the processor carries its own
    state from frame to frame (the live dreamer: uint8 frame in, uint8 frame out, ``warp_errors``)."""
    from fastdream.video.coherence import process

    feed = FrameFeed(source, drop=drop).start()
    latencies: list[float] = []
    prev_in = prev_out = None
    n = 0
    t_first = None
    t_first_read = time.perf_counter()
    interrupted = False
    from fastdream.progress import Progress

    bar = Progress(max_frames, source.name, unit="frame", enabled=None if progress else False)
    t_proc = 0.0
    ended = False  # the source ran out (not stopped after max_frames): only then are missing frames lost
    try:
        while max_frames is None or n < max_frames:
            item = feed.get()
            if item is None:
                ended = True
                break
            _, frame, t_arrival = item
            if t_first is None:
                t_first = time.perf_counter()
                t_first_read = t_arrival
            t1 = time.perf_counter()
            if coherence is None:
                out = processor(frame)
            else:
                out, _ = process(processor, coherence, n, frame, prev_in, prev_out, device)
            t_proc += time.perf_counter() - t1
            for s in sinks:
                s.write(out)
            latencies.append((time.perf_counter() - t_arrival) * 1e3)
            prev_in, prev_out = frame, out
            n += 1
            bar.update(1)
            if any(getattr(s, "closed", False) for s in sinks):
                break
    except KeyboardInterrupt:
        if not source.live:
            raise
        interrupted = True  # stopping a live stream is the normal way to end it
    finally:
        feed.stop()
        bar.close()
    wall = time.perf_counter() - (t_first or time.perf_counter())
    errs = (coherence or processor).warp_errors
    lat = sorted(latencies)
    return {
        "input": source.name, "size": [source.width, source.height],
        "frames_in": feed.read, "frames_out": n,
        "fps_in": float(source.fps),
        "fps_out": round(n / wall, 3) if wall > 0 and n > 1 else None,
        "seconds_per_frame": round(t_proc / n, 4) if n else None,
        "audio_copied": False,
        "dropped_frames": feed.dropped if drop else 0,
        "lost_frames": getattr(source, "lost", 0) if ended else 0,
        "latency_ms": {"mean": round(sum(lat) / len(lat), 2), "p50": round(lat[len(lat) // 2], 2),
                       "p95": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 2),
                       "max": round(lat[-1], 2)} if lat else None,
        "warp_error": round(sum(errs) / len(errs), 6) if errs else None,
        "coherence": ({"flow": coherence.use_flow, "blend": coherence.blend, "smooth": coherence.smooth}
                      if coherence is not None else {"flow": True, "live": True}),
        "processor": processor.name, "mode": "drop" if drop else "block", "stopped_by_user": interrupted,
        "_t_first_read": t_first_read,
    }
