"""Video files in and out with PyAV: decode to RGB24 frames, encode H.264 (or another codec) with the
input's audio stream copied across, PNG sequences, animated GIFs. Frames are ``[H, W, 3]`` uint8 arrays.

Every output is complete or absent: containers are written to a temporary name in the output folder
and renamed when closed; PNG sequences are staged in a temporary folder.
"""
from __future__ import annotations

import dataclasses
import fractions
import os
import pathlib
import re
import shutil
import tempfile
from typing import Iterator

import numpy as np

from fastdream.errors import InputError
from fastdream.imageio import check_input_file, check_output_folder, replace_output

VIDEO_EXTS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi",
              ".gif": "gif"}
DEFAULT_CODEC = {"mp4": "libx264", "mov": "libx264", "matroska": "libx264", "webm": "libvpx-vp9", "avi": "mpeg4",
                 "gif": "gif"}
PNG_PATTERN = re.compile(r"%0?\d*d")


def _err(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


# -- input ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class VideoInfo:
    """What a video file holds: its first video stream's size, rate and (expected) frame count."""

    path: str
    width: int
    height: int
    fps: fractions.Fraction
    frames: int | None           # from the container, or duration x rate; None when unknown
    has_audio: bool
    audio_codec: str | None = None
    codec: str | None = None


def _rate(stream) -> fractions.Fraction:
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if r:
            return fractions.Fraction(r)
    return fractions.Fraction(25)


def open_input(path):
    """An opened PyAV container with a video stream, or a one-line ``InputError``."""
    import av

    p = check_input_file(path, "video")
    try:
        c = av.open(str(p), "r")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"{p}: not a video FFmpeg can read ({_err(e)})") from None
    if not c.streams.video:
        c.close()
        raise InputError(f"{p}: has no video stream")
    return c


def probe(path) -> VideoInfo:
    c = open_input(path)
    try:
        v = c.streams.video[0]
        fps = _rate(v)
        frames = int(v.frames) if v.frames else None
        if frames is None:
            dur = None
            if v.duration is not None and v.time_base:
                dur = float(v.duration * v.time_base)
            elif c.duration:
                dur = c.duration / 1_000_000
            frames = round(dur * fps) if dur else None
        a = c.streams.audio[0] if c.streams.audio else None
        w, h = v.codec_context.width, v.codec_context.height
        if not w or not h:
            raise InputError(f"{path}: the video stream has no size")
        return VideoInfo(str(path), w, h, fps, frames, a is not None, a.codec_context.name if a else None,
                         v.codec_context.name)
    finally:
        c.close()


class FrameReader:
    """Decodes a video file's first video stream to RGB24 frames; a damaged or truncated tail ends the
    iteration instead of raising (``error`` says why, ``decoded`` how many frames came out)."""

    def __init__(self, path):
        self.path = str(path)
        self.info = probe(path)
        self.decoded = 0
        self.error: str | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        c = open_input(self.path)
        try:
            stream = c.streams.video[0]
            stream.thread_type = "AUTO"
            packets = c.demux(stream)
            while True:
                try:
                    pkt = next(packets)
                except StopIteration:
                    break
                except (av.error.FFmpegError, OSError, ValueError) as e:  # a damaged container: stop here
                    self.error = _err(e)
                    break
                try:  # a damaged packet: skip it, keep decoding (the flush packet at the end is None data)
                    frames = pkt.decode()
                except (av.error.FFmpegError, ValueError) as e:
                    self.error = _err(e)
                    continue
                for frame in frames:
                    yield self._rgb(frame)
            try:
                for frame in stream.decode(None):
                    yield self._rgb(frame)
            except av.error.EOFError:  # the demuxer's last packet flushed the decoder already
                pass
            except (av.error.FFmpegError, ValueError) as e:
                self.error = self.error or _err(e)
        finally:
            c.close()

    def _rgb(self, frame) -> np.ndarray:
        a = frame.to_ndarray(format="rgb24")
        if a.shape[:2] != (self.info.height, self.info.width):  # a mid-stream size change
            import cv2

            a = cv2.resize(a, (self.info.width, self.info.height), interpolation=cv2.INTER_AREA)
        self.decoded += 1
        return a

    def lost(self) -> int:
        """Frames the container announced but that could not be decoded (truncated or corrupt input)."""
        if self.info.frames is None:
            return 0
        return max(0, self.info.frames - self.decoded)


