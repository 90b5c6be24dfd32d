"""--precision: what auto picks, the autocast of the backbone only, determinism, and the bad-input lines."""
import pytest
import torch

from fastdream import precision as prec
from fastdream.backbones import load_backbone
from fastdream.engine.dream import DreamConfig, Dreamer
from fastdream.engine.objectives import Layer
from fastdream.errors import FastdreamError, InputError


def test_auto_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert prec.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16", "amx_tile"}))
    assert prec.resolve_precision(None, "cpu") == "bf16"
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert prec.resolve_precision("auto", "cpu") == "fp32"
    assert prec.resolve_precision("BF16", "cpu") == "bf16"   # asked for: emulated, but allowed
    assert prec.resolve_precision("fp32", "cpu") == "fp32"


def test_bad_precisions_name_what_is_available():
    with pytest.raises(InputError, match=r"unknown precision 'fp8'; choose auto, fp32, bf16 \(on this CPU\)"):
        prec.resolve_precision("fp8", "cpu")
    with pytest.raises(InputError, match=r"fp16 needs a CUDA GPU; on this CPU choose auto, fp32, bf16"):
        prec.resolve_precision("fp16", "cpu")
    with pytest.raises(FastdreamError, match="unknown precision"):
        DreamConfig(precision="half").validate()


@pytest.fixture(scope="module")
def lite0():
    return load_backbone()


def test_backbone_runs_in_bf16_and_returns_fp32_taps(lite0):
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0), requires_grad=True)
    a32 = lite0.forward_taps(x, ["block9"])["block9"]
    a16 = lite0.forward_taps(x, ["block9"], "bf16")["block9"]
    assert a32.dtype == a16.dtype == torch.float32
    assert not torch.equal(a32, a16)  # it did run in bf16
    rel = float((a32 - a16).detach().norm() / a32.detach().norm())
    assert rel < 0.05, rel  # bf16 keeps 8 bits of mantissa: a few per cent over 10 blocks
    (g,) = torch.autograd.grad(a16.square().mean(), x)
    assert g.dtype == torch.float32 and torch.isfinite(g).all()


def test_bf16_dream_is_deterministic_and_climbs(lite0):
    x = torch.rand(1, 3, 80, 96, generator=torch.Generator().manual_seed(1))
    cfg = DreamConfig(octaves=2, steps=3, precision="bf16", seed=3)
    d = Dreamer(lite0, Layer("block9"), cfg)
    a, stats = d.run(x)
    b, _ = Dreamer(lite0, Layer("block9"), cfg).run(x)
    assert stats.precision == "bf16"
    assert torch.equal(a, b)
    assert a.dtype == torch.float32
    f32, s32 = Dreamer(lite0, Layer("block9"), DreamConfig(octaves=2, steps=3, precision="fp32", seed=3)).run(x)
    assert s32.precision == "fp32" and not torch.equal(a, f32)
    # the objective (measured in fp32 for both) climbs about as far in bf16 as in fp32
    v0 = d.evaluate(x)
    gain16, gain32 = d.evaluate(a) - v0, d.evaluate(f32) - v0
    assert gain32 > 0 and gain16 > 0.8 * gain32, (gain16, gain32)


@pytest.mark.parametrize("tiled", [False, True])
def test_no_host_reads_inside_an_octave(lite0, monkeypatch, tiled):
    """Objective values and the NaN/inf decision stay tensors during the steps: no float()/item()/bool()
    of a tensor while an octave runs (on a GPU each would wait for the device)."""
    reads = []
    for name in ("item", "__float__", "__bool__"):
        orig = getattr(torch.Tensor, name)

        def spy(self, *a, _orig=orig, _name=name, **k):
            reads.append(_name)
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)
    x = torch.rand(1, 3, 72, 90, generator=torch.Generator().manual_seed(2))
    cfg = DreamConfig(octaves=2, steps=4, precision="fp32", tile=48 if tiled else None, tile_overlap=8,
                      min_octave_size=32)
    steps_seen = []
    Dreamer(lite0, Layer("block5"), cfg).run(x, progress=lambda d, t: steps_seen.append(len(reads)))
    assert len(steps_seen) == 8
    assert steps_seen[-1] == 0, reads


def _cli(*args, cwd=None):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "fastdream.cli.main", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("command,extra", [("dream", []), ("style", ["tests/data/astronaut_128.jpg"]),
                                           ("visualize", []), ("invert", [])])
@pytest.mark.parametrize("bad,message", [
    ("fp8", "unknown precision 'fp8'; choose auto, fp32, bf16 (on this CPU)"),
    ("fp16", "precision fp16: fp16 needs a CUDA GPU; on this CPU choose auto, fp32, bf16"),
])
def test_cli_bad_precision_is_one_line_and_writes_nothing(tmp_path, command, extra, bad, message):
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    out = tmp_path / "out.png"
    argv = {"dream": ["dream", root / "tests/data/astronaut_128.jpg", "-o", out],
            "style": ["style", root / "tests/data/astronaut_128.jpg", *[root / e for e in extra], "-o", out],
            "visualize": ["visualize", "--class", "jellyfish", "-o", out],
            "invert": ["invert", root / "tests/data/astronaut_128.jpg", "--layer", "block3", "-o", out]}[command]
    r = _cli(*argv, "--precision", bad)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()


def test_cli_report_records_the_precision_that_ran(tmp_path):
    import json
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    rep = tmp_path / "r.json"
    r = _cli("dream", root / "tests/data/astronaut_128.jpg", "-o", tmp_path / "o.png", "--octaves", "1",
             "--steps", "1", "--report", rep)
    assert r.returncode == 0, r.stderr
    params = json.loads(rep.read_text())["params"]
    assert params["precision_requested"] == "auto"
    assert params["precision"] == prec.resolve_precision("auto", "cpu")
    r = _cli("dream", root / "tests/data/astronaut_128.jpg", "-o", tmp_path / "o2.png", "--octaves", "1",
             "--steps", "1", "--precision", "fp32", "--report", rep)
    assert r.returncode == 0 and json.loads(rep.read_text())["params"]["precision"] == "fp32"
