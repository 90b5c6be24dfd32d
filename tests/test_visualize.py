"""Feature visualization: parameterization, transforms, diversity, the loop, the command."""
from __future__ import annotations

import json

import pytest
import torch

from fastdream.backbones import load_backbone
from fastdream.featvis import param as P
from fastdream.featvis.transforms import RobustTransform, apply_affine
from fastdream.featvis.visualize import VisualizeConfig, diversity_penalty, measure, optimize
from fastdream.metrics import gram_matrix as gram
from fastdream.objective_text import parse_targets
from fastdream.errors import FastdreamError
from fastdream.imageio import load_image

from conftest import DATA
from featvis_helpers import assert_one_line_error, run_cli

PHOTO = DATA / "chelsea_224.jpg"


@pytest.fixture(scope="module")
def bb():
    return load_backbone()


# -- parameterization ------------------------------------------------------------------------------

def test_param_round_trip(gen):
    x = torch.rand(2, 3, 30, 41, generator=gen) * 0.9 + 0.05   # odd sizes, not square
    p = P.FourierImage((30, 41), n=2).set_image(x)
    assert torch.allclose(p(), x, atol=1e-5)
    # and back again: the parameters of the picture are the parameters
    q = P.FourierImage((30, 41), n=2).set_image(p().detach())
    assert torch.allclose(q.spectrum, p.spectrum, atol=1e-3 * p.spectrum.abs().max().item())


def test_param_shapes_seeded_and_in_range():
    a = P.FourierImage((32, 48), n=3, generator=torch.Generator().manual_seed(1))()
    b = P.FourierImage((32, 48), n=3, generator=torch.Generator().manual_seed(1))()
    assert a.shape == (3, 3, 32, 48) and torch.equal(a, b)
    assert 0 < a.min() and a.max() < 1


def test_spectrum_scale_falls_with_frequency():
    s = P.spectrum_scale(64, 64)
    f = P.rfft_freqs(64, 64)
    order = f.flatten().argsort()
    assert s.flatten()[order[0]] >= s.flatten()[order[-1]] * 10   # DC far above the highest frequency
    assert s[0, 0] == s.max()


def test_color_matrix_decorrelates_photo_colours():
    x, _ = load_image(PHOTO)
    px = x[0].flatten(1)                                  # [3, N]
    raw = torch.corrcoef(px)
    white = P.correlate_inverse((px - px.mean(1, keepdim=True))[None, :, :, None])[0, :, :, 0]
    dec = torch.corrcoef(white)
    off = lambda c: (c - torch.diag(torch.diag(c))).abs().max().item()
    assert off(raw) > 0.8            # photo RGB channels are strongly correlated
    # the first coordinate (luminance, which carries most of the variance) is nearly uncorrelated with the
    # two opponent colours; those two are fitted to the mean of four photos, not to this cat
    assert dec[0, 1:].abs().max() < 0.2
    # the stored constant is the square root of a covariance: C = M M^T, luminance first
    c = P.COLOR_SQRT @ P.COLOR_SQRT.T
    assert torch.allclose(c, c.T) and torch.linalg.eigvalsh(c).min() > 0
    assert (P.COLOR_SQRT[:, 0] > 0).all()


def test_color_sqrt_recipe_reproduces_covariance():
    m = P.color_sqrt_from_images([PHOTO])
    x, _ = load_image(PHOTO)
    cov = torch.cov(x[0].flatten(1).double()).float()
    assert torch.allclose(m @ m.T, cov, atol=1e-5)
    assert (m[0] > 0).all()


# -- transforms ------------------------------------------------------------------------------------

def test_transforms_keep_shape_and_are_seeded(gen):
    x = torch.rand(3, 3, 40, 56, generator=gen)
    tf = RobustTransform()
    a = tf(x, torch.Generator().manual_seed(5))
    b = tf(x, torch.Generator().manual_seed(5))
    c = tf(x, torch.Generator().manual_seed(6))
    assert a.shape == x.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_transform_identity_and_shift(gen):
    x = torch.rand(1, 3, 24, 32, generator=gen)
    draw = {"shift1": torch.zeros(1, 2), "shift2": torch.zeros(1, 2), "scale": torch.ones(1), "angle": torch.zeros(1)}
    assert torch.allclose(apply_affine(x, draw), x, atol=1e-5)
    draw["shift1"] = torch.tensor([[3.0, 2.0]])                   # 3 right, 2 down
    y = apply_affine(x, draw)
    assert torch.allclose(y[..., 2:, 3:], x[..., :-2, :-3], atol=1e-5)
    assert torch.allclose(y[..., :2, :], torch.full_like(y[..., :2, :], 0.5))   # grey comes in


