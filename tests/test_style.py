"""Style transfer: Gram matrices, losses, colour preservation, blending, the API, the dream objective,
and the command line's bad inputs and report. Small pictures only (the suite runs on 2 CPU cores)."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch
from PIL import Image

from fastdream.stylize import samples
from fastdream.stylize.color import rgb_to_ycbcr
from fastdream.stylize.gram import blend_grams, gram_matrix
from fastdream.stylize.transfer import StyleConfig, StyleTransfer

DATA = pathlib.Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def backbone():
    from fastdream.backbones import load_backbone

    return load_backbone()


@pytest.fixture(scope="module")
def content():
    # the cat photo of tests/data (see its SOURCES.md), squeezed to 128 x 128
    from fastdream.imageio import load_image

    x, _ = load_image(DATA / "chelsea_224.jpg")
    return torch.nn.functional.interpolate(x, size=(128, 128), mode="bilinear", align_corners=False,
                                           antialias=True).clamp(0, 1)


def test_gram_matrix_hand():
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [-1.0, 2.0]]]])  # [1, 2, 2, 2]
    # rows: a = (1, 2, 3, 4), b = (0, 1, -1, 2); G = [[a.a, a.b], [b.a, b.b]] / (C*H*W = 8)
    expected = torch.tensor([[30.0, 7.0], [7.0, 6.0]]) / 8.0
    torch.testing.assert_close(gram_matrix(f)[0], expected)
    # the normalization makes a tiled copy of the same texture give the same Gram matrix
    torch.testing.assert_close(gram_matrix(f.repeat(1, 1, 3, 5)), gram_matrix(f))


def test_blend_grams_weights_normalized():
    a, b = torch.eye(3), torch.full((3, 3), 2.0)
    torch.testing.assert_close(blend_grams([a, b], [2.0, 1.0]), (2 * a + b) / 3)
    torch.testing.assert_close(blend_grams([a, b], [4.0, 2.0]), blend_grams([a, b], [2.0, 1.0]))
    with pytest.raises(Exception, match="sum to zero"):
        blend_grams([a, b], [0.0, 0.0])
    with pytest.raises(Exception, match=">= 0"):
        blend_grams([a, b], [1.0, -1.0])


def test_style_targets_blend(backbone):
    st = StyleTransfer(backbone, StyleConfig(style_layers=("stem", "block4"), content_layer="block4"))
    s1, s2 = samples.swirls(96, seed=1), samples.stained_glass(96, seed=2)
    t1 = st.style_targets([(s1, 1.0)], (96, 96))
    t2 = st.style_targets([(s2, 1.0)], (96, 96))
    t12 = st.style_targets([(s1, 3.0), (s2, 1.0)], (96, 96))
    for n in ("stem", "block4"):
        torch.testing.assert_close(t12[n], 0.75 * t1[n] + 0.25 * t2[n], rtol=1e-5, atol=1e-6)


def test_tiled_loss_and_gradient_match_whole(backbone, content):
    x = torch.nn.functional.interpolate(content, size=(112, 160), mode="bilinear", align_corners=False)
    style = [(samples.brush_strokes(128, seed=4), 1.0)]
    whole = StyleTransfer(backbone, StyleConfig())
    tiled = StyleTransfer(backbone, StyleConfig(tile=96, tile_halo=32))
    assert len(tiled.tiles(112, 160)) == 4
    start = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    res = []
    for st in (whole, tiled):
        targets = st.style_targets(style, (112, 160))
        loss, parts, grad = st.evaluate(start, targets, st.content_features(x))
        res.append((loss, parts, grad))
    (l0, p0, g0), (l1, p1, g1) = res
    # the halo makes the tiles' features nearly those of the whole picture (SAME padding differs at
    # tile borders only); losses within 5%, gradients strongly aligned
    assert abs(p1["style"] - p0["style"]) < 0.05 * p0["style"]
    assert abs(p1["content"] - p0["content"]) < 0.05 * p0["content"]
    cos = torch.nn.functional.cosine_similarity(g0.flatten(), g1.flatten(), dim=0)
    assert cos > 0.95, float(cos)


def test_schedule_output_scale_gets_real_work(backbone):
    from fastdream.stylize.transfer import FINAL_ITERS

    def plan(**kw):
        return [(max(size), its) for size, its in StyleTransfer(backbone, StyleConfig(**kw)).schedule(324, 480)]

    # coarse scales a quarter of the evaluations each; the output scale at least FINAL_ITERS (an upsampled
    # result must be re-optimized there: at 2 evaluations the 2048-px loss ratio was 0.82)
    assert FINAL_ITERS == 80
    assert plan(size=2048) == [(256, 120), (512, 30), (1024, 8), (2048, 80)]
    assert plan(size=2048, iters=40) == [(256, 40), (512, 10), (1024, 5), (2048, 40)]
    assert plan(size=2048, iters=3) == [(256, 3), (512, 3), (1024, 3), (2048, 3)]   # never more than asked
    assert plan(size=2048, iters=(40, 10, 4, 2)) == [(256, 40), (512, 10), (1024, 4), (2048, 2)]  # explicit wins
    assert plan(size=128, scales=1, iters=40) == [(128, 40)]


def test_style_loss_falls_90_percent(backbone):
    from fastdream.imageio import load_image

    content, _ = load_image(DATA / "astronaut_128.jpg")   # default settings, one 128-px scale
    cfg = StyleConfig(size=128, scales=1, iters=40, seed=0)
    out, stats = StyleTransfer(backbone, cfg).run(content, [(samples.swirls(384), 1.0)])
    assert out.shape == (1, 3, 128, 128) and 0 <= float(out.min()) and float(out.max()) <= 1
    assert stats.content_loss_start == pytest.approx(0.0, abs=1e-6)   # started from the content
    assert stats.style_loss_end <= 0.1 * stats.style_loss_start, (stats.style_loss_start, stats.style_loss_end)
    assert 0 < stats.content_loss_end < 2.0                             # the content still matters


def test_preserve_color_keeps_content_chroma(backbone, content):
    style = [(samples.stained_glass(128, seed=6), 1.0)]
    plain, _ = StyleTransfer(backbone, StyleConfig(size=96, scales=1, iters=4)).run(content, style)
    kept, _ = StyleTransfer(backbone, StyleConfig(size=96, scales=1, iters=4, preserve_color="luminance")).run(content, style)
    c = rgb_to_ycbcr(torch.nn.functional.interpolate(content, size=(96, 96), mode="bilinear",
                                                     align_corners=False, antialias=True))
    err_kept = (rgb_to_ycbcr(kept)[:, 1:] - c[:, 1:]).abs().mean()
    err_plain = (rgb_to_ycbcr(plain)[:, 1:] - c[:, 1:]).abs().mean()
    assert err_kept < 0.01, float(err_kept)            # only clamping to [0, 1] moves the chroma
    assert err_plain > 3 * err_kept                     # without it, the style's colours come in
    hist, _ = StyleTransfer(backbone, StyleConfig(size=96, scales=1, iters=4, preserve_color="histogram")).run(content, style)
    err_hist = (rgb_to_ycbcr(hist)[:, 1:].mean((2, 3)) - c[:, 1:].mean((2, 3))).abs().max()
    assert err_hist < 0.05, float(err_hist)             # colour statistics follow the content


def test_api_returns_input_type(backbone, content):
    import fastdream.stylize as fs

    kw = dict(styles=[(samples.swirls(64), 1.0)], size=64, iters=1, backbone=backbone, device="cpu")
    t = fs.style(content[0], **kw)
    assert isinstance(t, torch.Tensor) and t.shape == (3, 64, 64) and t.dtype == torch.float32
    arr = (content[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    a = fs.style(arr, **{**kw, "size": None})
    assert isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.shape == arr.shape
    p = fs.style(Image.fromarray(arr), **kw)
    assert isinstance(p, Image.Image) and p.size == (64, 64)
    with pytest.raises(Exception, match="unknown style option"):
        fs.style(arr, styles=[samples.swirls(64)], size=64, colour="x", backbone=backbone)


def test_style_objective_is_an_objective(backbone, content):
    from fastdream.engine.objectives import Context, Layer, Objective
    from fastdream.stylize.objective import StyleObjective

    obj = StyleObjective.from_images(backbone, [(samples.swirls(96, seed=7), 2.0),
                                                (samples.stained_glass(96, seed=8), 1.0)], size=96)
    assert isinstance(obj, Objective) and obj.taps() == set(obj.targets)
    combined = 0.5 * Layer("block4") + 3.0 * obj            # the objective algebra works
    assert obj.taps() <= combined.taps()
    x = torch.nn.functional.interpolate(content, size=(96, 96), mode="bilinear", align_corners=False).clone()
    taps = sorted(combined.taps())

    def value(img):
        acts = backbone.forward_taps(img, taps)
        return obj(acts, Context(tuple(img.shape[-2:])))

    v0 = float(value(x))
    assert v0 < 0
    for _ in range(6):   # climb the objective like the dream engine does (normalized gradient steps)
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(value(xg).sum(), xg)
        x = (x + 0.02 * g / g.abs().mean()).clamp(0, 1)
    v1 = float(value(x))
    assert v1 > v0 and -v1 < 0.7 * -v0, (v0, v1)          # the style distance fell
    # a jittered crop sees about the same value (Gram matrices are size-independent)
    crop = x[..., 8:88, 4:84]
    assert abs(float(value(crop)) - v1) < 0.5 * abs(v1)


# -- command line --------------------------------------------------------------------------------
def cli(argv, monkeypatch, capsys):
    """``fastdream.cli.main.main(argv)`` with only the style command registered (the other commands
    need the native ops, which these tests do not)."""
    from fastdream.cli import main as cli_main

    monkeypatch.setattr(cli_main, "COMMANDS", {"style": "style"})
    rc = cli_main.main(argv)
    cap = capsys.readouterr()
    return rc, cap.err


@pytest.fixture
def pics(tmp_path):
    from fastdream.imageio import save_image

    c, s = tmp_path / "c.png", tmp_path / "s.png"
    save_image(samples.brush_strokes(80, seed=1), c)
    save_image(samples.swirls(96, seed=2), s)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a picture at all")
    return c, s, bad


@pytest.mark.parametrize("case, needle", [
    ("missing", "no such file"),
    ("unreadable", "not a picture"),
    ("weight_nan", "not a number"),
    ("weight_zero", "sum to zero"),
    ("too_small", "too small"),
    ("layer", "did you mean 'block4'"),
    ("content_layer", "unknown"),
    ("folder", "does not exist"),
    ("ext", "cannot write"),
    ("init_missing", "no such file"),
])
def test_cli_bad_inputs(case, needle, pics, tmp_path, monkeypatch, capsys):
    c, s, bad = pics
    out = tmp_path / "out.png"
    argv = ["style", str(c), str(s), "-o", str(out), "--iters", "1", "--size", "64"]
    if case == "missing":
        argv[2] = str(tmp_path / "nope.jpg")
    elif case == "unreadable":
        argv[2] = str(bad)
    elif case == "weight_nan":
        argv[2] = f"{s}:heavy"
    elif case == "weight_zero":
        argv[2:3] = [f"{s}:0", f"{s}:0.0"]
    elif case == "too_small":
        argv[-1] = "20"
    elif case == "layer":
        argv += ["--style-layers", "stem,blok4"]
    elif case == "content_layer":
        argv += ["--content-layer", "head2"]
    elif case == "folder":
        out = tmp_path / "missing" / "out.png"
        argv[4] = str(out)
    elif case == "ext":
        out = tmp_path / "out.xyz"
        argv[4] = str(out)
    elif case == "init_missing":
        argv += ["--init", str(tmp_path / "start.png")]
    rc, err = cli(argv, monkeypatch, capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]   # no partial output


def test_cli_report(pics, tmp_path, monkeypatch, capsys):
    c, s, _ = pics
    out, rep = tmp_path / "out.jpg", tmp_path / "r.json"
    rc, err = cli(["style", str(c), f"{s}:2", f"{c}:1", "-o", str(out), "--iters", "3", "--size", "64",
                   "--report", str(rep), "--preserve-color", "--optimizer", "adam"], monkeypatch, capsys)
    assert rc == 0, err
    r = json.loads(rep.read_text())
    for k in ("content_loss_start", "content_loss_end", "style_loss_start", "style_loss_end", "seconds",
              "peak_rss_mb", "params"):
        assert k in r, k
    assert r["content_loss_start"] == pytest.approx(0.0, abs=1e-6) and r["content_loss_end"] >= 0
    assert r["style_loss_start"] > 0 and r["style_loss_end"] > 0
    assert 0 < r["seconds"] < 600 and 50 < r["peak_rss_mb"] < 8000
    assert r["params"]["preserve_color"] == "luminance" and r["params"]["optimizer"] == "adam"
    assert r["output_size"] == [64, 64] and [st["weight"] for st in r["styles"]] == [2.0, 1.0]
    assert Image.open(out).size == (64, 64)
