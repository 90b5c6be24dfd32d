"""Resumable video jobs. The work lives in ``OUTPUT.fastdream-work/`` next to the output:

    state.json          version, a hash of the parameters (+ the input's size and first MiB), frames done,
                        per-frame warp errors and timings
    frames/000000.png   finished frames, lossless, each written atomically

A job killed at any point continues from the last finished frame with ``--resume``: per-frame seeds come
from the base seed and the frame index, and the previous dreamed frame is read back from its PNG (an
uninterrupted run uses the same uint8 frame), so the result is byte-identical. The final encode
happens once all frames are done; then the work folder is removed.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import sys
import time

from fastdream.errors import FastdreamError, InputError
from fastdream.video import io as vio

STATE_VERSION = 1
STOP_ENV = "FASTDREAM_VIDEO_STOP_AFTER"   # testing hook: interrupt after this many frames of a run


def input_fingerprint(path) -> dict:
    p = pathlib.Path(path)
    h = hashlib.sha256()
    with open(p, "rb") as f:
        h.update(f.read(1 << 20))
    return {"size": p.stat().st_size, "head_sha256": h.hexdigest()}


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


class WorkFolder:
    def __init__(self, output, params: dict, resume: bool):
        out = pathlib.Path(output)
        self.path = out.with_name(out.name + ".fastdream-work") if out.name else pathlib.Path("frames.fastdream-work")
        self.frames_dir = self.path / "frames"
        self.state_path = self.path / "state.json"
        self.hash = params_hash(params)
        self.state = {"version": STATE_VERSION, "params_hash": self.hash, "params": params, "frames_done": 0,
                      "warp_errors": {}, "seconds": {}}
        self.resumed_from = 0
        if self.path.exists():
            old = self._load()
            if not resume:
                raise InputError(f"{self.path}: an interrupted job left its work here; continue it with --resume "
                                 "or delete the folder")
            if old is None:
                raise InputError(f"{self.state_path}: missing or damaged; delete {self.path} to start over")
            if old.get("params_hash") != self.hash:
                diff = sorted(k for k in set(params) | set(old.get("params", {}))
                              if params.get(k) != old.get("params", {}).get(k))
                raise InputError(f"{self.path}: the interrupted job used other parameters or input "
                                 f"({', '.join(map(str, diff[:6])) or 'see state.json'}); use the same flags, "
                                 "or delete the folder to start over")
            self.state = old
            self.resumed_from = self._finished_frames()
            self.state["frames_done"] = self.resumed_from
        else:
            self.frames_dir.mkdir(parents=True)
            self.save()

    def _load(self):
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None

    def _finished_frames(self) -> int:
        """Contiguous finished frames from 0 (each PNG was renamed into place whole; the last is read
        back to be sure)."""
        n = 0
        while self.frame_path(n).exists():
            n += 1
        while n > 0 and vio.read_png(self.frame_path(n - 1)) is None:
            n -= 1
        return n

    def frame_path(self, i: int) -> pathlib.Path:
        return self.frames_dir / f"{i:06d}.png"

    def save(self) -> None:
        tmp = self.state_path.with_name(".state.json.part")
        tmp.write_text(json.dumps(self.state, indent=1, default=str))
        os.replace(tmp, self.state_path)

    def finish_frame(self, i: int, frame, warp_err, seconds: float) -> None:
        vio.write_png(self.frame_path(i), frame)
        self.state["frames_done"] = i + 1
        if warp_err is not None:
            self.state["warp_errors"][str(i)] = warp_err
        self.state["seconds"][str(i)] = round(seconds, 4)
        self.save()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def run_job(input_path, output, processor, coherence, device, params: dict, *, resume=False, codec=None,
            crf=18, keep_work=False, max_frames=None, progress=True, log=None) -> dict:
    """Dream every frame of a video file into ``output`` (a video file or a PNG sequence), resumable.
    Returns the report's figures."""
    from fastdream.video.coherence import process

    log = log or (lambda msg: print(msg, file=sys.stderr))
    t_start = time.perf_counter()
    reader = vio.FrameReader(input_path)
    info = reader.info
    png_out = vio.is_png_sequence(output)
    if png_out:
        vio.PngSequenceWriter(output).abort()  # checks the folder / pattern now
        codec = "png"
    else:
        codec = vio.check_video_output(output, codec, info.width, info.height, info.fps)
    full = {**params, "input": input_fingerprint(input_path), "max_frames": max_frames,
            "size": [info.width, info.height]}
    work = WorkFolder(output, full, resume)
    k = work.resumed_from
    if resume and k:
        log(f"resuming after {k} finished frame(s) in {work.path}")
    stop_after = int(os.environ.get(STOP_ENV, "0") or 0)
    total = info.frames if info.frames else None
    if max_frames:
        total = min(total, max_frames) if total else max_frames
    bar = _bar(total, k, progress)
    t_decode = t_dream = 0.0
    prev_in = prev_out = None
    n = 0
    done_this_run = 0
    it = iter(reader)
    try:
        while max_frames is None or n < max_frames:
            t0 = time.perf_counter()
            try:
                frame = next(it)
            except StopIteration:
                break
            t_decode += time.perf_counter() - t0
            i = n
            n += 1
            if i < k - 1:
                continue
            if i == k - 1:  # the last finished frame: the coherence source for the next
                prev_in, prev_out = frame, vio.read_png(work.frame_path(i))
                if prev_out is None or prev_out.shape != frame.shape:
                    raise InputError(f"{work.frame_path(i)}: damaged; delete {work.path} to start over")
                continue
            t1 = time.perf_counter()
            out, err = process(processor, coherence, i, frame, prev_in, prev_out, device)
            t_dream += time.perf_counter() - t1
            work.finish_frame(i, out, err, time.perf_counter() - t1)
            prev_in, prev_out = frame, out
            done_this_run += 1
            bar.update(1)
            if stop_after and done_this_run >= stop_after:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.close()
        raise JobInterrupted(work.state["frames_done"], work.path) from None
    bar.close()
    frames = work.state["frames_done"]
    if frames == 0 or n == 0:
        work.remove()
        why = f" ({reader.error})" if reader.error else ""
        raise InputError(f"{input_path}: no frame could be decoded{why}")
    lost = reader.lost() if max_frames is None or n < max_frames else 0
    if lost:
        log(f"warning: {input_path}: {lost} frame(s) could not be decoded (truncated or damaged input"
            f"{': ' + reader.error if reader.error else ''}); the {frames} decodable frame(s) were dreamed")
    t2 = time.perf_counter()
    if png_out:
        writer = vio.PngSequenceWriter(output)
        try:
            for i in range(frames):
                writer.write_file(work.frame_path(i))
            writer.close()
        except BaseException:
            writer.abort()
            raise
    else:
        cut = max_frames is not None and n >= max_frames  # --frames stopped before the end: so does the audio
        writer = vio.open_writer(output, info.width, info.height, info.fps, codec=codec, crf=crf,
                                 audio_from=str(input_path), audio_until=frames / float(info.fps) if cut else None)
        try:
            for i in range(frames):
                f = vio.read_png(work.frame_path(i))
                if f is None:
                    raise InputError(f"{work.frame_path(i)}: damaged; delete {work.path} to start over")
                writer.write(f)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    t_encode = time.perf_counter() - t2
    if writer.audio_note:
        log(f"warning: audio not copied: {writer.audio_note}")
    errs = [work.state["warp_errors"][str(i)] for i in range(1, frames) if str(i) in work.state["warp_errors"]]
    secs = [work.state["seconds"][str(i)] for i in range(frames) if str(i) in work.state["seconds"]]
    report = {
        "input": str(input_path), "output": str(output), "codec": codec,
        "size": [info.width, info.height],
        "frames_in": n, "frames_out": frames,
        "fps_in": float(info.fps), "fps_out": float(info.fps),
        "seconds_per_frame": round(sum(secs) / len(secs), 4) if secs else None,
        "audio_in": info.has_audio, "audio_copied": bool(getattr(writer, "audio_copied", False)),
        "dropped_frames": 0, "lost_frames": lost,
        "latency_ms": None,
        "warp_error": round(sum(errs) / len(errs), 6) if errs else None,
        "coherence": {"flow": coherence.use_flow, "blend": coherence.blend, "smooth": coherence.smooth},
        "processor": processor.name,
        "resumed_from_frame": k,
        "seconds": round(time.perf_counter() - t_start, 3),
        "seconds_decode": round(t_decode, 3), "seconds_process": round(t_dream, 3),
        "seconds_flow": round(coherence.seconds_flow, 3), "seconds_encode": round(t_encode, 3),
    }
    if not keep_work:
        work.remove()
    return report


class JobInterrupted(FastdreamError):
    def __init__(self, frames_done: int, work):
        super().__init__(f"interrupted after {frames_done} finished frame(s); continue with --resume "
                         f"(the work is kept in {work})")
        self.frames_done = frames_done


def _bar(total, initial, enabled):
    from fastdream.progress import Progress

    return Progress(total, "video", unit="frame", enabled=None if enabled in (None, True) else False,
                    initial=initial)