# -- diversity -------------------------------------------------------------------------------------

def test_diversity_zero_for_one_and_one_for_copies(gen):
    a = torch.rand(1, 8, 6, 6, generator=gen)
    assert diversity_penalty(a).item() == 0.0
    assert diversity_penalty(a.repeat(3, 1, 1, 1)).item() == pytest.approx(1.0, abs=1e-5)
    b = torch.rand(2, 8, 6, 6, generator=gen)
    assert gram(b).shape == (2, 8, 8)
    assert diversity_penalty(b).item() < 1.0


def _variant_similarity(bb, images):
    acts = bb.forward_taps(images, ["block6"])["block6"]
    return diversity_penalty(acts).item()


def test_diversity_term_makes_variants_differ(bb):
    targets = parse_targets(bb, (48, 48), channels=["block6:3"])
    sims = {}
    for w in (0.0, 50.0):
        cfg = VisualizeConfig(size=(48, 48), steps=8, variants=2, diversity=w, seed=3)
        imgs, _ = optimize(bb, targets, cfg)
        with torch.no_grad():
            sims[w] = _variant_similarity(bb, imgs)
    assert sims[50.0] < sims[0.0] - 0.02, sims


# -- the loop --------------------------------------------------------------------------------------

def test_short_visualization_raises_class(bb):
    targets = parse_targets(bb, (48, 48), classes=["jellyfish"])
    cfg = VisualizeConfig(size=(48, 48), steps=0, seed=1)
    start, _ = optimize(bb, targets, cfg)
    cfg.steps = 10
    end, stats = optimize(bb, targets, cfg)
    before, after = measure(bb, targets, start)[0], measure(bb, targets, end)[0]
    assert after["logit"] > before["logit"] + 5
    assert after["probability"] > before["probability"]
    assert set(after) >= {"probability", "robust_probability", "logit", "class_index"}


def test_channel_and_neuron_targets_raise_activation(bb):
    targets = parse_targets(bb, (48, 48), channels=["block5:7*0.5"], neurons=["block5:7:1:1"])
    assert [t.weight for t in targets] == [0.5, 1.0]
    start, _ = optimize(bb, targets, VisualizeConfig(size=(48, 48), steps=0))
    end, _ = optimize(bb, targets, VisualizeConfig(size=(48, 48), steps=8))
    b, a = measure(bb, targets, start), measure(bb, targets, end)
    assert a[0]["activation"] > b[0]["activation"] and a[1]["activation"] > b[1]["activation"]
    assert "robust_activation" in a[0]


def test_seed_gives_same_picture(bb):
    targets = parse_targets(bb, (32, 32), classes=[107])
    cfg = VisualizeConfig(size=(32, 32), steps=2, seed=9)
    a, _ = optimize(bb, targets, cfg)
    b, _ = optimize(bb, targets, cfg)
    assert torch.equal(a, b)


@pytest.mark.parametrize("kw, msg", [
    ({"classes": ["jelyfish"]}, "did you mean"),
    ({"channels": ["blok5:3"]}, "did you mean 'block5'"),
    ({"channels": ["block5:80"]}, "out of range"),
    ({"channels": ["block5"]}, "expected LAYER:C"),
    ({"neurons": ["block5:3:99:0"]}, "outside"),
    ({"channels": ["block5:x"]}, "whole number"),
    ({}, "nothing to visualize"),
])
def test_bad_targets(bb, kw, msg):
    with pytest.raises(FastdreamError, match=msg):
        parse_targets(bb, (64, 64), **kw)


def test_api_from_photo_returns_callers_form():
    import numpy as np

    from fastdream.featvis import visualize

    photo = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    out, stats = visualize("jellyfish", init=photo, size=56, steps=2, return_stats=True)
    assert isinstance(out, np.ndarray) and out.shape == photo.shape and out.dtype == np.uint8
    assert {"probability", "robust_probability", "targets"} <= set(stats)


# -- the command -----------------------------------------------------------------------------------