# -- output ---------------------------------------------------------------------------------------------
def is_png_sequence(path) -> bool:
    """A folder (existing, or a name without extension) or a ``name_%05d.png`` pattern."""
    s = str(path)
    p = pathlib.Path(s)
    return bool(PNG_PATTERN.search(p.name)) or p.is_dir() or (p.suffix == "" and s not in ("-",))


def container_format(path) -> str:
    ext = pathlib.Path(path).suffix.lower()
    if ext not in VIDEO_EXTS:
        raise InputError(f"{path}: cannot write '{ext or '(no extension)'}' videos; use one of "
                         + ", ".join(sorted(VIDEO_EXTS)) + ", a folder or a frame_%05d.png pattern")
    return VIDEO_EXTS[ext]


def check_video_output(path, codec: str | None, width: int, height: int, fps) -> str:
    """Refuse an output before any work: bad folder, unknown extension, or a codec the container cannot
    hold (tried by encoding two frames to a scratch file). Returns the codec to use."""
    p = check_output_folder(pathlib.Path(path))
    fmt = container_format(p)
    codec = codec or DEFAULT_CODEC[fmt]
    if fmt == "gif":
        if codec != "gif":
            raise InputError(f"{p}: a GIF holds only GIF frames, not {codec!r}")
        return codec
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.probe.", suffix=p.suffix, dir=p.parent if str(p.parent) else ".")
    os.close(fd)
    try:
        w = VideoWriter(tmp, width=width, height=height, fps=fps, codec=codec, atomic=False)
        frame = np.zeros((height, width, 3), np.uint8)
        w.write(frame)
        w.write(frame)
        w.close()
    except InputError as e:
        raise InputError(f"{p}: {str(e).split(': ', 1)[-1]}") from None
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    return codec


def _pix_fmt(codec, width, height) -> str:
    import av

    try:
        formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    except Exception:
        formats = []
    even = width % 2 == 0 and height % 2 == 0
    for want in (["yuv420p"] if even else []) + ["yuv444p", "rgb24", "bgr0", "yuv422p", "pal8", "rgb8"]:
        if not formats or want in formats:
            return want
    return formats[0]


