"""Interrupted jobs, with real signals in real processes: SIGINT (Ctrl-C) and SIGKILL (the machine or the
OOM killer ends the process) in the middle of `fastdream video`, then `--resume` gives byte for byte what
an uninterrupted run gives. Also: a dream whose gradients turn NaN skips those steps and says so."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import corpus
from conftest import REPO

pytest.importorskip("av")
pytest.importorskip("cv2")

VFLAGS = ["--octaves", "1", "--steps", "1"]


def cli(*args):
    return [sys.executable, "-m", "fastdream.cli.main", *map(str, args)]


def env():
    return {**os.environ, "TQDM_DISABLE": "1"}  # the installed fastdream (or PYTHONPATH, as given)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return corpus.tiny_clip(tmp_path_factory.mktemp("clip"), frames=16)


@pytest.fixture(scope="module")
def whole(clip, tmp_path_factory):
    """The uninterrupted run, as PNG frames."""
    out = tmp_path_factory.mktemp("whole") / "frames"
    r = subprocess.run(cli("video", clip, "-o", out, *VFLAGS), capture_output=True, text=True, env=env(),
                       timeout=600)
    assert r.returncode == 0, r.stderr
    return out


def interrupt_after(argv, frames_dir, n, sig, timeout=300):
    """Start ``argv``, wait until ``frames_dir`` holds ``n`` finished PNGs, send ``sig``; (rc, stderr)."""
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and p.poll() is None:
            if frames_dir.is_dir() and len(list(frames_dir.glob("[0-9]*.png"))) >= n:
                break
            time.sleep(0.02)
        assert p.poll() is None, "the job ended before it could be interrupted: " + p.stderr.read()
        p.send_signal(sig)
        _, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    return p.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_video_signal_then_resume_is_identical(sig, clip, whole, tmp_path):
    out = tmp_path / "frames"
    work = tmp_path / "frames.fastdream-work"
    rc, err = interrupt_after(cli("video", clip, "-o", out, *VFLAGS), work / "frames", 3, sig)
    if sig == signal.SIGINT:
        assert rc == 130, err
        assert "Traceback" not in err and "--resume" in err, err
    else:
        assert rc == -signal.SIGKILL
    assert not out.exists()  # no output until the job is whole
    done = len(list((work / "frames").glob("[0-9]*.png")))
    assert 3 <= done < 16
    r = subprocess.run(cli("video", clip, "-o", out, "--resume", *VFLAGS), capture_output=True, text=True,
                       env=env(), timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resuming after" in r.stderr
    a = sorted(whole.iterdir())
    b = sorted(out.iterdir())
    assert [p.name for p in a] == [p.name for p in b] and len(a) == 16
    for x, y in zip(a, b):
        assert x.read_bytes() == y.read_bytes(), x.name
    assert not work.exists()


def test_video_sigkill_while_a_frame_is_written(clip, tmp_path):
    """A half-written frame (its temporary left behind, or a damaged last PNG) is redone on --resume."""
    out = tmp_path / "v.mp4"
    work = tmp_path / "v.mp4.fastdream-work"
    rc, _ = interrupt_after(cli("video", clip, "-o", out, *VFLAGS), work / "frames", 2, signal.SIGKILL)
    assert rc == -signal.SIGKILL and not out.exists()
    frames = sorted((work / "frames").glob("[0-9]*.png"))
    (work / "frames" / f".{len(frames):06d}.png.part").write_bytes(b"\x89PNG half")  # killed mid-write
    frames[-1].write_bytes(frames[-1].read_bytes()[:40])  # and a damaged last frame
    r = subprocess.run(cli("video", clip, "-o", out, "--resume", "--report", tmp_path / "r.json", *VFLAGS),
                       capture_output=True, text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["frames_out"] == 16 and rep["resumed_from_frame"] == len(frames) - 1
    from fastdream.video import io as vio

    assert vio.probe(out).frames == 16
    assert not work.exists()


def test_dream_nan_gradients_are_skipped_and_reported(tmp_path, monkeypatch, capsys):
    """Gradients that turn NaN (here: forced) are skipped, counted in the report, and the output is finite."""
    import numpy as np
    import torch
    from PIL import Image

    from fastdream.cli.main import main
    from fastdream.engine import dream as engine

    real_grad = torch.autograd.grad
    calls = {"n": 0}

    def nan_every_other(*a, **k):
        g = real_grad(*a, **k)
        calls["n"] += 1
        if calls["n"] % 2 == 0:
            g = tuple(torch.full_like(t, float("nan")) for t in g)
        return g

    monkeypatch.setattr(engine.torch.autograd, "grad", nan_every_other)
    src = tmp_path / "in.png"
    corpus.photo().save(src)
    out, rep = tmp_path / "o.png", tmp_path / "r.json"
    rc = main(["dream", str(src), "-o", str(out), "--report", str(rep), "--octaves", "1", "--steps", "4"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads(rep.read_text())
    if calls["n"] == 0:
        pytest.skip("the engine does not take gradients through torch.autograd.grad")
    assert report["skipped_steps"] >= 1, report
    a = np.asarray(Image.open(out))
    assert a.shape == (48, 64, 3)
