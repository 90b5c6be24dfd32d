"""Feature inversion: SSIM/PSNR, the priors, inversion quality by depth, the command."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from fastdream.backbones import load_backbone
from fastdream.errors import FastdreamError
from fastdream.featvis.invert import (InvertConfig, alpha_prior, invert_layers, resolve_layers, table_csv,
                                      table_markdown, tv_prior)
from fastdream.metrics import gaussian_window, psnr, ssim
from fastdream.imageio import load_image

from conftest import DATA
from featvis_helpers import assert_one_line_error, run_cli

PHOTO = DATA / "chelsea_224.jpg"


@pytest.fixture(scope="module")
def bb():
    return load_backbone()


@pytest.fixture(scope="module")
def small_photo():
    x, _ = load_image(PHOTO)
    return F.interpolate(x, size=(48, 48), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


# -- metrics ---------------------------------------------------------------------------------------

def test_ssim_identical_is_one_and_noise_is_low(gen, small_photo):
    assert ssim(small_photo, small_photo) == pytest.approx(1.0, abs=1e-9)
    noise = torch.rand(small_photo.shape, generator=gen)
    assert ssim(noise, small_photo) < 0.1
    a, b = torch.rand(1, 3, 40, 40, generator=gen), torch.rand(1, 3, 40, 40, generator=gen)
    assert abs(ssim(a, b)) < 0.05


def test_ssim_orders_distortions(gen, small_photo):
    slight = (small_photo + 0.02 * torch.randn(small_photo.shape, generator=gen)).clamp(0, 1)
    heavy = (small_photo + 0.2 * torch.randn(small_photo.shape, generator=gen)).clamp(0, 1)
    assert 1.0 > ssim(slight, small_photo) > ssim(heavy, small_photo) > 0.0
    assert ssim(slight, small_photo) == pytest.approx(ssim(small_photo, slight), abs=1e-12)   # symmetric


def test_ssim_constant_shift_matches_formula():
    # two flat pictures: only the luminance term is left, (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)
    x, y = torch.full((1, 1, 16, 16), 0.3), torch.full((1, 1, 16, 16), 0.6)
    c1 = 0.01 ** 2
    expect = (2 * 0.3 * 0.6 + c1) / (0.3 ** 2 + 0.6 ** 2 + c1)
    assert ssim(x, y) == pytest.approx(expect, rel=1e-9)


def test_gaussian_window_and_psnr():
    g = gaussian_window(11, 1.5)
    assert g.sum().item() == pytest.approx(1.0) and g.argmax().item() == 5 and torch.equal(g, g.flip(0))
    x = torch.zeros(1, 3, 8, 8)
    assert psnr(x, x) == math.inf
    assert psnr(x + 0.1, x) == pytest.approx(20.0, abs=1e-6)


def test_priors(gen):
    flat = torch.full((2, 3, 8, 8), 0.5)
    assert tv_prior(flat).abs().max() == 0 and alpha_prior(flat).abs().max() == 0
    noisy = torch.rand(2, 3, 8, 8, generator=gen)
    assert (tv_prior(noisy) > 0).all() and tv_prior(noisy).shape == (2,)
    assert (alpha_prior(torch.ones(1, 3, 4, 4)) == 1).all()


# -- inversion -------------------------------------------------------------------------------------

def test_early_layer_inverts_better_than_late(bb, small_photo):
    cfg = InvertConfig(steps=25, seed=0)
    results, rows = invert_layers(bb, small_photo, ["block12", "stem"], cfg)   # sorted early to late
    assert [r["layer"] for r in rows] == ["stem", "block12"]
    assert results[0].shape == small_photo.shape and 0 <= results[0].min() and results[0].max() <= 1
    assert rows[0]["psnr"] > rows[1]["psnr"] + 3, rows
    assert rows[0]["ssim"] > rows[1]["ssim"], rows
    assert rows[0]["psnr"] > 20, rows


def test_resolve_layers(bb):
    assert resolve_layers(bb, None) == bb.tap_names()
    assert resolve_layers(bb, ["logits", "block3", "stem", "block3"]) == ["stem", "block3", "logits"]
    with pytest.raises(FastdreamError, match="did you mean 'block3'"):
        resolve_layers(bb, ["blok3"])


def test_tables():
    rows = [{"layer": "stem", "psnr": 31.234, "ssim": 0.91}, {"layer": "logits", "psnr": 12.0, "ssim": 0.2}]
    md = table_markdown(rows)
    assert "| stem | 31.23 | 0.910 |" in md and md.count("\n") == 4
    assert table_csv(rows).splitlines() == ["layer,psnr_db,ssim", "stem,31.234,0.9100", "logits,12.000,0.2000"]


def test_api_takes_numpy_and_returns_numpy():
    import numpy as np

    from fastdream.featvis import invert

    a = (np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8)
    out, stats = invert(a, layer="stem", size=None, steps=3, return_stats=True)
    assert isinstance(out, np.ndarray) and out.shape == a.shape and out.dtype == np.uint8
    assert [r["layer"] for r in stats["layers"]] == ["stem"] and {"psnr", "ssim"} <= set(stats["layers"][0])


# -- the command -----------------------------------------------------------------------------------

def test_cli_layers_sheet_table_report(tmp_path, monkeypatch, capsys):
    out, rep = tmp_path / "sheet.png", tmp_path / "r.json"
    rc, _, err = run_cli(monkeypatch, capsys, "invert", [str(PHOTO), "--layers", "logits,stem", "--size", "32",
                                                         "--steps", "3", "-o", str(out), "--report", str(rep)])
    assert rc == 0, err
    r = json.loads(rep.read_text())
    assert [row["layer"] for row in r["layers"]] == ["stem", "logits"]
    # PSNR, SSIM, the prior used, and the independent judge's distance (efficientnet-lite2 is a test extra)
    assert all(set(row) == {"layer", "psnr", "ssim", "prior", "lite2_distance"} for row in r["layers"])
    assert all(row["prior"] == "none" and row["lite2_distance"] > 0 for row in r["layers"])
    assert out.exists() and (tmp_path / "sheet.md").exists() and (tmp_path / "sheet.csv").exists()
    assert "| stem |" in (tmp_path / "sheet.md").read_text()


def test_cli_single_layer(tmp_path, monkeypatch, capsys):
    out = tmp_path / "inv.jpg"
    rc, _, err = run_cli(monkeypatch, capsys, "invert", [str(PHOTO), "--layer", "block0", "--size", "32",
                                                         "--steps", "2", "-o", str(out), "--report", "-"])
    assert rc == 0, err
    assert out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["inv.jpg"]


@pytest.mark.parametrize("argv, msg", [
    (["--layer", "blok3"], "did you mean 'block3'"),
    (["--layers", "stem,nope"], "unknown layer"),
    (["--layer", "stem", "--steps", "0"], "must be >= 1"),
    (["--layer", "stem", "--size", "x"], "whole number"),
    (["--layers", "stem", "--table", "t.txt"], "cannot write"),
    (["--layer", "stem", "--table", "t.md"], "--table goes with"),
    (["--layer", "stem", "--backbone", "nope.pt"], "not found"),
])
def test_cli_bad_input(tmp_path, monkeypatch, capsys, argv, msg):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o.png"
    rc, _, err = run_cli(monkeypatch, capsys, "invert", [str(PHOTO), *argv, "-o", str(out)])
    assert_one_line_error(rc, err)
    assert msg in err
    assert list(tmp_path.iterdir()) == []


def test_cli_missing_or_unreadable_input(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    for inp in (tmp_path / "none.png", bad):
        rc, _, err = run_cli(monkeypatch, capsys, "invert", [str(inp), "--layer", "stem", "-o", str(tmp_path / "o.png")])
        assert_one_line_error(rc, err)
    assert not (tmp_path / "o.png").exists()