class VideoWriter:
    """Encode RGB24 frames at a constant rate; optionally copy the audio stream of ``audio_from``
    (packets interleaved by time with the video). ``codec``: libx264 (default for .mp4/.mov/.mkv),
    libvpx-vp9, mpeg4, ffv1, prores..., ``crf``: quality for x264/vp9 (lower is better)."""

    def __init__(self, path, width: int, height: int, fps, codec: str | None = None, crf: int | None = 18,
                 audio_from: str | None = None, atomic: bool = True, audio_until: float | None = None):
        import av

        self.path = pathlib.Path(path)
        self.fmt = container_format(self.path)
        self.codec = codec or DEFAULT_CODEC[self.fmt]
        self.fps = fractions.Fraction(fps).limit_denominator(1001 * 1000)
        self.width, self.height = width, height
        self.frames = 0
        self.audio_copied = False
        self.audio_note: str | None = None
        self.audio_until = audio_until  # seconds of audio to copy (None: all of it)
        self._atomic = atomic
        if atomic:
            fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part" + self.path.suffix,
                                             dir=self.path.parent if str(self.path.parent) else ".")
            os.close(fd)
        else:
            self._tmp = str(self.path)
        self._audio_in = None
        self._audio_packets = None
        self._pending = None
        try:
            opts = {"movflags": "+faststart"} if self.fmt in ("mp4", "mov") else {}
            self.c = av.open(self._tmp, "w", format=self.fmt, options=opts)
            try:
                self.v = self.c.add_stream(self.codec, rate=self.fps)
            except (av.error.FFmpegError, ValueError, TypeError) as e:
                raise InputError(f"{self.path}: unknown or unusable codec {self.codec!r} ({_err(e)})") from None
            self.v.width, self.v.height = width, height
            self.v.pix_fmt = _pix_fmt(self.codec, width, height)
            if self.codec in ("libx264", "libx265", "libvpx-vp9") and crf is not None:
                self.v.options = {"crf": str(crf), **({"b": "0"} if self.codec == "libvpx-vp9" else {})}
            if audio_from is not None:
                self._open_audio(audio_from)
        except BaseException:
            self._abort()
            raise

    def _open_audio(self, src):
        import av

        try:
            inp = av.open(str(src), "r")
        except (av.error.FFmpegError, OSError):
            return
        if not inp.streams.audio:
            inp.close()
            return
        a_in = inp.streams.audio[0]
        try:
            self.a = self.c.add_stream_from_template(a_in)
        except (av.error.FFmpegError, ValueError) as e:
            inp.close()
            self.audio_note = f"the {self.fmt} container cannot hold {a_in.codec_context.name} audio ({_err(e)})"
            return
        self._audio_in = inp
        self._a_in = a_in
        self._audio_packets = inp.demux(a_in)

    def _mux_audio_until(self, t: float | None):
        """Mux the input's audio packets that start before ``t`` seconds (all when ``t`` is None)."""
        import av

        if self._audio_packets is None:
            return
        while True:
            pkt = self._pending
            if pkt is None:
                try:
                    pkt = next(self._audio_packets)
                except StopIteration:
                    self._audio_packets = None
                    return
                except (av.error.FFmpegError, OSError):  # a damaged audio tail: keep what was copied
                    self._audio_packets = None
                    return
                if pkt.dts is None:
                    continue
            ts = float(pkt.pts * pkt.time_base) if pkt.pts is not None else 0.0
            if t is not None and ts > t:
                self._pending = pkt
                return
            self._pending = None
            pkt.stream = self.a
            try:
                self.c.mux(pkt)
            except av.error.FFmpegError as e:
                self.audio_note = f"audio copy stopped ({_err(e)})"
                self._audio_packets = None
                return
            self.audio_copied = True

    def _mux_video(self, packets):
        import av

        for pkt in packets:
            if self._audio_packets is not None and pkt.pts is not None:
                self._mux_audio_until(float(pkt.pts * pkt.time_base))
            try:
                self.c.mux(pkt)
            except av.error.FFmpegError as e:
                raise InputError(f"{self.path}: cannot write {self.codec} into a {self.fmt} file ({_err(e)})") from None

    def write(self, frame: np.ndarray) -> None:
        """Append one ``[H, W, 3]`` uint8 RGB frame."""
        import av

        if frame.shape != (self.height, self.width, 3):
            raise InputError(f"frame of shape {frame.shape} does not fit a {self.width}x{self.height} video")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self.frames
        try:
            packets = self.v.encode(vf)
        except (av.error.FFmpegError, ValueError) as e:
            raise InputError(f"{self.path}: the {self.codec} encoder refused the frames ({_err(e)})") from None
        self._mux_video(packets)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder, copy the rest of the audio (up to ``audio_until``), and rename the file into place."""
        import av

        try:
            try:
                self._mux_video(self.v.encode(None))
            except av.error.FFmpegError as e:
                raise InputError(f"{self.path}: the {self.codec} encoder failed ({_err(e)})") from None
            self._mux_audio_until(self.audio_until)
            try:
                self.c.close()
            except av.error.FFmpegError as e:
                raise InputError(f"{self.path}: cannot finish the {self.fmt} file ({_err(e)})") from None
            if self._audio_in is not None:
                self._audio_in.close()
                self._audio_in = None
            if self._atomic:
                replace_output(self._tmp, self.path)
        except BaseException:
            self._abort()
            raise

    def _abort(self) -> None:
        """Drop everything: the temporary file goes away, nothing is left at the output path."""
        for obj in ("c", "_audio_in"):
            o = getattr(self, obj, None)
            if o is not None:
                try:
                    o.close()
                except Exception:
                    pass
        if self._atomic:
            try:
                os.unlink(self._tmp)
            except (FileNotFoundError, AttributeError):
                pass

    abort = _abort


class GifWriter:
    """Animated GIF via Pillow (adaptive palette per frame, loops forever); written on close."""

    def __init__(self, path, fps):
        self.path = pathlib.Path(path)
        self.fps = float(fps)
        self.frames: list = []
        self.audio_copied = False
        self.audio_note = None
        self.codec = "gif"

    def write(self, frame: np.ndarray) -> None:
        from PIL import Image

        self.frames.append(Image.fromarray(frame, "RGB").quantize(colors=255, method=Image.Quantize.MEDIANCUT))

    def close(self) -> None:
        from fastdream.imageio import atomic_write

        if not self.frames:
            raise InputError(f"{self.path}: no frames to write")
        first, rest = self.frames[0], self.frames[1:]
        ms = max(20, round(1000 / self.fps))
        atomic_write(self.path, lambda tmp: first.save(tmp, format="GIF", save_all=True, append_images=rest,
                                                       duration=ms, loop=0, disposal=1))

    def abort(self) -> None:
        self.frames = []


def open_writer(path, width, height, fps, codec=None, crf=18, audio_from=None, audio_until=None):
    """A writer for ``path``: GIF via Pillow, any other container via PyAV (``audio_until``: seconds of
    ``audio_from``'s audio to copy, for a video cut short)."""
    if container_format(path) == "gif":
        return GifWriter(path, fps)
    return VideoWriter(path, width, height, fps, codec=codec, crf=crf, audio_from=audio_from, audio_until=audio_until)


class PngSequenceWriter:
    """Frames as lossless PNGs: into a folder (``frame_00000.png``...) or after a ``name_%05d.png``
    pattern. Staged in a temporary folder, moved into place on close."""

    def __init__(self, path):
        p = pathlib.Path(path)
        if PNG_PATTERN.search(p.name):
            self.folder, self.pattern = p.parent if str(p.parent) else pathlib.Path("."), p.name
            if not self.pattern.lower().endswith(".png"):
                raise InputError(f"{p}: a frame pattern must end in .png")
            try:
                self.pattern % 0
            except (TypeError, ValueError):
                raise InputError(f"{p}: a frame pattern needs exactly one %d (like frame_%05d.png)") from None
            if not self.folder.is_dir():
                raise InputError(f"{p}: the folder {self.folder} does not exist")
        else:
            self.folder, self.pattern = p, "frame_%05d.png"
            parent = p.parent if str(p.parent) else pathlib.Path(".")
            if not parent.is_dir():
                raise InputError(f"{p}: the folder {parent} does not exist")
        self.path = p
        self.frames = 0
        self.audio_copied = False
        self.audio_note = None
        self.codec = "png"
        base = self.folder if self.folder.is_dir() else self.folder.parent
        if not os.access(base if str(base) else ".", os.W_OK):
            raise InputError(f"{p}: the folder {base} is not writable")
        self._stage = pathlib.Path(tempfile.mkdtemp(prefix=f".{self.folder.name or 'frames'}.", suffix=".part",
                                                    dir=base if str(base) else "."))

    def write(self, frame: np.ndarray) -> None:
        write_png(self._stage / (self.pattern % self.frames), frame)
        self.frames += 1

    def write_file(self, png_path) -> None:
        """Append an already encoded PNG (a hard link or copy, no re-encode)."""
        dst = self._stage / (self.pattern % self.frames)
        try:
            os.link(png_path, dst)
        except OSError:
            shutil.copyfile(png_path, dst)
        self.frames += 1

    def close(self) -> None:
        self.folder.mkdir(exist_ok=True)
        for i in range(self.frames):
            name = self.pattern % i
            replace_output(self._stage / name, self.folder / name)
        shutil.rmtree(self._stage, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self._stage, ignore_errors=True)


# -- lossless frames (the resumable job's work folder) ---------------------------------------------------
def write_png(path, frame: np.ndarray) -> None:
    """Write ``[H, W, 3]`` uint8 RGB as a PNG, fast (zlib level 1), atomically."""
    import cv2

    p = pathlib.Path(path)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise InputError(f"{p}: could not encode the frame as PNG")
    tmp = p.with_name(f".{p.name}.part")
    with open(tmp, "wb") as f:
        f.write(buf.tobytes())
    os.replace(tmp, p)


def read_png(path) -> np.ndarray | None:
    """``[H, W, 3]`` uint8 RGB, or None when the file is missing or damaged."""
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except (FileNotFoundError, OSError):
        return None
    if data.size == 0:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        return None
    return np.ascontiguousarray(img[..., ::-1])
