"""The bad-input corpus: every command against broken files, odd pictures, bad paths and bad flags.

Each case either works (the output exists with the right size) or ends the way the design promises:
one line on stderr, exit code 2, no traceback, and no file at the output path (nor any stray temporary).
The files come from tests/corpus.py, made in a temporary folder. Commands run in this process (fast);
a few run in a fresh process to check what a real terminal sees.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import subprocess
import sys
from typing import Callable

import pytest
from PIL import Image

import corpus
from conftest import REPO

FAST = ["--octaves", "1", "--steps", "1"]


class Corpus:
    """The corpus files, each made on first use in one module-wide folder."""

    def __init__(self, root: pathlib.Path):
        self.root = root

    def __getattr__(self, name):
        builder = getattr(corpus, name)
        path = builder(self.root)
        setattr(self, name, path)
        return path

    @functools.cached_property
    def small(self):  # an ordinary picture, 64x48
        p = self.root / "small.png"
        corpus.photo().save(p)
        return p

    @functools.cached_property
    def small_jpg(self):
        p = self.root / "small.jpg"
        corpus.photo().save(p, quality=95)
        return p

    @functools.cached_property
    def clip(self):
        return corpus.tiny_clip(self.root)

    @functools.cached_property
    def missing(self):
        return self.root / "missing.png"


@pytest.fixture(scope="module")
def cp(tmp_path_factory):
    return Corpus(tmp_path_factory.mktemp("corpus"))


@dataclasses.dataclass
class Case:
    id: str
    argv: Callable          # (corpus, out) -> list of arguments after the command name
    msg: str | None = None  # a failing case: this text is in the one stderr line
    out: str = "out.png"    # the output's name in the test's own folder
    size: tuple | None = None  # a working case: the output's (W, H), when it is a picture or video
    check: Callable | None = None  # a working case: more checks on (out, stdout)
    marks: tuple = ()
    also: tuple = ()        # a working case: other files it writes beside the output

    def param(self, command):
        return pytest.param(command, self, id=f"{command}-{self.id}", marks=list(self.marks))


def ok(id, argv, size=None, out="out.png", check=None, marks=(), also=()):
    return Case(id, argv, None, out, size, check, marks, also)


def bad(id, argv, msg, out="out.png", marks=()):
    return Case(id, argv, msg, out, marks=marks)


def _is_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _readonly_folder(c, out):
    """An output inside a folder without write permission (as root the permission does not bite)."""
    ro = out.parent / "ro"
    ro.mkdir(exist_ok=True)
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):
        ro.chmod(0o755)
        pytest.skip("running as root: a read-only folder is still writable, so the case cannot be made")
    return ro / "x.png"


def _subfolder(c):
    p = c.root / "sub"
    p.mkdir(exist_ok=True)
    return p


def _format_is(fmt):
    def check(out, stdout):
        assert Image.open(out).format == fmt

    return check


# -- cases common to the commands that read one picture ---------------------------------------------------
def picture_input_cases(extra, small_out=(64, 48)):
    """Bad and odd input pictures for a command whose argv is ``[INPUT, -o, OUT, *extra]``."""
    def a(attr):
        return lambda c, out: [getattr(c, attr), "-o", out, *extra]

    return [
        bad("missing-file", a("missing"), "no such file"),
        bad("zero-byte", a("zero_byte"), "empty file"),
        bad("text-named-png", a("text_as_png"), "not a picture"),
        bad("truncated-png", a("truncated_png"), "cannot read"),
        bad("truncated-jpeg", a("truncated_jpeg"), "cannot read"),
        bad("bomb-png", a("bomb_png"), "too large"),
        bad("empty-folder-as-input", lambda c, out: [_subfolder(c), "-o", out, *extra], "folder"),
        ok("gray16", a("gray16"), size=small_out),
        ok("cmyk-jpeg", a("cmyk_jpeg"), size=small_out),
        ok("palette", a("palette_png"), size=small_out),
        ok("la", a("la_png"), size=small_out),
        ok("rgba", a("rgba_png"), size=small_out),
        ok("animated-gif", a("animated_gif"), size=small_out),
        ok("non-utf8-name", a("non_utf8_name"), size=small_out),
    ]


def output_path_cases(argv_in, what="picture"):
    """Bad output paths for ``[*argv_in(c), -o, OUT]``."""
    return [
        bad("out-missing-folder", lambda c, out: [*argv_in(c), "-o", out.parent / "nofolder" / "x.png"],
            "does not exist"),
        bad("out-readonly-folder", lambda c, out: [*argv_in(c), "-o", _readonly_folder(c, out)], "not writable"),
        bad("out-unknown-ext", lambda c, out: [*argv_in(c), "-o", out.with_suffix(".xyz")], "cannot write",
            out="out.xyz"),
        bad("out-no-ext", lambda c, out: [*argv_in(c), "-o", out.parent / "noext"], "cannot write"),
    ]


def flag_cases(argv_in, flags):
    """``flags``: (id, [flag, value], message)."""
    return [bad(id, lambda c, out, f=f: [*argv_in(c), "-o", out, *f], msg) for id, f, msg in flags]


DREAM_FLAGS = [
    ("steps-negative", ["--steps", "-1"], "must be >= 0"),
    ("steps-not-a-number", ["--steps", "many"], "expected a whole number"),
    ("octaves-too-many", ["--octaves", "99"], "must be <= 12"),
    ("step-size-nan", ["--step-size", "nan"], "finite"),
    ("step-size-inf", ["--step-size", "inf"], "finite"),
    ("jitter-float", ["--jitter", "1.5"], "whole number"),
    ("sigma-negative", ["--sigma", "-1"], "non-negative"),
    ("seed-negative", ["--seed", "-3"], "must be >= 0"),
    ("unknown-layer", ["--layer", "blok9"], "did you mean 'block9'"),
    ("unknown-class", ["--class", "jellyfsh"], "jellyfish"),
    ("class-index-out-of-range", ["--class", "5000"], "class"),
    ("unknown-preset", ["--preset", "nope"], "unknown preset"),
    ("channel-out-of-range", ["--channel", "block9:99999"], "out of range"),
    ("unknown-device", ["--device", "tpu"], "unknown device"),
    ("corrupt-checkpoint", None, "not a PyTorch checkpoint"),
    ("text-checkpoint", None, "not a PyTorch checkpoint"),
    ("wrong-checkpoint", None, "does not know"),
    ("missing-checkpoint", None, "not found"),
]


def dream_flag_cases(argv_in):
    cases = []
    for id, f, msg in DREAM_FLAGS:
        if f is None:
            attr = {"corrupt-checkpoint": "corrupt_checkpoint", "text-checkpoint": "text_as_checkpoint",
                    "wrong-checkpoint": "wrong_checkpoint", "missing-checkpoint": "missing"}[id]
            cases.append(bad(id, lambda c, out, attr=attr: [*argv_in(c), "-o", out, "--backbone", getattr(c, attr)],
                             msg))
        else:
            cases.append(bad(id, lambda c, out, f=f: [*argv_in(c), "-o", out, *f], msg))
    return cases


def _small(c):
    return [c.small]


DREAM = [
    *picture_input_cases(FAST),
    ok("tiny-1x1", lambda c, out: [c.tiny_1x1, "-o", out, *FAST], size=(1, 1)),
    ok("sliver-1x10000", lambda c, out: [c.sliver_1x10000, "-o", out, *FAST, "--max-size", "256"],
       size=(1, 10000)),
    ok("exif-rotated", lambda c, out: [c.exif_rotated_jpeg, "-o", out, *FAST], size=(64, 48), out="out.jpg",
       check=lambda out, so: Image.open(out).getexif().get(0x0112) == 6 or pytest.fail("orientation lost")),
    ok("out-jpg", lambda c, out: [c.small, "-o", out, *FAST], size=(64, 48), out="out.jpg",
       check=_format_is("JPEG")),
    ok("out-webp", lambda c, out: [c.small, "-o", out, *FAST], size=(64, 48), out="out.webp",
       check=_format_is("WEBP")),
    ok("out-tif", lambda c, out: [c.small, "-o", out, *FAST], size=(64, 48), out="out.tif", check=_format_is("TIFF")),
    ok("out-bmp", lambda c, out: [c.small, "-o", out, *FAST], size=(64, 48), out="out.bmp", check=_format_is("BMP")),
    ok("out-non-utf8-name", lambda c, out: [c.small, "-o", out.parent / os.fsdecode(b"d\xff.png"), *FAST],
       size=(64, 48), out=os.fsdecode(b"d\xff.png")),
    bad("video-as-picture", lambda c, out: [c.clip, "-o", out, *FAST], "not a picture"),
    bad("quality-zero", lambda c, out: [c.small, "-o", out, "--quality", "0", *FAST], "quality"),
    bad("quality-not-a-number", lambda c, out: [c.small, "-o", out, "--quality", "high", *FAST], "whole number"),
    bad("report-missing-folder", lambda c, out: [c.small, "-o", out, "--report", out.parent / "no" / "r.json",
                                                 *FAST], "does not exist"),
    bad("guide-zero-byte", lambda c, out: [c.small, "-o", out, "--guide", c.zero_byte, *FAST], "empty file"),
    bad("style-text", lambda c, out: [c.small, "-o", out, "--style", c.text_as_png, *FAST], "not a picture"),
    *output_path_cases(_small),
    *dream_flag_cases(_small),
]

LAYERS = [
    ok("default", lambda c, out: ["--size", "32"], out="-", check=lambda out, so: "block9" in so or pytest.fail(so)),
    ok("json", lambda c, out: ["--size", "32", "--json"], out="-",
       check=lambda out, so: __import__("json").loads(so)["layers"]),
    bad("size-zero", lambda c, out: ["--size", "0"], "--size", out="-"),
    bad("size-not-a-number", lambda c, out: ["--size", "big"], "invalid", out="-"),
    bad("corrupt-checkpoint", lambda c, out: ["--backbone", c.corrupt_checkpoint], "not a PyTorch checkpoint", out="-"),
    bad("text-checkpoint", lambda c, out: ["--backbone", c.text_as_checkpoint], "not a PyTorch checkpoint", out="-"),
    bad("wrong-checkpoint", lambda c, out: ["--backbone", c.wrong_checkpoint], "does not know", out="-"),
    bad("unknown-backbone", lambda c, out: ["--backbone", "resnet9000"], "backbone", out="-"),
    bad("onnx-as-backbone", lambda c, out: ["--backbone", c.onnx_not_a_filter], "checkpoint", out="-"),
]

SHEET_FAST = [*FAST, "--cell", "32", "--layers", "block3"]
SHEET = [
    *picture_input_cases(SHEET_FAST, small_out=None),
    ok("channels-of", lambda c, out: [c.small, "-o", out, *FAST, "--cell", "32", "--channels-of", "block3",
                                      "--top", "2"]),
    ok("out-webp", lambda c, out: [c.small, "-o", out, *SHEET_FAST], out="out.webp", check=_format_is("WEBP")),
    ok("tiny-1x1", lambda c, out: [c.tiny_1x1, "-o", out, *SHEET_FAST]),
    bad("unknown-layer", lambda c, out: [c.small, "-o", out, *FAST, "--layers", "blok3"], "did you mean"),
    bad("unknown-channels-of", lambda c, out: [c.small, "-o", out, *FAST, "--channels-of", "nope"], "unknown layer"),
    bad("layers-and-channels", lambda c, out: [c.small, "-o", out, *SHEET_FAST, "--channels-of", "block3"],
        "not both"),
    bad("top-zero", lambda c, out: [c.small, "-o", out, *SHEET_FAST, "--top", "0"], "must be >= 1"),
    bad("cell-too-small", lambda c, out: [c.small, "-o", out, *FAST, "--cell", "2"], "must be >= 32"),
    *output_path_cases(lambda c: [c.small, *SHEET_FAST]),
]

STYLE_FAST = ["--iters", "1", "--size", "64", "--scales", "1"]
STYLE = [
    ok("palette-style", lambda c, out: [c.small, c.palette_png, "-o", out, *STYLE_FAST], size=(64, 48)),
    ok("two-styles-weights", lambda c, out: [c.small, f"{c.cmyk_jpeg}:2", f"{c.la_png}:0.5", "-o", out, *STYLE_FAST],
       size=(64, 48)),
    ok("rgba-content", lambda c, out: [c.rgba_png, c.small, "-o", out, *STYLE_FAST], size=(64, 48)),
    bad("content-zero-byte", lambda c, out: [c.zero_byte, c.small, "-o", out, *STYLE_FAST], "empty file"),
    bad("content-bomb", lambda c, out: [c.bomb_png, c.small, "-o", out, *STYLE_FAST], "too large"),
    bad("style-text", lambda c, out: [c.small, c.text_as_png, "-o", out, *STYLE_FAST], "not a picture"),
    bad("style-truncated", lambda c, out: [c.small, c.truncated_jpeg, "-o", out, *STYLE_FAST], "cannot read"),
    bad("style-weight-not-a-number", lambda c, out: [c.small, f"{c.small}x:abc", "-o", out, *STYLE_FAST],
        "not a number"),
    bad("style-weights-zero", lambda c, out: [c.small, f"{c.small_jpg}:0", "-o", out, *STYLE_FAST], "zero"),
    bad("init-missing", lambda c, out: [c.small, c.small, "-o", out, "--init", c.missing, *STYLE_FAST],
        "no such file"),
    bad("unknown-content-layer", lambda c, out: [c.small, c.small, "-o", out, "--content-layer", "blok9",
                                                 *STYLE_FAST], "block9"),
    bad("unknown-style-layer", lambda c, out: [c.small, c.small, "-o", out, "--style-layers", "block1,nope",
                                               *STYLE_FAST], "nope"),
    bad("iters-negative", lambda c, out: [c.small, c.small, "-o", out, "--iters", "-2"], "whole numbers"),
    bad("lr-zero", lambda c, out: [c.small, c.small, "-o", out, "--lr", "0"], "must be > 0"),
    bad("size-too-small", lambda c, out: [c.small, c.small, "-o", out, "--size", "4"], "must be >= 16"),
    bad("size-too-small-for-layers", lambda c, out: [c.small, c.small, "-o", out, "--size", "24", "--iters", "1"],
        "too small for the chosen layers"),
    bad("tiny-1x1-content", lambda c, out: [c.tiny_1x1, c.small, "-o", out, "--iters", "1"], "too small"),
    bad("corrupt-checkpoint", lambda c, out: [c.small, c.small, "-o", out, "--backbone", c.corrupt_checkpoint,
                                              *STYLE_FAST], "not a PyTorch checkpoint"),
    *output_path_cases(lambda c: [c.small, c.small, *STYLE_FAST]),
]

ZOOM_FAST = ["--frames", "2", *FAST]


def _video_size(size, frames=None):
    def check(out, stdout):
        from fastdream.video import io as vio

        info = vio.probe(out)
        assert (info.width, info.height) == size
        if frames is not None:
            assert info.frames == frames

    return check


ZOOM = [
    ok("mp4", lambda c, out: [c.small, "-o", out, *ZOOM_FAST], out="z.mp4", check=_video_size((64, 48), 2)),
    ok("gif", lambda c, out: [c.small, "-o", out, *ZOOM_FAST], out="z.gif", check=_video_size((64, 48))),
    ok("odd-size-cmyk", lambda c, out: [c.cmyk_jpeg, "-o", out, *ZOOM_FAST, "--size", "33x25"], out="z.mp4",
       check=_video_size((32, 24), 2)),
    bad("zero-byte", lambda c, out: [c.zero_byte, "-o", out, *ZOOM_FAST], "empty file", out="z.mp4"),
    bad("text-named-png", lambda c, out: [c.text_as_png, "-o", out, *ZOOM_FAST], "not a picture", out="z.mp4"),
    bad("bomb", lambda c, out: [c.bomb_png, "-o", out, *ZOOM_FAST], "too large", out="z.mp4"),
    bad("tiny-1x1", lambda c, out: [c.tiny_1x1, "-o", out, *ZOOM_FAST], "too small", out="z.mp4"),
    bad("sliver", lambda c, out: [c.sliver_1x10000, "-o", out, *ZOOM_FAST], "too small", out="z.mp4"),
    bad("frames-zero", lambda c, out: [c.small, "-o", out, "--frames", "0"], "must be >= 1", out="z.mp4"),
    bad("zoom-out-of-range", lambda c, out: [c.small, "-o", out, "--zoom", "9"], "must be <= 2", out="z.mp4"),
    bad("translate-not-numbers", lambda c, out: [c.small, "-o", out, "--translate", "a,b"], "DX,DY", out="z.mp4"),
    bad("size-not-wxh", lambda c, out: [c.small, "-o", out, "--size", "big", *ZOOM_FAST], "size", out="z.mp4"),
    bad("fps-zero", lambda c, out: [c.small, "-o", out, "--fps", "0"], "must be > 0", out="z.mp4"),
    bad("picture-output", lambda c, out: [c.small, "-o", out, *ZOOM_FAST], "cannot write '.png' videos", out="z.png"),
    bad("out-missing-folder", lambda c, out: [c.small, "-o", out.parent / "no" / "z.mp4", *ZOOM_FAST],
        "does not exist", out="z.mp4"),
    bad("unknown-codec", lambda c, out: [c.small, "-o", out, "--codec", "nosuchcodec", *ZOOM_FAST], "codec",
        out="z.mp4"),
    bad("unknown-layer", lambda c, out: [c.small, "-o", out, "--layer", "blok9", *ZOOM_FAST], "block9",
        out="z.mp4"),
]

VFAST = ["--octaves", "1", "--steps", "0"]
VIDEO = [
    ok("mp4", lambda c, out: [c.clip, "-o", out, *VFAST], out="v.mp4", check=_video_size((64, 48), 6)),
    ok("png-folder", lambda c, out: [c.clip, "-o", out, *VFAST, "--frames", "2"], out="frames",
       check=lambda out, so: len(list(out.iterdir())) == 2 or pytest.fail(str(list(out.iterdir())))),
    ok("gif", lambda c, out: [c.clip, "-o", out, *VFAST, "--no-flow"], out="v.gif", check=_video_size((64, 48))),
    bad("missing-file", lambda c, out: [c.root / "none.mp4", "-o", out, *VFAST], "no such file", out="v.mp4"),
    bad("zero-byte", lambda c, out: [corpus.zero_byte(c.root, "empty.mp4"), "-o", out, *VFAST], "empty",
        out="v.mp4"),
    bad("text-named-mp4", lambda c, out: [_text_mp4(c), "-o", out, *VFAST], "not a video", out="v.mp4"),
    bad("truncated-mp4", lambda c, out: [c.truncated_mp4, "-o", out, *VFAST], "", out="v.mp4"),
    bad("blend-out-of-range", lambda c, out: [c.clip, "-o", out, "--blend", "2"], "must be <= 1", out="v.mp4"),
    bad("crf-not-a-number", lambda c, out: [c.clip, "-o", out, "--crf", "good"], "whole number", out="v.mp4"),
    bad("frames-zero", lambda c, out: [c.clip, "-o", out, "--frames", "0"], "must be >= 1", out="v.mp4"),
    bad("out-unknown-ext", lambda c, out: [c.clip, "-o", out, *VFAST], "cannot write", out="v.xyz"),
    bad("out-missing-folder", lambda c, out: [c.clip, "-o", out.parent / "no" / "v.mp4", *VFAST], "does not exist",
        out="v.mp4"),
    bad("filter-not-a-filter", lambda c, out: [c.clip, "-o", out, "--filter", c.onnx_not_a_filter], "",
        out="v.mp4"),
    bad("filter-garbage", lambda c, out: [c.clip, "-o", out, "--filter", c.garbage_onnx], "ONNX", out="v.mp4"),
    bad("filter-missing", lambda c, out: [c.clip, "-o", out, "--filter", c.root / "no.onnx"], "no such filter",
        out="v.mp4"),
    ok("resume-without-work-starts-afresh", lambda c, out: [c.clip, "-o", out, "--resume", *VFAST], out="v.mp4",
       check=_video_size((64, 48), 6)),
    bad("unknown-preset", lambda c, out: [c.clip, "-o", out, "--preset", "nope", "--steps", "0"], "unknown preset",
        out="v.mp4"),
    bad("corrupt-checkpoint", lambda c, out: [c.clip, "-o", out, "--backbone", c.corrupt_checkpoint, *VFAST],
        "not a PyTorch checkpoint", out="v.mp4"),
]


def _text_mp4(c):
    p = c.root / "notes.mp4"
    p.write_text("this is not a video\n" * 50)
    return p


VIS_FAST = ["--size", "32", "--steps", "1"]
VISUALIZE = [
    ok("class", lambda c, out: ["-o", out, "--class", "jellyfish", *VIS_FAST], size=(32, 32)),
    ok("channel-jpg", lambda c, out: ["-o", out, "--channel", "block3:1", *VIS_FAST], size=(32, 32), out="v.jpg",
       check=_format_is("JPEG")),
    ok("from-cmyk-photo", lambda c, out: ["-o", out, "--class", "tabby", "--from", c.cmyk_jpeg, *VIS_FAST]),
    bad("unknown-class", lambda c, out: ["-o", out, "--class", "jellyfsh", *VIS_FAST], "jellyfish"),
    bad("class-index-out-of-range", lambda c, out: ["-o", out, "--class", "5000", *VIS_FAST], "class"),
    bad("unknown-layer", lambda c, out: ["-o", out, "--channel", "blok3:1", *VIS_FAST], "block3"),
    bad("channel-out-of-range", lambda c, out: ["-o", out, "--channel", "block3:99999", *VIS_FAST], "range"),
    bad("neuron-malformed", lambda c, out: ["-o", out, "--neuron", "block3:1:x", *VIS_FAST], "neuron"),
    bad("size-zero", lambda c, out: ["-o", out, "--class", "1", "--size", "0", "--steps", "1"], "--size"),
    bad("steps-not-a-number", lambda c, out: ["-o", out, "--class", "1", "--steps", "lots"], "--steps"),
    bad("lr-nan", lambda c, out: ["-o", out, "--class", "1", "--lr", "nan", *VIS_FAST], "--lr"),
    bad("variants-zero", lambda c, out: ["-o", out, "--class", "1", "--variants", "0", *VIS_FAST], "--variants"),
    bad("from-zero-byte", lambda c, out: ["-o", out, "--class", "1", "--from", c.zero_byte, *VIS_FAST],
        "empty file"),
    bad("from-bomb", lambda c, out: ["-o", out, "--class", "1", "--from", c.bomb_png, *VIS_FAST], "too large"),
    bad("from-text", lambda c, out: ["-o", out, "--class", "1", "--from", c.text_as_png, *VIS_FAST], "not a picture"),
    bad("corrupt-checkpoint", lambda c, out: ["-o", out, "--class", "1", "--backbone", c.corrupt_checkpoint,
                                              *VIS_FAST], "not a PyTorch checkpoint"),
    bad("out-unknown-ext", lambda c, out: ["-o", out, "--class", "1", *VIS_FAST], "cannot write", out="v.xyz"),
    bad("out-missing-folder", lambda c, out: ["-o", out.parent / "no" / "v.png", "--class", "1", *VIS_FAST],
        "does not exist"),
    bad("report-missing-folder", lambda c, out: ["-o", out, "--class", "1", "--report", out.parent / "no" / "r.json",
                                                 *VIS_FAST], "does not exist"),
]

INV_FAST = ["--size", "32", "--steps", "1"]
INVERT = [
    ok("one-layer", lambda c, out: [c.small, "-o", out, "--layer", "block3", *INV_FAST]),
    ok("palette-two-layers", lambda c, out: [c.palette_png, "-o", out, "--layers", "block1,block3", *INV_FAST,
                                              "--table", out.parent / "t.csv"],
       check=lambda out, so: (out.parent / "t.csv").exists() or pytest.fail("no table"), also=("t.csv",)),
    ok("exif-rotated", lambda c, out: [c.exif_rotated_jpeg, "-o", out, "--layer", "block1", *INV_FAST]),
    bad("zero-byte", lambda c, out: [c.zero_byte, "-o", out, "--layer", "block3", *INV_FAST], "empty file"),
    ok("tiny-1x1", lambda c, out: [c.tiny_1x1, "-o", out, "--layer", "block3", *INV_FAST], size=(32, 32)),
    bad("text-named-png", lambda c, out: [c.text_as_png, "-o", out, "--layer", "block3", *INV_FAST], "not a picture"),
    bad("truncated-jpeg", lambda c, out: [c.truncated_jpeg, "-o", out, "--layer", "block3", *INV_FAST], "cannot read"),
    bad("bomb", lambda c, out: [c.bomb_png, "-o", out, "--layer", "block3", *INV_FAST], "too large"),
    bad("unknown-layer", lambda c, out: [c.small, "-o", out, "--layer", "blok3", *INV_FAST], "block3"),
    bad("unknown-layer-in-list", lambda c, out: [c.small, "-o", out, "--layers", "block1,nope", *INV_FAST], "nope"),
    bad("no-layer", lambda c, out: [c.small, "-o", out, *INV_FAST], "required"),
    bad("steps-negative", lambda c, out: [c.small, "-o", out, "--layer", "block3", "--size", "32", "--steps", "-1"],
        "--steps"),
    bad("tv-weight-inf", lambda c, out: [c.small, "-o", out, "--layer", "block3", "--tv-weight", "inf", *INV_FAST],
        "--tv-weight"),
    bad("table-unknown-ext", lambda c, out: [c.small, "-o", out, "--layers", "block1,block3", *INV_FAST, "--table",
                                             out.parent / "t.xyz"], "t.xyz"),
    bad("corrupt-checkpoint", lambda c, out: [c.small, "-o", out, "--layer", "block3", "--backbone",
                                              c.corrupt_checkpoint, *INV_FAST], "not a PyTorch checkpoint"),
    bad("out-unknown-ext", lambda c, out: [c.small, "-o", out, "--layer", "block3", *INV_FAST], "cannot write",
        out="i.xyz"),
    bad("out-missing-folder", lambda c, out: [c.small, "-o", out.parent / "no" / "i.png", "--layer", "block3",
                                              *INV_FAST], "does not exist"),
]

FT_FAST = ["--epochs", "1", "--size", "32", "--batch-size", "4"]


def _checkpoint_loads(out, stdout):
    from fastdream.backbones import load_backbone

    bb = load_backbone(out)
    assert bb.num_classes == 2


FINETUNE = [
    ok("two-classes", lambda c, out: [c.class_folder, "-o", out, *FT_FAST], out="ft.pt", check=_checkpoint_loads),
    bad("mostly-unreadable", lambda c, out: [c.mostly_bad_class_folder, "-o", out, *FT_FAST], "", out="ft.pt"),
    bad("one-class", lambda c, out: [c.one_class_folder, "-o", out, *FT_FAST], "class", out="ft.pt"),
    bad("no-class-folders", lambda c, out: [c.flat_folder, "-o", out, *FT_FAST], "", out="ft.pt"),
    bad("missing-folder", lambda c, out: [c.root / "nope", "-o", out, *FT_FAST], "", out="ft.pt"),
    bad("file-not-folder", lambda c, out: [c.small, "-o", out, *FT_FAST], "", out="ft.pt"),
    bad("epochs-zero", lambda c, out: [c.class_folder, "-o", out, "--epochs", "0"], "--epochs", out="ft.pt"),
    bad("val-fraction-one", lambda c, out: [c.class_folder, "-o", out, "--val-fraction", "1"], "--val-fraction",
        out="ft.pt"),
    bad("lr-not-a-number", lambda c, out: [c.class_folder, "-o", out, "--lr", "fast"], "--lr", out="ft.pt"),
    bad("out-missing-folder", lambda c, out: [c.class_folder, "-o", out.parent / "no" / "ft.pt", *FT_FAST],
        "does not exist", out="ft.pt"),
    bad("out-picture-ext", lambda c, out: [c.class_folder, "-o", out, *FT_FAST], "", out="ft.png"),
]

DS_FAST = ["--count", "2", "--size", "32", *FAST]
DISTILL = [
    bad("dataset-missing-images", lambda c, out: ["dataset", c.root / "none", "-o", out, *DS_FAST], "", out="ds"),
    bad("dataset-zero-byte-photo", lambda c, out: ["dataset", c.zero_byte, "-o", out, *DS_FAST], "", out="ds"),
    bad("dataset-bomb", lambda c, out: ["dataset", c.bomb_png, "-o", out, *DS_FAST], "", out="ds"),
    bad("dataset-no-pictures", lambda c, out: ["dataset", _subfolder(c), "-o", out, *DS_FAST], "", out="ds"),
    bad("dataset-count-zero", lambda c, out: ["dataset", c.small, "-o", out, "--count", "0"], "--count", out="ds"),
    bad("dataset-unknown-layer", lambda c, out: ["dataset", c.small, "-o", out, *DS_FAST, "--layer", "blok9"],
        "block9", out="ds"),
    bad("dataset-out-missing-folder", lambda c, out: ["dataset", c.small, "-o", out.parent / "no" / "ds",
                                                      *DS_FAST], "", out="ds"),
    bad("train-missing-data", lambda c, out: ["train", c.root / "none", "-o", out, "--steps", "1"], "", out="g.pt"),
    bad("train-not-a-dataset", lambda c, out: ["train", _subfolder(c), "-o", out, "--steps", "1"], "", out="g.pt"),
    bad("train-steps-not-a-number", lambda c, out: ["train", _subfolder(c), "-o", out, "--steps", "x"], "--steps",
        out="g.pt"),
]

EXPORT = [
    bad("corrupt-checkpoint", lambda c, out: [c.corrupt_checkpoint, "-o", out], "", out="f.onnx"),
    bad("text-checkpoint", lambda c, out: [c.text_as_checkpoint, "-o", out], "", out="f.onnx"),
    bad("backbone-checkpoint", lambda c, out: [c.wrong_checkpoint, "-o", out], "", out="f.onnx"),
    bad("missing-checkpoint", lambda c, out: [c.missing, "-o", out], "", out="f.onnx"),
]

FILTER = [
    ok("shipped-filter", lambda c, out: [c.small, "-o", out], size=(64, 48)),
    ok("rgba-jpg", lambda c, out: [c.rgba_png, "-o", out], size=(64, 48), out="f.jpg"),
    bad("model-not-a-filter", lambda c, out: [c.small, "-o", out, "--model", c.onnx_not_a_filter], ""),
    bad("model-garbage", lambda c, out: [c.small, "-o", out, "--model", c.garbage_onnx], ""),
    bad("model-missing", lambda c, out: [c.small, "-o", out, "--model", c.root / "no.onnx"], ""),
    bad("zero-byte", lambda c, out: [c.zero_byte, "-o", out], "empty file"),
    bad("bomb", lambda c, out: [c.bomb_png, "-o", out], "too large"),
    bad("text-named-png", lambda c, out: [c.text_as_png, "-o", out], "not a picture"),
    bad("strength-nan", lambda c, out: [c.small, "-o", out, "--strength", "nan"], "--strength"),
    bad("out-unknown-ext", lambda c, out: [c.small, "-o", out], "cannot write", out="f.xyz"),
    bad("out-missing-folder", lambda c, out: [c.small, "-o", out.parent / "no" / "f.png"], "does not exist"),
]

BENCH = [
    bad("repeats-zero", lambda c, out: ["--repeats", "0"], "repeats", out="-"),
    bad("repeats-not-a-number", lambda c, out: ["--repeats", "x"], "invalid", out="-"),
    bad("json-missing-folder", lambda c, out: ["--json", c.root / "no" / "b.json"], "does not exist", out="-"),
    bad("unknown-device", lambda c, out: ["--device", "tpu"], "invalid choice", out="-"),
]

TOP = [
    bad("no-command", lambda c, out: [], "required", out="-"),
    bad("unknown-command", lambda c, out: ["drem"], "invalid choice", out="-"),
]

ALL = [
    *(c.param("dream") for c in DREAM),
    *(c.param("layers") for c in LAYERS),
    *(c.param("sheet") for c in SHEET),
    *(c.param("style") for c in STYLE),
    *(c.param("zoom") for c in ZOOM),
    *(c.param("video") for c in VIDEO),
    *(c.param("visualize") for c in VISUALIZE),
    *(c.param("invert") for c in INVERT),
    *(c.param("finetune") for c in FINETUNE),
    *(c.param("distill") for c in DISTILL),
    *(c.param("export") for c in EXPORT),
    *(c.param("filter") for c in FILTER),
    *(c.param("bench") for c in BENCH),
    *(c.param("") for c in TOP),
]


def run_main(argv, capsys):
    """The CLI in this process; (exit code, stdout, stderr)."""
    from fastdream.cli.main import main

    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        rc = e.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize("command,case", ALL)
def test_corpus(command, case, cp, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    out = work / case.out
    argv = ([command] if command else []) + [str(a) for a in case.argv(cp, out)]
    rc, stdout, err = run_main(argv, capsys)
    assert "Traceback" not in err, err
    if case.msg is not None:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2, f"exit {rc}: {err}"
        assert len(lines) == 1, err
        assert case.msg in lines[0], lines[0]
        assert lines[0].startswith("fastdream"), lines[0]
        # no output, and nothing half-written beside it (temporary names included)
        left = sorted(p.name for p in work.rglob("*") if p.name not in ("ro",))
        assert left == [], left
        return
    assert rc == 0, err
    if case.out != "-":
        assert out.exists(), sorted(p.name for p in work.iterdir())
        if case.size is not None and out.suffix.lower() in (".png", ".jpg", ".webp", ".tif", ".bmp"):
            assert Image.open(out).size == case.size
        stray = [p.name for p in work.iterdir() if p.name != out.name and p.name not in case.also]
        assert stray == [], stray
    if case.check is not None:
        case.check(out, stdout)


def test_corpus_has_enough_cases():
    assert len(ALL) >= 60, len(ALL)


# -- in a fresh process: what a real terminal shows ---------------------------------------------------------
def fd(*args):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "fastdream.cli.main", *args], capture_output=True, cwd=REPO,
                          timeout=600, env=env)


@pytest.mark.parametrize("what", ["bomb", "non-utf8-input", "corrupt-checkpoint", "not-a-video", "bad-flag"])
def test_subprocess_one_line_no_traceback(what, cp, tmp_path):
    out = tmp_path / "o.png"
    argv = {
        "bomb": lambda: ["dream", cp.bomb_png, "-o", out, *FAST],
        "non-utf8-input": lambda: ["dream", os.fsencode(str(tmp_path)) + b"/\xff\xfe.png", "-o", out, *FAST],
        "corrupt-checkpoint": lambda: ["layers", "--backbone", cp.corrupt_checkpoint],
        "not-a-video": lambda: ["video", cp.text_as_png, "-o", tmp_path / "o.mp4", *FAST],
        "bad-flag": lambda: ["zoom", cp.small, "-o", tmp_path / "o.mp4", "--zoom", "nan"],
    }[what]()
    r = fd(*[a if isinstance(a, bytes) else str(a) for a in argv])
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_subprocess_non_utf8_names_work(cp, tmp_path):
    """A picture and an output whose names are not UTF-8, through a real argv (bytes)."""
    src = os.fsencode(str(cp.non_utf8_name))
    dst = os.fsencode(str(tmp_path)) + b"/out\xfe.png"
    r = fd("dream", src, "-o", dst, *FAST)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")
    assert Image.open(dst).size == (64, 48)
