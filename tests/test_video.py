"""fastdream video: files keep frames, rate and audio; coherence lowers the warp error; resumed jobs are
byte-identical; raw stdin/stdout; bad inputs fail with one line and leave no output.

Dream-heavy checks use a cheap stand-in processor with per-frame randomness (like the dreamer's jitter)
or ``--steps 0``; the real dreamer's figures come from bench/bench_video.py.
"""
from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")

from conftest import DATA  # noqa: E402

from fastdream.cli.main import main  # noqa: E402
from fastdream.video import io as vio  # noqa: E402
from fastdream.video.coherence import Coherence, frame_seed  # noqa: E402
from fastdream.video.flow import FlowEstimator, occlusion_mask, warp  # noqa: E402
from fastdream.video.resume import STOP_ENV, JobInterrupted, run_job  # noqa: E402

FAST = ["--octaves", "1", "--steps", "0"]


def make_pan_clip(path, frames=24, size=(160, 120), fps=24, audio=True, step=3, faststart=False):
    """A camera pan across a photo (``step`` pixels per frame to the right), H.264, with a 440 Hz tone."""
    W, H = size
    img = cv2.imread(str(DATA / "chelsea_224.jpg"))[..., ::-1]
    big = cv2.resize(img, (W + step * frames + 8, H + 8), interpolation=cv2.INTER_AREA)
    c = av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {})
    v = c.add_stream("libx264", rate=fps)
    v.width, v.height, v.pix_fmt = W, H, "yuv420p"
    v.options = {"crf": "12"}
    a = None
    if audio:
        a = c.add_stream("aac", rate=44100)
        a.layout = "mono"
    for i in range(frames):
        f = np.ascontiguousarray(big[4:4 + H, step * i:step * i + W])
        for p in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            c.mux(p)
    for p in v.encode(None):
        c.mux(p)
    if a is not None:
        n = int(44100 * frames / fps)
        s = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 44100)).astype(np.float32)
        for k in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(s[None, k:k + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts = 44100, k
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode(None):
            c.mux(p)
    c.close()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_pan_clip(tmp_path_factory.mktemp("clip") / "pan.mp4")


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory):
    return make_pan_clip(tmp_path_factory.mktemp("small") / "pan.mp4", frames=10, size=(64, 48), audio=False)


class Flicker:
    """A stand-in for the dreamer: adds a smooth random pattern drawn from the frame's seed (as jitter is),
    so consecutive frames disagree the way independently dreamed ones do."""

    name = "flicker"

    def __init__(self, amount=0.15, seed=0):
        self.amount, self.seed, self.index = amount, seed, 0

    def at_frame(self, index):
        self.index = index

    def __call__(self, x):
        g = torch.Generator().manual_seed(frame_seed(self.seed, self.index))
        H, W = x.shape[-2:]
        n = torch.rand(1, 3, max(1, H // 8), max(1, W // 8), generator=g) - 0.5
        n = torch.nn.functional.interpolate(n, size=(H, W), mode="bilinear", align_corners=False)
        return (x + self.amount * n).clamp(0, 1)


def fail(argv, capsys):
    """Run the CLI expecting a user error: exit 2, one line on stderr, no traceback."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- files ----------------------------------------------------------------------------------------------
def test_video_keeps_frames_fps_size_and_audio(clip, tmp_path):
    out, rep = tmp_path / "out.mp4", tmp_path / "r.json"
    assert main(["video", str(clip), "-o", str(out), "--report", str(rep), *FAST]) == 0
    info = vio.probe(out)
    assert (info.width, info.height, info.fps, info.frames, info.has_audio) == (160, 120, 24, 24, True)
    assert info.codec == "h264"
    assert len(list(vio.FrameReader(out))) == 24
    r = json.loads(rep.read_text())
    assert r["frames_in"] == r["frames_out"] == 24 and r["audio_copied"] is True and r["lost_frames"] == 0
    assert r["fps_in"] == r["fps_out"] == 24.0 and r["warp_error"] is not None and r["seconds_per_frame"] > 0
    assert not (tmp_path / "out.mp4.fastdream-work").exists()


def test_video_png_sequence_and_codec(small_clip, tmp_path):
    folder = tmp_path / "frames"
    assert main(["video", str(small_clip), "-o", str(folder), *FAST]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [f"frame_{i:05d}.png" for i in range(10)]
    pattern = tmp_path / "f_%03d.png"
    assert main(["video", str(small_clip), "-o", str(pattern), *FAST]) == 0
    assert (tmp_path / "f_009.png").exists() and not (tmp_path / "f_010.png").exists()
    out = tmp_path / "out.mkv"
    assert main(["video", str(small_clip), "-o", str(out), "--codec", "ffv1", *FAST]) == 0
    assert vio.probe(out).codec == "ffv1" and vio.probe(out).frames in (None, 10)
    assert len(list(vio.FrameReader(out))) == 10


def test_video_coherence_lowers_warp_error(clip, tmp_path):
    figures = {}
    for flow in (True, False):
        out = tmp_path / f"o_{flow}.mp4"
        r = run_job(clip, out, Flicker(), Coherence(flow=flow), "cpu", {"t": 1}, progress=False)
        figures[flow] = r["warp_error"]
    assert figures[True] <= 0.5 * figures[False], figures


def test_video_resume_is_byte_identical(small_clip, tmp_path, monkeypatch):
    def job(out, **kw):
        return run_job(small_clip, out, Flicker(), Coherence(), "cpu", {"t": 1}, progress=False, **kw)

    job(tmp_path / "whole")
    monkeypatch.setenv(STOP_ENV, "4")
    with pytest.raises(JobInterrupted):
        job(tmp_path / "parts")
    assert not (tmp_path / "parts").exists()
    with pytest.raises(JobInterrupted):  # a second interruption, resumed
        job(tmp_path / "parts", resume=True)
    monkeypatch.delenv(STOP_ENV)
    r = job(tmp_path / "parts", resume=True)
    assert r["resumed_from_frame"] == 8 and r["frames_out"] == 10
    whole = sorted((tmp_path / "whole").iterdir())
    parts = sorted((tmp_path / "parts").iterdir())
    assert [p.name for p in whole] == [p.name for p in parts] and len(whole) == 10
    for a, b in zip(whole, parts):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert not (tmp_path / "parts.fastdream-work").exists()


def test_video_resume_cli(small_clip, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o.mp4"
    monkeypatch.setenv(STOP_ENV, "3")
    assert main(["video", str(small_clip), "-o", str(out), *FAST]) == 130
    assert "--resume" in capsys.readouterr().err and not out.exists()
    msg = fail(["video", str(small_clip), "-o", str(out), *FAST], capsys)  # work left, no --resume
    assert "--resume" in msg
    msg = fail(["video", str(small_clip), "-o", str(out), "--resume", "--blend", "0.3", *FAST], capsys)
    assert "other parameters" in msg and "blend" in msg
    monkeypatch.delenv(STOP_ENV)
    assert main(["video", str(small_clip), "-o", str(out), "--resume", *FAST]) == 0
    assert vio.probe(out).frames == 10


def test_flow_warp_and_occlusion():
    rng = np.random.default_rng(0)
    tex = (rng.random((60, 90, 3)) * 255).astype(np.uint8)
    tex = cv2.GaussianBlur(tex, (0, 0), 1.5)
    prev, cur = tex[:, 10:74].copy(), tex[:, 14:78].copy()   # the view moves 4 px right
    fe = FlowEstimator("medium")
    pair = fe.pair(prev, cur)
    inner = (slice(8, -8), slice(8, -12))
    assert abs(float(np.median(pair.back[..., 0][inner])) - 4.0) < 0.5
    w = warp(prev, pair.back)
    assert np.abs(w[inner].astype(float) - cur[inner]).mean() < 6
    assert pair.mask[:, -2:].mean() < 0.5 < pair.mask[inner].mean()  # the new strip on the right has no match
    still = np.zeros((20, 20, 2), np.float32)
    assert occlusion_mask(still, still).min() == 1.0


# -- streams --------------------------------------------------------------------------------------------
class _Stdin:
    def __init__(self, data):
        self.buffer = io.BytesIO(data)


def test_video_stdin_stdout_roundtrip(monkeypatch, capsysbinary):
    rng = np.random.default_rng(1)
    frames = (rng.random((5, 24, 32, 3)) * 255).astype(np.uint8)
    monkeypatch.setattr(sys, "stdin", _Stdin(frames.tobytes()))
    rc = main(["video", "-", "-o", "-", "--size", "32x24", "--fps", "10", "--no-flow", *FAST])
    out = capsysbinary.readouterr().out
    assert rc == 0
    assert out == frames.tobytes()  # zero dream steps, no coherence: the frames come back unchanged


def test_video_stdin_to_file_report(monkeypatch, tmp_path):
    frames = np.tile(np.arange(32, dtype=np.uint8)[None, None, :, None] * 6, (4, 24, 1, 3))
    monkeypatch.setattr(sys, "stdin", _Stdin(frames.tobytes()))
    out, rep = tmp_path / "s.mp4", tmp_path / "r.json"
    assert main(["video", "-", "-o", str(out), "--size", "32x24", "--fps", "8", "--report", str(rep), *FAST]) == 0
    r = json.loads(rep.read_text())
    assert r["frames_in"] == r["frames_out"] == 4 and r["dropped_frames"] == 0 and r["latency_ms"]["max"] > 0
    assert vio.probe(out).frames == 4 and vio.probe(out).fps == 8


def test_video_stdin_size_mismatch(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "stdin", _Stdin(bytes(32 * 24 * 3 * 2 + 100)))
    out = tmp_path / "s.mp4"
    msg = fail(["video", "-", "-o", str(out), "--size", "32x24", "--fps", "8", *FAST], capsys)
    assert "--size" in msg and not out.exists() and not list(tmp_path.iterdir())


def test_feed_drops_old_frames():
    import time

    from fastdream.video.streams import FrameFeed, Source

    class Fast(Source):
        width, height, fps, live, name = 4, 4, 100, True, "fast"

        def __init__(self):
            self.n = 0

        def read(self):
            if self.n >= 50:
                return None
            self.n += 1
            time.sleep(0.002)
            return np.full((4, 4, 3), self.n, np.uint8)

    feed = FrameFeed(Fast(), drop=True).start()
    got = []
    while (item := feed.get()) is not None:
        got.append(int(item[1][0, 0, 0]))
        time.sleep(0.02)  # a slow consumer
    assert got == sorted(got) and got[-1] == 50 and feed.dropped == 50 - len(got) > 0


# -- bad inputs -----------------------------------------------------------------------------------------
def test_video_not_a_video(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 50)
    out = tmp_path / "o.mp4"
    assert "not a video" in fail(["video", str(bad), "-o", str(out), *FAST], capsys)
    assert not out.exists()
    assert "no such file" in fail(["video", str(tmp_path / "missing.mp4"), "-o", str(out), *FAST], capsys)


def test_video_truncated_input(tmp_path, capsys):
    whole = make_pan_clip(tmp_path / "whole.mp4", frames=24, size=(64, 48), audio=False, faststart=True)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.8)])  # the moov atom (at the front) is a big part of a tiny clip
    out, rep = tmp_path / "o.mp4", tmp_path / "r.json"
    assert main(["video", str(cut), "-o", str(out), "--report", str(rep), *FAST]) == 0
    r = json.loads(rep.read_text())
    assert 0 < r["frames_out"] < 24 and r["lost_frames"] == 24 - r["frames_out"]
    assert vio.probe(out).frames == r["frames_out"]
    assert "could not be decoded" in capsys.readouterr().err
    garbage = tmp_path / "garbage.mp4"  # the moov atom at the end is gone: nothing to decode
    garbage.write_bytes(make_pan_clip(tmp_path / "x.mp4", frames=4, size=(64, 48), audio=False).read_bytes()[:3000])
    fail(["video", str(garbage), "-o", str(tmp_path / "g.mp4"), *FAST], capsys)
    assert not (tmp_path / "g.mp4").exists()


def test_video_stream_cannot_open(tmp_path, capsys):
    out = tmp_path / "o.mp4"
    msg = fail(["video", "rtsp://127.0.0.1:9/none", "-o", str(out), "--timeout", "2", *FAST], capsys)
    assert "cannot open" in msg and not out.exists()
    msg = fail(["video", "-", "-o", str(out), *FAST], capsys)
    assert "--size" in msg


def test_video_output_cannot_hold_codec(small_clip, tmp_path, capsys):
    out = tmp_path / "o.webm"
    fail(["video", str(small_clip), "-o", str(out), "--codec", "libx264", *FAST], capsys)
    fail(["video", str(small_clip), "-o", str(tmp_path / "o.mp4"), "--codec", "nosuchcodec", *FAST], capsys)
    fail(["video", str(small_clip), "-o", str(tmp_path / "o.xyz"), *FAST], capsys)
    fail(["video", str(small_clip), "-o", str(tmp_path / "nofolder" / "o.mp4"), *FAST], capsys)
    assert list(tmp_path.iterdir()) == []


def test_video_filter_needs_distill(small_clip, tmp_path, capsys, monkeypatch):
    """--filter without fastdream.distill: one clear line; with it, a broken model is a user error that
    is not blamed on a missing runtime. Both run on every machine (the missing package is simulated)."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07")   # not an ONNX model
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "fastdream.distill", None)   # import fastdream.distill raises ImportError
        m.setitem(sys.modules, "fastdream.distill.runtime", None)  # ...even when an earlier test imported it
        msg = fail(["video", str(small_clip), "-o", str(tmp_path / "o.mp4"), "--filter", str(model)], capsys)
    assert "filters need fastdream.distill" in msg, msg
    assert not (tmp_path / "o.mp4").exists()
    msg = fail(["video", str(small_clip), "-o", str(tmp_path / "o.mp4"), "--filter", str(model)], capsys)
    assert "filters need fastdream.distill" not in msg, msg
    assert list(tmp_path.iterdir()) == [model]
