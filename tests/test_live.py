"""fastdream video --live: the dream is carried along the flow and grows over frames; every input and
output of `video`; the report's live figures; pacing (drop on cameras); a camera that stops; bad flags.

Everything here runs the real dreamer (EfficientNet-Lite0, block9) on small frames; the figures at
320x240 and 640x480 come from bench/bench_live.py.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")

from conftest import DATA  # noqa: E402
from test_video import _Stdin, fail, make_pan_clip  # noqa: E402

from fastdream.cli.main import main  # noqa: E402
from fastdream.video import io as vio  # noqa: E402


@pytest.fixture(scope="module")
def pan(tmp_path_factory):
    return make_pan_clip(tmp_path_factory.mktemp("live") / "pan.mp4", frames=12, size=(96, 72), step=3)


@pytest.fixture(scope="module")
def live_setup():
    from fastdream.api import get_backbone, make_config
    from fastdream.objective_text import build_objective

    bb = get_backbone(None, "cpu")
    cfg, layers = make_config("classic", precision="fp32")
    return bb, build_objective(bb, (72, 96), layers=layers), cfg


def photo(w=96, h=72):
    img = cv2.imread(str(DATA / "chelsea_224.jpg"))[..., ::-1]
    return np.ascontiguousarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))


def noisy(img, rng, sigma=2.0):
    return np.clip(img.astype(np.float32) + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)


def frames_of(path):
    return list(vio.FrameReader(path))


# -- the live dreamer --------------------------------------------------------------------------------
def test_live_dream_builds_up_on_a_still_scene(live_setup):
    from fastdream.video.live import LiveDreamer

    bb, obj, cfg = live_setup
    live = LiveDreamer(bb, obj, cfg, steps_per_frame=1)
    sizes = live.levels(72, 96)
    assert sizes[0] == (72, 96) and len(sizes) >= 1
    assert [live.level_of(i, 3) for i in range(7)] == [2, 1, 0, 2, 1, 0, 2]   # coarse to fine, in turn
    rng = np.random.default_rng(0)
    still = photo()
    change = []
    for i in range(16):
        out = live(noisy(still, rng))
        change.append(np.abs(out.astype(np.float32) - still).mean())
    assert live.steps == 16 and live.index == 16
    assert change[-1] > 2.5 * change[0] > 0          # the dream accumulates instead of restarting
    assert live.objective_gain() > 1.3               # the objective climbs over the frames


def test_live_stream_that_changes_size_starts_again(live_setup):
    from fastdream.video.live import LiveDreamer

    bb, obj, cfg = live_setup
    live = LiveDreamer(bb, obj, cfg)
    live(photo())
    assert live.levels(72, 96)[0] == (72, 96)
    out = live(photo(64, 48))
    assert out.shape == (48, 64, 3) and live.index == 1 and live.levels(48, 64)[0] == (48, 64)
    with pytest.raises(Exception, match="uint8 frame"):
        live(photo().astype(np.float32))


def test_live_carry_follows_the_flow_and_clears_new_pixels(live_setup):
    """The detail of frame 1 moves with the pan onto frame 2; the strip that enters has none."""
    from fastdream.video.live import LiveDreamer

    bb, obj, cfg = live_setup
    live = LiveDreamer(bb, obj, cfg, steps_per_frame=2)
    wide = cv2.resize(photo(), (112, 72), interpolation=cv2.INTER_AREA)
    f1, f2 = np.ascontiguousarray(wide[:, 0:96]), np.ascontiguousarray(wide[:, 6:102])  # the view moves 6 px right
    live(f1)
    d1 = live._detail
    assert np.abs(d1).mean() > 0.005
    d2, pair = live.carry(f2)
    assert pair.mask[:, -3:].mean() < 0.5                            # the entering strip: no trusted match
    assert np.abs(d2[:, -3:]).max() == 0 or np.abs(d2[:, -3:]).mean() < 0.3 * np.abs(d1).mean()
    here, there = d2[10:-10, 10:80], d1[10:-10, 16:86]               # frame 2 at x is frame 1 at x + 6
    err = np.abs(here - there).mean()
    assert err < 0.4 * np.abs(there).mean(), err                     # carried, not lost or smeared
    unmoved = np.abs(d2[10:-10, 10:80] - d1[10:-10, 10:80]).mean()
    assert err < 0.5 * unmoved                                       # it did move with the view


def test_live_region_dreams_only_inside(monkeypatch, tmp_path):
    """A region objective in live mode: outside the region the frames stay the camera's."""
    rng = np.random.default_rng(1)
    raw = np.stack([noisy(photo(), rng, 1.0) for _ in range(6)])
    monkeypatch.setattr(sys, "stdin", _Stdin(raw.tobytes()))
    out = tmp_path / "out"
    assert main(["video", "-", "-o", str(out), "--size", "96x72", "--fps", "10", "--live",
                 "--steps-per-frame", "2", "--layer", "block9@0,0,0.4,1"]) == 0
    pngs = sorted(out.iterdir())
    assert len(pngs) == 6
    d = np.abs(vio.read_png(pngs[-1]).astype(np.float32) - raw[-1]).mean(-1)
    assert d[:, :30].mean() > 4 * max(d[:, 60:].mean(), 0.5), (d[:, :30].mean(), d[:, 60:].mean())


