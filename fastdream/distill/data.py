"""Training data of the distillation: teacher pairs in memory and unpaired photos, with their augmentation.

Every batch is a function of ``(seed, step, rank)`` only, so a resumed run draws exactly the batches an
uninterrupted one would.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from fastdream.errors import InputError


class PairSet:
    """The pairs of a dataset folder in memory (uint8), split into training and held-out validation."""

    def __init__(self, folder, val_every: int = 10):
        from fastdream.distill.dataset import list_pairs, load_pair, read_teacher

        self.teacher = read_teacher(folder)
        pairs = list_pairs(folder)
        if not pairs:
            raise InputError(f"{folder}: no pairs yet (render some with `fastdream distill dataset`)")
        self.train_x, self.train_y, self.val_x, self.val_y = [], [], [], []
        for i, p in pairs.items():
            x, y = load_pair(p)
            if x.shape[-1] < 16 or x.shape[-2] < 16:
                raise InputError(f"{p}: pairs smaller than 16 pixels cannot be trained on")
            held = val_every > 1 and i % val_every == 0 and len(pairs) >= 2
            (self.val_x if held else self.train_x).append(x)
            (self.val_y if held else self.train_y).append(y)
        if not self.train_x:
            raise InputError(f"{folder}: every pair is held out for validation; render more pairs")
        self.min_size = min(min(t.shape[-2:]) for t in self.train_x)

    def batch(self, step: int, rank: int, size: int, crop: int, seed: int, margin: int = 0, align: int = 1):
        """``(x, y)`` float ``[size, 3, crop + margin, crop + margin]``: random pairs, windows and flips,
        a function of ``(seed, step, rank)`` only. ``align`` > 1: the windows start at multiples of
        ``align`` pixels of the pair and are not mirrored, so a crop keeps the pair's pixel grid (a
        teacher without jitter draws detail tied to the backbone's stride grid of the whole picture)."""
        rng = np.random.default_rng([seed, step, rank])
        c = crop + margin
        xs, ys = [], []
        for _ in range(size):
            k = int(rng.integers(len(self.train_x)))
            x, y = self.train_x[k], self.train_y[k]
            h, w = x.shape[-2:]
            oy, ox = (align * int(rng.integers((n - c) // align + 1)) for n in (h, w))
            xw, yw = x[:, oy:oy + c, ox:ox + c], y[:, oy:oy + c, ox:ox + c]
            if rng.random() < 0.5 and align == 1:
                xw, yw = xw.flip(-1), yw.flip(-1)
            xs.append(xw)
            ys.append(yw)
        return torch.stack(xs).float().div_(255), torch.stack(ys).float().div_(255)


class PhotoSet:
    """Photos for the unpaired crops: random scale, window, flips, quarter turns and colour changes.

    Nothing here needs the teacher: these crops only climb the teacher's objective (up to the gain
    the teacher reaches on the pairs), so a few photos give the generator many more pictures to learn
    from, at the scales it will meet, than the pairs alone (each pair costs an iterative dream).
    Grayscale photos are tinted; hues are rotated, so the colours of a handful of photos do not become
    the only colours the filter knows.
    """

    def __init__(self, folder, crop: int):
        from fastdream.distill.dataset import CropRecipe, list_photos
        from fastdream.imageio import load_image

        # crops cover 1/4 .. all of the short side: from close-ups to whole pictures
        self.recipe = CropRecipe(size=crop, min_fraction=0.25, max_fraction=1.0, flip=True, color_jitter=0.0)
        self.photos = []
        for f in list_photos(folder):
            x, _ = load_image(f)
            if min(x.shape[-2:]) < crop:
                raise InputError(f"{f}: {x.shape[-1]}x{x.shape[-2]} is smaller than the {crop}-pixel training crop")
            self.photos.append(x)

    def batch(self, step: int, rank: int, size: int, seed: int) -> torch.Tensor:
        """``[size, 3, crop, crop]`` in [0, 1], a function of ``(seed, step, rank)`` only."""
        from fastdream.distill.dataset import draw_crop

        rng = np.random.default_rng([seed, step, rank, 2])
        out = []
        for _ in range(size):
            c = draw_crop(self.photos, 0, self.recipe, rng=rng)[0][0]
            c = torch.rot90(c, int(rng.integers(4)), (1, 2))
            out.append(_recolour(c, rng).clamp(0, 1))
        return torch.stack(out).contiguous()


def _recolour(c: torch.Tensor, rng) -> torch.Tensor:
    """A random hue rotation (about the gray axis), saturation, brightness and contrast change of ``[3, h, w]``;
    gray pictures get a random tint."""
    gray = c.mean(0, keepdim=True)
    if float((c - gray).abs().mean()) < 1e-3:  # a grayscale photo: tint it
        tint = torch.from_numpy(rng.uniform(0.6, 1.4, size=(3, 1, 1))).float()
        c = gray * tint / tint.mean()
        gray = c.mean(0, keepdim=True)
    a = float(rng.uniform(-math.pi, math.pi))
    k = torch.tensor([1.0, 1.0, 1.0]) / math.sqrt(3)  # Rodrigues rotation about the gray axis
    K = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    R = torch.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * (K @ K)
    c = torch.einsum("ij,jhw->ihw", R, c)
    sat = float(rng.uniform(0.7, 1.3))
    bright = float(rng.uniform(0.8, 1.2))
    contrast = float(rng.uniform(0.8, 1.2))
    gray = c.mean(0, keepdim=True)
    c = gray + (c - gray) * sat
    m = c.mean()
    return ((c - m) * contrast + m) * bright
