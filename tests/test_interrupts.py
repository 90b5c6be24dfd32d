"""Interrupted jobs, with real signals in real processes: SIGINT (Ctrl-C) and SIGKILL (the machine or the
OOM killer ends the process) in the middle of `fastdream video`, then `--resume` gives byte for byte what
an uninterrupted run gives. Also: a dream whose gradients turn NaN skips those steps and says so."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

import corpus
from conftest import REPO, ctrl_c_default

# PyAV and OpenCV are required dependencies (pyproject): a missing one is a broken install, so fail, not skip
import av  # noqa: E402,F401
import cv2  # noqa: E402,F401

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
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env(),
                         preexec_fn=ctrl_c_default)
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
    # one untiled gradient per step, each through torch.autograd.grad: if the engine ever takes them some
    # other way the NaNs are no longer forced, and this must fail rather than pass without testing anything
    assert calls["n"] == 4, f"the hook saw {calls['n']} gradients for 4 steps"
    assert report["steps"] == 4 and report["skipped_steps"] == 2, report   # calls 2 and 4 were NaN
    assert all(math.isfinite(report[k]) for k in ("objective_before", "objective_after")), report
    a = np.asarray(Image.open(out))
    assert a.shape == (48, 64, 3)


# -- distill: the teacher dataset and the training, killed and resumed -----------------------------------

DFLAGS = ["--count", "8", "--size", "32", "--octaves", "1", "--steps", "1", "--threads", "1"]
TFLAGS = ["--steps", "6", "--save-every", "2", "--batch", "2", "--crop", "24", "--loss-margin", "0",
          "--adversarial-start", "2", "--width", "8", "--deep", "16"]  # the discriminator and the shift term on


def _wait_for(p, ready, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None and not ready():
        time.sleep(0.02)
    assert p.poll() is None, "the job ended before it could be interrupted: " + p.stderr.read()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    for name in ("chelsea.jpg", "astronaut.jpg"):
        (d / name).write_bytes((REPO / "examples" / name).read_bytes())
    return d


@pytest.fixture(scope="module")
def whole_dataset(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "pairs"
    r = subprocess.run(cli("distill", "dataset", photos, "-o", out, *DFLAGS), capture_output=True, text=True,
                       env=env(), timeout=600)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_distill_dataset_signal_then_resume_is_identical(sig, photos, whole_dataset, tmp_path):
    out = tmp_path / "pairs"
    p = subprocess.Popen(cli("distill", "dataset", photos, "-o", out, *DFLAGS), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env(), preexec_fn=ctrl_c_default)
    try:
        _wait_for(p, lambda: len(list(out.glob("pair_*.png"))) >= 3)
        p.send_signal(sig)
        _, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), err
    assert len(list(out.glob("pair_*.png"))) < 8
    r = subprocess.run(cli("distill", "dataset", photos, "-o", out, "--resume", *DFLAGS), capture_output=True,
                       text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stderr
    names = sorted(f.name for f in whole_dataset.glob("pair_*.png"))
    assert names == sorted(f.name for f in out.glob("pair_*.png")) and len(names) == 8
    for n in names:
        assert (out / n).read_bytes() == (whole_dataset / n).read_bytes(), n


def _state(path):
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=True)
    sd = obj.get("model") or obj.get("state_dict") or obj
    return {k: v for k, v in sd.items() if hasattr(v, "shape")}


def test_distill_train_killed_then_resumed_matches_uninterrupted(whole_dataset, tmp_path):
    import torch

    ref = tmp_path / "ref.pt"
    r = subprocess.run(cli("distill", "train", whole_dataset, "-o", ref, *TFLAGS), capture_output=True, text=True,
                       env=env(), timeout=900)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "f.pt"
    p = subprocess.Popen(cli("distill", "train", whole_dataset, "-o", out, *TFLAGS), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env())
    try:
        _wait_for(p, out.exists)  # the first checkpoint (step 2) is written
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    r = subprocess.run(cli("distill", "train", whole_dataset, "-o", out, "--resume", *TFLAGS), capture_output=True,
                       text=True, env=env(), timeout=900)
    assert r.returncode == 0, r.stderr
    a, b = _state(ref), _state(out)
    assert a.keys() == b.keys() and a
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