# -- the command ---------------------------------------------------------------------------------------
def test_live_cli_file_report_and_audio(pan, tmp_path):
    out, rep = tmp_path / "o.mp4", tmp_path / "r.json"
    assert main(["video", str(pan), "--live", "--steps-per-frame", "2", "-o", str(out), "--report", str(rep),
                 "--preset", "classic"]) == 0
    info = vio.probe(out)
    assert (info.width, info.height, info.fps, info.frames, info.has_audio) == (96, 72, 24, 12, True)
    r = json.loads(rep.read_text())
    assert r["live"] is True and r["steps_per_frame"] == 2 and r["steps_done"] == 24
    assert r["frames_in"] == r["frames_out"] == 12 and r["dropped_frames"] == 0 and r["mode"] == "block"
    assert r["processing_fps"] > 0 and set(r["latency_ms"]) >= {"mean", "p50", "p95"}
    assert r["latency_ms"]["p50"] <= r["latency_ms"]["p95"]
    assert r["objective_gain_last"] > 1.0 and 0 < r["warp_error"] < 0.1
    assert r["audio_copied"] is True and r["params"]["precision"] in ("bf16", "fp32")
    got, src = frames_of(out), frames_of(pan)
    assert len(got) == 12 and np.abs(got[-1].astype(float) - src[-1]).mean() > 3   # dreamed, not copied
    assert not list(tmp_path.glob(".*part*"))


def test_live_warp_error_below_per_frame_dreaming(pan, tmp_path):
    figures = {}
    for mode in ("live", "naive"):
        rep = tmp_path / f"{mode}.json"
        flags = ["--live", "--steps-per-frame", "2"] if mode == "live" else ["--no-flow", "--steps", "4"]
        assert main(["video", str(pan), "-o", str(tmp_path / f"{mode}.mp4"), "--report", str(rep),
                     "--preset", "classic", *flags]) == 0
        figures[mode] = json.loads(rep.read_text())["warp_error"]
    assert figures["live"] <= 0.5 * figures["naive"], figures


def test_live_stdin_to_stdout(monkeypatch, capsysbinary):
    rng = np.random.default_rng(2)
    frames = np.stack([noisy(photo(64, 48), rng) for _ in range(5)])
    monkeypatch.setattr(sys, "stdin", _Stdin(frames.tobytes()))
    rc = main(["video", "-", "-o", "-", "--size", "64x48", "--fps", "10", "--live"])
    out = capsysbinary.readouterr().out
    assert rc == 0 and len(out) == frames.nbytes
    got = np.frombuffer(out, np.uint8).reshape(frames.shape)
    assert np.abs(got[-1].astype(float) - frames[-1]).mean() > 1.0


