"""What a new user meets first: output file modes, presets with objective flags, --help with defaults,
errors in one line, folder batches, progress in a log. Outputs are checked for content, errors for their
message, exit code 2, one line on stderr and no output left behind."""
import json
import os
import pathlib
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO

EXAMPLE = REPO / "examples" / "chelsea.jpg"
FAST = ["--octaves", "1", "--steps", "2"]


def fd(*args, cwd=None, env=None, umask=None, timeout=600):
    """The CLI in a fresh process, as a user runs it (``umask``: the shell's umask)."""
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, "-m", "fastdream.cli.main", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=env, preexec_fn=pre)


def run_main(args, capsys):
    """The CLI in this process (fast); returns (exit code, stderr)."""
    from fastdream.cli.main import main

    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # argparse
        rc = e.code
    return rc, capsys.readouterr().err


def one_line_error(rc, err, msg):
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and msg in lines[0], err
    assert "Traceback" not in err and "\x1b" not in err


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    p = tmp_path_factory.mktemp("in") / "small.jpg"
    Image.open(EXAMPLE).resize((96, 64), Image.Resampling.LANCZOS).save(p, quality=95)
    return p


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


# -- 1. output modes ------------------------------------------------------------------------------------
@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def test_output_modes_follow_the_umask_for_every_writer(tmp_path, umask_027, gen):
    """Pictures, videos, GIFs, PNG frames, reports, backbone checkpoints, filter checkpoints and ONNX files
    get 0666 & ~umask (0640 here), not mkstemp's 0600."""
    from fastdream.backbones import get_backbone
    from fastdream.backbones.loading import save_checkpoint as save_backbone
    from fastdream.distill.generator import DreamGenerator, GeneratorConfig
    from fastdream.distill.train import TrainConfig, save_checkpoint
    from fastdream.imageio import save_image
    from fastdream.report import write_report
    from fastdream.video import io as vio

    x = torch.rand(1, 3, 32, 48, generator=gen)
    frame = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    outs = []
    for ext in (".png", ".jpg", ".webp", ".tif", ".bmp"):
        save_image(x, tmp_path / f"p{ext}")
        outs.append(tmp_path / f"p{ext}")
    write_report(tmp_path / "r.json", {"a": 1})
    outs.append(tmp_path / "r.json")
    for name in ("v.mp4", "v.gif"):
        w = vio.open_writer(tmp_path / name, 48, 32, 10)
        w.write(frame)
        w.write(frame)
        w.close()
        outs.append(tmp_path / name)
    seq = vio.PngSequenceWriter(tmp_path / "frames")
    seq.write(frame)
    seq.close()
    outs.append(tmp_path / "frames" / "frame_00000.png")
    save_backbone(get_backbone(None, "cpu"), tmp_path / "bb.pt")
    outs.append(tmp_path / "bb.pt")
    g = DreamGenerator(GeneratorConfig(width=4, blocks=1))
    save_checkpoint(tmp_path / "g.pt", g, torch.optim.Adam(g.parameters()), 1, TrainConfig(width=4, blocks=1),
                    {"preset": "classic"}, [])
    outs.append(tmp_path / "g.pt")
    pytest.importorskip("onnxruntime")
    from fastdream.distill.export import export_onnx

    export_onnx(tmp_path / "g.pt", tmp_path / "g.onnx", example_size=(16, 16))
    outs.append(tmp_path / "g.onnx")
    for p in outs:
        assert mode(p) == 0o640, (p.name, oct(mode(p)))


def test_replacing_an_output_keeps_its_mode(tmp_path, small):
    out, rep = tmp_path / "d.png", tmp_path / "r.json"
    for p in (out, rep):
        p.write_bytes(b"old")
        os.chmod(p, 0o644)
    r = fd("dream", small, "-o", out, "--report", rep, *FAST, umask=0o077)
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (96, 64) and json.loads(rep.read_text())["output"] == str(out)
    assert mode(out) == 0o644 and mode(rep) == 0o644
    # a new file under umask 077 is 0600, as `touch` would make it
    r = fd("dream", small, "-o", tmp_path / "new.png", *FAST, umask=0o077)
    assert r.returncode == 0, r.stderr
    assert mode(tmp_path / "new.png") == 0o600
