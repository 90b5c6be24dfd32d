"""`--prior`, `--class NAME@box`, `--face` on the command line: results and reports, and bad input (one
line on stderr, exit code 2, no traceback, no output file)."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import DATA

FAST = ["--octaves", "1", "--steps", "2"]


def fd(*args):
    return subprocess.run([sys.executable, "-m", "fastdream.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    p = tmp_path_factory.mktemp("in") / "cat.png"
    Image.open(DATA / "chelsea_224.jpg").resize((120, 80)).save(p)
    return p


def _bad(r, out, *words):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert not out.exists()


@pytest.mark.parametrize("flags, words", [
    (["--class", "goldfish@0.5,0.1,0.2,0.6"], ["--class region", "x0<x1"]),            # inverted
    (["--class", "goldfish@0.2,0.2,0.2,0.6"], ["--class region"]),                      # empty
    (["--class", "goldfish@10,10,500,60"], ["--class region", "inside the picture"]),  # outside (pixels)
    (["--class", "goldfish@0,0,1.5,0.5"], ["--class region"]),                          # outside (mixed)
    (["--face", "0.6,0.1,0.2,0.9"], ["--face region"]),                                 # inverted face box
    (["--face", "0.1,0.1,0.2,0.2"], ["--face", "at least 20 pixels"]),                  # 12x8 pixels: too small
    (["--prior", "bn:abc"], ["--prior", "must be a number"]),
    (["--prior", "tv:"], []),                                                           # empty weight: default
    (["--prior", "none", "--prior", "bn"], ["alone"]),
    (["--prior", "wavelet"], ["--prior", "unknown prior"]),
    (["--face-suppress", "1"], ["--face-suppress goes with --face"]),
    (["--class", "goldfish@0.5,0,1,1", "--box-step", "box"], ["--box-step", "invalid choice"]),
    (["--class", "goldfish@0.5,0,1,1", "--class-backbone", "none", "--class-backbone", "efficientnet-lite1"],
     ["--class-backbone none goes alone"]),
    (["--class", "goldfish@0.5,0,1,1", "--class-backbone", "efficientnet-lite9"],
     ["--class-backbone efficientnet-lite9", "backbone"]),
])
def test_bad_input(tmp_path, photo, flags, words):
    out = tmp_path / "o.png"
    r = fd("dream", photo, "-o", out, *FAST, *flags)
    if flags == ["--prior", "tv:"]:
        assert r.returncode == 0, r.stderr
        return
    _bad(r, out, *words)


def test_face_on_a_picture_too_small_for_the_detector(tmp_path):
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (60, 16), (120, 90, 60)).save(tiny)
    out = tmp_path / "o.png"
    _bad(fd("dream", tiny, "-o", out, *FAST, "--face", "0,0,1,1"), out, "too small for the face detector")


def test_prior_weight_not_a_number_in_visualize_and_invert(tmp_path, photo):
    out = tmp_path / "v.png"
    _bad(fd("visualize", "--class", "goldfish", "-o", out, "--steps", "1", "--prior", "bn:x"), out, "must be a number")
    _bad(fd("invert", photo, "--layer", "block3", "-o", out, "--steps", "1", "--prior", "l2:1e"), out,
         "must be a number")


def test_class_in_box_changes_only_the_box_and_face_report(tmp_path, photo):
    out, rep = tmp_path / "o.png", tmp_path / "r.json"
    r = fd("dream", photo, "-o", out, "--report", rep, *FAST, "--class", "goldfish@60,10,110,70",
           "--face", "0.05,0.1,0.45,0.9")
    assert r.returncode == 0, r.stderr
    a = np.asarray(Image.open(out).convert("RGB"), dtype=int)
    b = np.asarray(Image.open(photo).convert("RGB"), dtype=int)
    changed = np.abs(a - b).max(2) > 0
    inside = np.zeros_like(changed)
    inside[10:70, 60:110] = True
    inside[8:72, 6:54] = True  # the face box in pixels: x 0.05..0.45 of 120, y 0.1..0.9 of 80
    assert changed[inside].mean() > 0.5 and not changed[~inside].any()
    report = json.loads(rep.read_text())
    (face,) = report["faces"]
    assert set(face) == {"box", "detected", "iou", "score"} and face["box"] == [6.0, 8.0, 54.0, 72.0]
    assert isinstance(report["faces_found"], list)
    assert report["params"]["priors"] == "default" and "BoxView" in report["params"]["objective"]
    # the class is drawn for the default backbone and EfficientNet-Lite1 at once
    assert report["params"]["class_backbones"] == ["efficientnet-lite1"]
    assert "backbone=efficientnet-lite1" in report["params"]["objective"]


def test_prior_none_and_explicit(tmp_path, photo):
    out, rep = tmp_path / "o.png", tmp_path / "r.json"
    r = fd("dream", photo, "-o", out, "--report", rep, *FAST, "--class", "goldfish@0.5,0.1,0.9,0.9", "--prior", "none")
    assert r.returncode == 0, r.stderr
    params = json.loads(rep.read_text())["params"]
    assert params["priors"] == "none" and "BNPrior" not in params["objective"]
    r = fd("dream", photo, "-o", out, "--report", rep, *FAST, "--class", "goldfish@0.5,0.1,0.9,0.9",
           "--class-backbone", "none")
    assert r.returncode == 0, r.stderr
    params = json.loads(rep.read_text())["params"]
    assert params["class_backbones"] == [] and "backbone=" not in params["objective"]
    assert params["box_step"] == "sqrt"  # the default (auto) for a class in a box
    r = fd("dream", photo, "-o", out, "--report", rep, *FAST, "--class", "goldfish@0.5,0.1,0.9,0.9",
           "--class-backbone", "none", "--box-step", "area")
    assert r.returncode == 0, r.stderr
    assert json.loads(rep.read_text())["params"]["box_step"] == "area"
    r = fd("dream", photo, "-o", out, "--report", rep, *FAST, "--layer", "block3", "--prior", "bn:2", "--prior", "tv")
    assert r.returncode == 0, r.stderr
    params = json.loads(rep.read_text())["params"]
    assert params["priors"] == ["bn:2", "tv:1"] and "BNPrior(0.004)" in params["objective"]


def test_visualize_samples_and_prior_in_report(tmp_path):
    out, rep = tmp_path / "v.png", tmp_path / "v.json"
    r = fd("visualize", "--class", "goldfish", "--samples", "2", "--diversity", "5", "--size", "32", "--steps", "2",
           "-o", out, "--report", rep)
    assert r.returncode == 0, r.stderr
    params = json.loads(rep.read_text())["params"]
    assert params["variants"] == 2 and params["diversity"] == 5 and params["prior"] == "BNPrior(0.002)"
    r = fd("visualize", "--class", "goldfish", "--size", "32", "--steps", "1", "-o", out, "--report", rep,
           "--prior", "none")
    assert r.returncode == 0, r.stderr
    assert json.loads(rep.read_text())["params"]["prior"] == "none"