def test_cli_report(tmp_path, monkeypatch, capsys):
    out, rep = tmp_path / "v.png", tmp_path / "r.json"
    rc, _, err = run_cli(monkeypatch, capsys, "visualize",
                         ["--class", "jellyfish*1", "--channel", "block10:5*0.5", "--size", "48", "--steps", "3",
                          "-o", str(out), "--report", str(rep)])
    assert rc == 0, err
    r = json.loads(rep.read_text())
    for key in ("probability", "robust_probability", "activation", "robust_activation", "seconds", "peak_rss_mb",
                "targets", "params"):
        assert key in r, key
    assert 0 <= r["probability"] <= 1 and 0 <= r["robust_probability"] <= 1
    assert r["params"]["decay"] == 1.25  # the default spectrum decay, recorded
    assert out.exists()


def test_decay_sets_the_spectrum_of_the_parameterization(bb):
    """--decay reaches FourierImage: a larger exponent gives the low frequencies more of each step, so
    after the same Adam steps the picture's energy sits lower in the spectrum."""
    targets = parse_targets(bb, (48, 48), ["jellyfish"])

    def low_fraction(decay):
        x, _ = optimize(bb, targets, VisualizeConfig(size=(48, 48), steps=6, seed=2, decay_power=decay, prior=None))
        spec = torch.fft.rfft2(x - x.mean((-2, -1), keepdim=True)).abs().pow(2)[0].sum(0)  # [48, 25]
        f = torch.sqrt(torch.fft.fftfreq(48)[:, None] ** 2 + torch.fft.rfftfreq(48)[None, :] ** 2)
        return float(spec[f < 0.1].sum() / spec.sum())

    assert low_fraction(1.5) > low_fraction(1.0) + 0.05
    with pytest.raises(FastdreamError, match="decay"):
        VisualizeConfig(decay_power=-1).validate()


def test_cli_variants_and_from(tmp_path, monkeypatch, capsys):
    out, rep = tmp_path / "v.jpg", tmp_path / "r.json"
    rc, _, err = run_cli(monkeypatch, capsys, "visualize",
                         ["--class", "107", "--variants", "2", "--from", str(PHOTO), "--size", "40", "--steps", "2",
                          "-o", str(out), "--report", str(rep)])
    assert rc == 0, err
    r = json.loads(rep.read_text())
    assert len(r["targets"][0]["per_variant"]) == 2 and len(r["psnr_to_photo"]) == 2


@pytest.mark.parametrize("argv, msg", [
    (["--class", "jelyfish"], "did you mean"),
    (["--channel", "block5:500"], "out of range"),
    (["--neuron", "bloc5:1:1:1"], "did you mean"),
    ([], "nothing to visualize"),
    (["--class", "jellyfish", "--from", "/no/such.png"], "no such file"),
    (["--class", "jellyfish", "--backbone", "NOT_A_CHECKPOINT"], "backbone"),
    (["--class", "jellyfish", "--steps", "-3"], "must be >="),
    (["--class", "jellyfish", "--size", "big"], "whole number"),
    (["--class", "jellyfish*x"], "weight"),
    (["--class", "jellyfish", "--decay", "4"], "must be <= 3"),
    (["--class", "jellyfish", "--decay", "nan"], "finite"),
])
def test_cli_bad_input(tmp_path, monkeypatch, capsys, argv, msg):
    out = tmp_path / "v.png"
    rc, _, err = run_cli(monkeypatch, capsys, "visualize", [*argv, "--size", "32", "--steps", "1", "-o", str(out)]
                         if "--size" not in argv else [*argv, "-o", str(out)])
    assert_one_line_error(rc, err)
    assert msg in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_foreign_checkpoint(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(3)}, bad)
    out = tmp_path / "v.png"
    rc, _, err = run_cli(monkeypatch, capsys, "visualize",
                         ["--class", "0", "--backbone", str(bad), "--size", "32", "--steps", "1", "-o", str(out)])
    assert_one_line_error(rc, err)
    assert not out.exists()


def test_cli_bad_output_path(tmp_path, monkeypatch, capsys):
    rc, _, err = run_cli(monkeypatch, capsys, "visualize", ["--class", "jellyfish", "-o", str(tmp_path / "v.xyz")])
    assert_one_line_error(rc, err)
    rc, _, err = run_cli(monkeypatch, capsys, "visualize", ["--class", "jellyfish", "-o", str(tmp_path / "no" / "v.png")])
    assert_one_line_error(rc, err)
