"""Pure-torch reference of ``fastdream.ops.dream_step``: the chain DeepDream tools write by hand.

Ground truth for tests and the benchmark baseline. Unlike the op it does not modify ``image``: it
returns a new image and the norms.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["_dream_step", "_gaussian_taps", "_reflect_pad"]


def _sigmas(sigma) -> list[float]:
    if sigma is None:
        return []
    if isinstance(sigma, (int, float)):
        return [] if sigma == 0 else [float(sigma)]
    return [float(s) for s in sigma]


def _gaussian_taps(sigma: float, radius: int) -> torch.Tensor:
    """Normalized 1-D Gaussian, ``2 * radius + 1`` taps (float64); sigma == 0 is the identity."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    if sigma == 0:
        return (x == 0).double()
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _reflect_index(n: int, pad: int) -> torch.Tensor:
    """Indices of F.pad(mode="reflect") for any pad: repeated reflection, period 2 (n - 1)."""
    i = torch.arange(-pad, n + pad)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    m = i % period
    return torch.where(m >= n, period - m, m)


def _reflect_pad(x: torch.Tensor, r: int) -> torch.Tensor:
    """Reflect-pad the last two dims by ``r``; F.pad when it can, index_select when r >= the size."""
    H, W = x.shape[-2:]
    if r < H and r < W:
        return F.pad(x, (r, r, r, r), mode="reflect")
    x = x.index_select(-2, _reflect_index(H, r).to(x.device))
    return x.index_select(-1, _reflect_index(W, r).to(x.device))


def _dream_step(
    image: torch.Tensor,  # [B, C, H, W] float32
    grad: torch.Tensor,  # [B, C, H, W] gradient w.r.t. torch.roll(image, shift, dims=(2, 3))
    *,
    step_size: float,
    sigma: float | Sequence[float] | None = None,
    kernel_size: int | None = None,
    norm: str = "mean_abs",
    lower: float | Sequence[float] = 0.0,
    upper: float | Sequence[float] = 1.0,
    shift: tuple[int, int] = (0, 0),
    eps: float = 1e-8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(new_image [B, C, H, W], norms [B])``; see ``fastdream.ops.dream_step``."""
    B, C, H, W = image.shape
    g = torch.roll(grad.float(), shifts=(-shift[0], -shift[1]), dims=(2, 3))  # un-jitter
    sigmas = _sigmas(sigma)
    if sigmas:
        blurred = []
        for s in sigmas:
            r = (kernel_size - 1) // 2 if kernel_size is not None else math.ceil(3 * s)
            w1 = _gaussian_taps(s, r)
            k2 = torch.outer(w1, w1).float().to(g.device).expand(C, 1, 2 * r + 1, 2 * r + 1)
            blurred.append(F.conv2d(_reflect_pad(g, r), k2, groups=C))
        g = torch.stack(blurred).mean(0)
    flat = g.reshape(B, -1)
    if norm == "mean_abs":
        norms = flat.abs().mean(1)
    elif norm == "std":
        norms = flat.std(1, correction=0)
    elif norm == "none":
        norms = torch.ones(B, device=g.device)
    else:
        raise ValueError(f"unknown norm {norm!r}")
    gn = g / (norms.view(B, 1, 1, 1) + eps)
    lo = torch.as_tensor(lower, dtype=torch.float32, device=image.device).reshape(-1).expand(C).view(1, C, 1, 1)
    hi = torch.as_tensor(upper, dtype=torch.float32, device=image.device).reshape(-1).expand(C).view(1, C, 1, 1)
    new = torch.clamp(image + step_size * gn, lo, hi)
    bad = ~torch.isfinite(g).reshape(B, -1).all(1) | ~torch.isfinite(norms)  # skipped images
    new = torch.where(bad.view(B, 1, 1, 1), image, new)
    norms = torch.where(bad, torch.full_like(norms, float("nan")), norms)
    return new, norms
