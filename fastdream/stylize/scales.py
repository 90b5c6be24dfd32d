"""Sizes: resizing pictures (the one resampler, ``ops.resample``), the coarse-to-fine schedule of scales,
and the strides of the backbone's taps that bound how small a scale may be."""
from __future__ import annotations

import math
from typing import Sequence

import torch

from fastdream import ops
from fastdream.errors import FastdreamError
from fastdream.stylize.config import FINAL_ITERS, StyleConfig


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``x [B, 3, H, W]`` (float32) resized to ``size``: bicubic when enlarging, antialiased bilinear when
    shrinking (either axis), clamped to [0, 1]. Differentiable (``ops.resample`` has a backward)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return ops.resample(x, tuple(size), mode="bilinear" if shrink else "bicubic", antialias=shrink).clamp_(0, 1)


def fit_long_side(h: int, w: int, long_side: float) -> tuple[int, int]:
    """``(h', w')`` of an ``h x w`` picture scaled to ``long_side`` pixels on its long side."""
    s = long_side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


class LayerInfo:
    """Strides and channel counts of the backbone's taps (from a meta-device forward pass)."""

    def __init__(self, backbone, names: Sequence[str]):
        probe = 256
        shapes = dict(backbone.layers(probe))
        self.channels, self.stride = {}, {}
        for n in names:
            c = backbone.resolve_tap(n)
            s = shapes[c]
            if len(s) != 3:
                raise FastdreamError(f"layer {n!r} of {backbone.name} has no spatial map (shape {s}); "
                                     "style and content layers must be feature maps")
            self.channels[n] = s[0]
            self.stride[n] = probe / s[1]

    def min_side(self, names: Sequence[str]) -> int:
        """The smallest picture side that gives every layer at least 2 positions per side."""
        return int(math.ceil(2 * max(self.stride[n] for n in names)))


def schedule(cfg: StyleConfig, info: LayerInfo, h: int, w: int) -> list[tuple[tuple[int, int], int]]:
    """``[((h, w), iterations), ...]`` coarse to fine for a content picture of ``h x w``."""
    long_side = cfg.size or max(h, w)
    need = info.min_side([*cfg.style_layers, cfg.content_layer])
    final = fit_long_side(h, w, long_side)
    if min(final) < need:
        raise FastdreamError(
            f"the output ({final[1]}x{final[0]}) is too small for the chosen layers: "
            f"{deepest(cfg, info)} needs at least {need} pixels on the short side")
    if cfg.scales is not None:
        k = cfg.scales
        coarsest = fit_long_side(h, w, long_side / 2 ** (k - 1))
        if min(coarsest) < need:
            raise FastdreamError(
                f"{k} scales make the coarsest picture {coarsest[1]}x{coarsest[0]}, too small for "
                f"{deepest(cfg, info)} (at least {need} pixels on the short side); use fewer --scales")
    else:
        k = 1
        while long_side / 2 ** k >= cfg.coarse_size / 2 and long_side / 2 ** (k - 1) > cfg.coarse_size \
                and min(fit_long_side(h, w, long_side / 2 ** k)) >= max(need, 64):
            k += 1
    sizes = [fit_long_side(h, w, long_side / 2 ** (k - 1 - i)) for i in range(k)]
    if isinstance(cfg.iters, (tuple, list)):
        if len(cfg.iters) not in (1, k):
            raise FastdreamError(f"{len(cfg.iters)} iteration counts for {k} scales "
                                 f"({', '.join(f'{w}x{h}' for h, w in sizes)}); give one or {k}")
        its = list(cfg.iters) if len(cfg.iters) == k else [cfg.iters[0]] * k
    else:
        # coarse scales: about the same work each (4x the pixels, a quarter of the evaluations); they
        # set the layout. The output scale gets at least FINAL_ITERS evaluations whatever the rule gives:
        # upsampling blurs the strokes the coarser scale painted, and on the motorcycle photo at 2048 px
        # the upsampled 1024 result had a larger style loss than the content itself (0.78 against 0.55),
        # so 2 evaluations there left 82% of the loss (docs/style.md, "Large pictures").
        its = [cfg.iters if i == 0 else max(min(cfg.iters, 5), round(cfg.iters / 4 ** i)) for i in range(k)]
        if k > 1:
            its[-1] = max(its[-1], min(cfg.iters, FINAL_ITERS))
    return list(zip(sizes, its))


def deepest(cfg: StyleConfig, info: LayerInfo) -> str:
    """The style or content layer with the largest stride (it bounds the smallest picture)."""
    return max([*cfg.style_layers, cfg.content_layer], key=lambda n: info.stride[n])
