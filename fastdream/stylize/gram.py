"""Gram matrices and the style distance built on them (Gatys et al., 2016).

The Gram matrix itself is :func:`fastdream.metrics.gram_matrix` (re-exported here), normalized by C*H*W,
so it is an average over positions and does not depend on the picture's size: a tile, a jittered crop and
the whole picture of one texture have about the same Gram matrix. That is what lets the style loss run
tile by tile (a picture's Gram matrix is its tiles' weighted by their share of the positions) and inside
the dream engine.
"""
from __future__ import annotations

from typing import Sequence

import torch

from fastdream.errors import FastdreamError
from fastdream.metrics import gram_matrix  # noqa: F401  (the one Gram matrix; re-exported here)


def blend_grams(grams: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """The weighted mean of Gram matrices (``[C, C]`` or ``[1, C, C]`` each); the weights are normalized
    to sum to 1. Negative weights are refused; zero weights are allowed if some weight is positive."""
    if len(grams) != len(weights) or not grams:
        raise FastdreamError(f"need one weight per style picture, got {len(grams)} pictures, {len(weights)} weights")
    w = [float(v) for v in weights]
    if any(v < 0 for v in w):
        raise FastdreamError(f"style weights must be >= 0, got {w}")
    total = sum(w)
    if not total > 0:
        raise FastdreamError(f"style weights sum to zero ({w}); give at least one positive weight")
    out = None
    for g, v in zip(grams, w):
        term = g * (v / total)
        out = term if out is None else out + term
    return out


def style_distance(gram: torch.Tensor, target: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * ||gram - target||_F^2`` per picture: ``gram: [B, C, C]``, ``target: [C, C]`` -> ``[B]``."""
    return (gram - target).square().flatten(1).sum(1) * scale


def target_scale(target: torch.Tensor) -> float:
    """``1 / ||target||_F^2``: each layer's style loss is relative to its target's size, so layers with
    large and small activations count alike and the weights mean the same on every backbone."""
    n = float(target.double().square().sum())
    return 1.0 / max(n, 1e-30)
