"""Picture similarity: PSNR and SSIM (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004), in torch.

No well-kept library with SSIM is installed here (scikit-image, kornia, torchmetrics, piq are not
dependencies), so SSIM is written out: an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
dynamic range 1, computed per colour channel on the valid part of the picture (no padding, as in the
reference MATLAB code) and averaged over channels and positions.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def psnr(x: torch.Tensor, y: torch.Tensor, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of ``x`` against ``y`` (``[B, C, H, W]``, values in [0, peak]);
    ``inf`` for identical pictures."""
    if x.shape != y.shape:
        raise ValueError(f"psnr needs pictures of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    mse = (x.double() - y.double()).square().mean().item()
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64) -> torch.Tensor:
    """Normalized 1-d Gaussian ``[size]``."""
    r = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(r * r) / (2 * sigma * sigma))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, *, window: int = 11, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03, peak: float = 1.0) -> float:
    """Mean SSIM of ``x`` against ``y`` (``[B, C, H, W]`` in [0, peak]); 1 for identical pictures.

    Pictures smaller than the window use a window of their smaller side (made odd)."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim needs two [B, C, H, W] pictures of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    B, C, H, W = x.shape
    win = min(window, H, W)
    win -= (win + 1) % 2  # odd
    g = gaussian_window(win, sigma).to(x.device)
    x, y = x.double(), y.double()

    def blur(t):  # separable Gaussian, valid region: [B, C, H - win + 1, W - win + 1]
        t = F.conv2d(t.reshape(B * C, 1, *t.shape[-2:]), g.view(1, 1, win, 1))
        t = F.conv2d(t, g.view(1, 1, 1, win))
        return t

    c1, c2 = (k1 * peak) ** 2, (k2 * peak) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())
