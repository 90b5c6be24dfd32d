"""Fine-tuning the classifier on a generated two-class folder; the checkpoint; bad folders."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from fastdream.backbones import load_backbone
from fastdream.featvis.finetune import FinetuneConfig, augment, center, finetune_folder, split

from featvis_helpers import assert_one_line_error, run_cli

SIZE = 64
PER_CLASS = 10


def stripes(rng: np.random.Generator, n: int = 72) -> np.ndarray:
    """A sinusoidal grating: random orientation, frequency, phase and two random colours."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    a, f, ph = rng.uniform(0, math.pi), rng.uniform(0.15, 0.35), rng.uniform(0, 2 * math.pi)
    t = 0.5 + 0.5 * np.sin(f * (xx * math.cos(a) + yy * math.sin(a)) + ph)
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    return (255 * (t[..., None] * c0 + (1 - t[..., None]) * c1)).astype(np.uint8)


def dots(rng: np.random.Generator, n: int = 72) -> np.ndarray:
    """Scattered round spots of one colour on a background of another."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    mask = np.zeros((n, n), np.float32)
    r = rng.uniform(3, 6)
    for _ in range(int(rng.integers(8, 16))):
        cy, cx = rng.uniform(0, n, 2)
        mask = np.maximum(mask, ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.float32))
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    return (255 * (mask[..., None] * c0 + (1 - mask[..., None]) * c1)).astype(np.uint8)


def make_folder(root, per_class=PER_CLASS, broken=0, seed=0):
    rng = np.random.default_rng(seed)
    for name, fn in (("dots", dots), ("stripes", stripes)):
        d = root / name
        d.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(fn(rng)).save(d / f"{i:02d}.png")
        for i in range(broken):
            (d / f"broken{i}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        (d / "notes.txt").write_text("not a picture, ignored")
    return root


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = make_folder(tmp_path_factory.mktemp("textures") / "data", broken=1)
    ckpt = root.parent / "tex.pt"
    cfg = FinetuneConfig(size=SIZE, epochs=6, batch_size=8, lr=3e-3, patience=6, seed=0)
    bb, stats = finetune_folder(root, cfg, output=ckpt)
    return bb, stats, ckpt, root


def test_reaches_high_validation_accuracy(tuned):
    _, stats, _, _ = tuned
    assert stats["classes"] == ["dots", "stripes"]
    assert stats["best_val_accuracy"] >= 0.9, stats["history"]
    assert stats["skipped"] == 2 and stats["ignored_files"] == 2
    assert stats["val_pictures"] == 4 and stats["train_pictures"] == 16
    assert all({"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"} <= set(h) for h in stats["history"])


def test_checkpoint_round_trips_with_class_names(tuned):
    bb, _, ckpt, _ = tuned
    loaded = load_backbone(ckpt)
    assert loaded.class_names == ["dots", "stripes"]
    assert loaded.class_index("stripes") == 1
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(loaded(x), bb(x), atol=1e-5)
    assert not any(p.requires_grad for p in loaded.parameters())
    raw = torch.load(ckpt, weights_only=True)                 # tensors and plain data only
    assert raw["extra"]["finetune"]["classes"] == ["dots", "stripes"]


def test_visualizing_new_class_raises_its_logit(tuned):
    from fastdream.featvis.visualize import VisualizeConfig, measure, optimize
    from fastdream.objective_text import parse_targets

    bb, _, ckpt, _ = tuned
    loaded = load_backbone(ckpt)
    targets = parse_targets(loaded, (SIZE, SIZE), classes=["stripes"])
    start, _ = optimize(loaded, targets, VisualizeConfig(size=(SIZE, SIZE), steps=0, seed=2))
    end, _ = optimize(loaded, targets, VisualizeConfig(size=(SIZE, SIZE), steps=10, seed=2))
    before, after = measure(loaded, targets, start)[0], measure(loaded, targets, end)[0]
    assert after["logit"] > before["logit"] + 0.5, (before, after)   # seen: -0.01 -> 1.02


def test_split_is_stratified_and_seeded():
    labels = [0] * 10 + [1] * 5
    tr, va = split(labels, 0.2, torch.Generator().manual_seed(1))
    assert sorted(tr + va) == list(range(15)) and not set(tr) & set(va)
    assert sum(labels[i] == 0 for i in va) == 2 and sum(labels[i] == 1 for i in va) == 1
    assert (tr, va) == split(labels, 0.2, torch.Generator().manual_seed(1))


def test_augment_and_center_shapes():
    img = torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a = augment(img, 32, torch.Generator().manual_seed(0))
    b = augment(img, 32, torch.Generator().manual_seed(0))
    assert a.shape == (3, 32, 32) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    assert center(img, 32).shape == (3, 32, 32)


def test_cli_train_blocks_and_report(tmp_path, monkeypatch, capsys):
    root = make_folder(tmp_path / "data", per_class=4, seed=1)
    out, rep = tmp_path / "bb.pt", tmp_path / "r.json"
    rc, _, err = run_cli(monkeypatch, capsys, "finetune", [str(root), "-o", str(out), "--size", "32", "--epochs", "1",
                                                           "--train-blocks", "1", "--report", str(rep)])
    assert rc == 0, err
    assert "epoch 1/1" in err
    r = json.loads(rep.read_text())
    assert r["classes"] == ["dots", "stripes"] and "val_accuracy" in r and r["trained_parameters"] > 1280 * 2
    assert load_backbone(out).class_names == ["dots", "stripes"]


def _folder_with(tmp_path, layout: dict):
    root = tmp_path / "data"
    root.mkdir()
    rng = np.random.default_rng(0)
    for cls, (good, bad) in layout.items():
        d = root / cls
        d.mkdir()
        for i in range(good):
            Image.fromarray(dots(rng, 24)).save(d / f"{i}.png")
        for i in range(bad):
            (d / f"bad{i}.png").write_bytes(b"garbage")
    return root


@pytest.mark.parametrize("layout, msg", [
    ({}, "no subfolders"),
    ({"a": (0, 0), "b": (0, 0)}, "hold no pictures"),
    ({"a": (3, 0)}, "only one class"),
    ({"a": (2, 3), "b": (2, 3)}, "unreadable"),
    ({"a": (1, 0), "b": (3, 0)}, "at least 2"),
])
def test_cli_bad_folders(tmp_path, monkeypatch, capsys, layout, msg):
    root = _folder_with(tmp_path, layout)
    out = tmp_path / "bb.pt"
    rc, _, err = run_cli(monkeypatch, capsys, "finetune", [str(root), "-o", str(out), "--size", "32", "--epochs", "1"])
    assert_one_line_error(rc, err)
    assert msg in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


@pytest.mark.parametrize("argv, msg", [
    (["-o", "bb.png"], "extensions"),
    (["-o", "missing/bb.pt"], "does not exist"),
    (["-o", "bb.pt", "--epochs", "0"], "must be >= 1"),
    (["-o", "bb.pt", "--val-fraction", "1.5"], "must be <="),
    (["-o", "bb.pt", "--lr", "nan"], "finite"),
])
def test_cli_bad_flags(tmp_path, monkeypatch, capsys, argv, msg):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(monkeypatch, capsys, "finetune", ["nowhere", *argv])
    assert_one_line_error(rc, err)
    assert msg in err
    assert list(tmp_path.iterdir()) == []


def test_cli_missing_folder(tmp_path, monkeypatch, capsys):
    rc, _, err = run_cli(monkeypatch, capsys, "finetune", [str(tmp_path / "none"), "-o", str(tmp_path / "bb.pt")])
    assert_one_line_error(rc, err)
    assert "no such folder" in err