class FakeCamera:
    """Stands in for cv2.VideoCapture: ``n`` frames of a photo at ``fps`` (real time), then the device
    is gone (read fails, as when a USB camera is unplugged)."""

    n, fps, raises = 40, 60.0, False

    def __init__(self, index):
        self.i, self.t0 = 0, None
        self.img = photo(64, 48)[..., ::-1]

    def isOpened(self):
        return True

    def set(self, *a):
        return True

    def get(self, prop):
        return self.fps

    def read(self):
        if self.i >= self.n:
            if self.raises:
                raise cv2.error("device disconnected")
            return False, None
        if self.i <= 1:  # real time from the second frame on (the first is read when the camera opens)
            self.t0 = time.perf_counter() - self.i / self.fps
        wait = self.t0 + self.i / self.fps - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        self.i += 1
        return True, np.ascontiguousarray(np.roll(self.img, self.i, axis=1))

    def release(self):
        pass


@pytest.mark.parametrize("raises", [False, True])
def test_live_camera_drops_to_newest_and_stopping_keeps_output(monkeypatch, tmp_path, capsys, raises):
    monkeypatch.setattr(FakeCamera, "raises", raises)
    monkeypatch.setattr(cv2, "VideoCapture", FakeCamera)
    out, rep = tmp_path / "cam.mp4", tmp_path / "r.json"
    rc = main(["video", "0", "--live", "-o", str(out), "--report", str(rep), "--steps-per-frame", "3"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "camera 0 stopped giving frames" in err and "Traceback" not in err
    r = json.loads(rep.read_text())
    assert r["mode"] == "drop" and r["frames_in"] == 40
    assert r["dropped_frames"] > 0 and r["frames_out"] + r["dropped_frames"] == 40   # it kept up by dropping
    assert vio.probe(out).frames == r["frames_out"] == len(frames_of(out))


# -- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,want", [("0", "must be >= 1"), ("-2", "must be >= 1"), ("two", "expected a whole number"),
                                    ("1.5", "expected a whole number")])
def test_live_bad_steps_per_frame(pan, tmp_path, capsys, k, want):
    out = tmp_path / "o.mp4"
    with pytest.raises(SystemExit) as e:
        main(["video", str(pan), "--live", "--steps-per-frame", k, "-o", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and want in err and "--steps-per-frame" in err
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_live_refuses_what_it_cannot_honour(pan, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    msg = fail(["video", str(pan), "--live", "--no-flow", "--blend", "0.3", "--resume", "-o", str(out)], capsys)
    assert "--live cannot honour" in msg and "--no-flow" in msg and "--blend" in msg and "--resume" in msg
    msg = fail(["video", str(pan), "--live", "--steps", "5", "-o", str(out)], capsys)
    assert "--steps (" in msg and "--steps-per-frame" in msg
    msg = fail(["video", str(pan), "--live", "--filter", "m.onnx", "--init", "noise", "-o", str(out)], capsys)
    assert "--filter" in msg and "--init noise" in msg
    msg = fail(["video", str(pan), "--steps-per-frame", "2", "-o", str(out)], capsys)
    assert "--steps-per-frame is for --live" in msg
    assert not list(tmp_path.iterdir())


def test_live_camera_that_never_opens(monkeypatch, tmp_path, capsys):
    class Closed(FakeCamera):
        def isOpened(self):
            return False

    monkeypatch.setattr(cv2, "VideoCapture", Closed)
    out = tmp_path / "o.mp4"
    assert "cannot open" in fail(["video", "3", "--live", "-o", str(out)], capsys)
    assert not list(tmp_path.iterdir())
