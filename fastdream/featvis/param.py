"""The picture as the optimizer sees it: a Fourier (spectral) parameterization with decorrelated colour.

Feature visualization optimizes not the pixels but a reparameterization in which the gradient is
better conditioned (Olah et al., "Feature Visualization", Distill 2017; Mordvintsev et al.,
"Differentiable Image Parameterizations", Distill 2018):

- **spectral**: the parameters are the 2-d real FFT coefficients of the picture, scaled by
  ``1 / frequency ** decay`` so that a unit step moves every frequency by about the amount natural
  pictures have of it (their spectrum falls like 1/f). Plain pixel gradients are dominated by high
  frequencies and give the familiar noisy patterns;
- **decorrelated colour**: the three channels are coordinates in a whitened colour space; a fixed
  3x3 matrix :data:`COLOR_SQRT` (the square root of the RGB covariance of photos) maps them to RGB,
  so a step in one coordinate changes brightness or one opponent colour, not one raw channel;
- a **sigmoid** maps the result into [0, 1].

:class:`FourierImage` holds the parameters of ``N`` pictures at once (the variants) and is a
bijection onto the open cube (0, 1): :meth:`FourierImage.from_image` starts from a photo.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from fastdream.engine.colour import COLOR_MATRIX, COLOR_SQRT  # noqa: E402,F401  (the photos' colour statistics)


def color_sqrt_from_images(paths: Iterable) -> torch.Tensor:
    """``U * sqrt(S)`` of the mean RGB covariance of the pictures at ``paths`` (the recipe of
    :data:`COLOR_SQRT`; kept so the constant can be checked and recomputed). Returns ``[3, 3]``."""
    from fastdream.imageio import load_image

    covs = []
    for p in paths:
        x, _ = load_image(p)  # [1, 3, H, W]
        px = x[0].flatten(1).double()  # [3, HW]
        covs.append(torch.cov(px))
    if not covs:
        raise ValueError("no pictures given")
    c = torch.stack(covs).mean(0)
    u, s, _ = torch.linalg.svd(c)
    m = u * s.sqrt()
    m = m * torch.where(m[0] < 0, -1.0, 1.0).to(m.dtype)  # each column's red entry positive
    return m.float()


def rfft_freqs(h: int, w: int) -> torch.Tensor:
    """Spatial frequency magnitude ``[h, w // 2 + 1]`` (cycles per pixel) of each ``rfft2`` coefficient."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> torch.Tensor:
    """Per-coefficient scale ``[h, w // 2 + 1]``: ``1 / max(f, 1 / max(h, w)) ** decay / 4``.

    With the orthonormal inverse FFT this is Lucid's scaling (``sqrt(h * w)`` times the unnormalized
    inverse, then ``/ 4``), so Lucid's learning rates (Adam, 0.05) carry over."""
    f = rfft_freqs(h, w)
    return 0.25 / torch.clamp(f, min=1.0 / max(h, w)) ** decay_power


def decorrelate(t: torch.Tensor) -> torch.Tensor:
    """Whitened colour coordinates ``[B, 3, H, W]`` -> correlated RGB-like values (before the sigmoid)."""
    m = COLOR_MATRIX.to(device=t.device, dtype=t.dtype)
    return torch.einsum("ij,bjhw->bihw", m, t)


def correlate_inverse(rgb: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`decorrelate`: RGB-like values ``[B, 3, H, W]`` -> whitened coordinates."""
    m = torch.linalg.inv(COLOR_MATRIX.double()).to(device=rgb.device, dtype=rgb.dtype)
    return torch.einsum("ij,bjhw->bihw", m, rgb)


class FourierImage(nn.Module):
    """``n`` pictures of ``size`` (H, W) as scaled, colour-decorrelated Fourier coefficients.

    Calling it returns the pictures ``[n, 3, H, W]`` in (0, 1), differentiable in ``self.spectrum``
    (``[n, 3, H, W // 2 + 1, 2]``, the real and imaginary parts).

    >>> p = FourierImage((224, 224), n=2, generator=torch.Generator().manual_seed(0))
    >>> opt = torch.optim.Adam(p.parameters(), lr=0.05)
    >>> x = p()                                  # [2, 3, 224, 224] in (0, 1)
    """

    def __init__(self, size: tuple[int, int], n: int = 1, *, sd: float = 0.01, decay_power: float = 1.0,
                 generator: torch.Generator | None = None, device="cpu"):
        super().__init__()
        h, w = int(size[0]), int(size[1])
        if h < 2 or w < 2 or n < 1:
            raise ValueError(f"FourierImage needs a size of at least 2x2 and n >= 1, got {size}, n={n}")
        self.size, self.n, self.decay_power = (h, w), n, decay_power
        self.register_buffer("scale", spectrum_scale(h, w, decay_power).to(device), persistent=False)
        init = torch.randn(n, 3, h, w // 2 + 1, 2, generator=generator) * sd
        self.spectrum = nn.Parameter(init.to(device))

    def pre_sigmoid(self) -> torch.Tensor:  # [n, 3, H, W] unbounded, correlated colour
        coeffs = torch.view_as_complex(self.spectrum.contiguous()) * self.scale
        t = torch.fft.irfft2(coeffs, s=self.size, norm="ortho")
        return decorrelate(t)

    def forward(self) -> torch.Tensor:  # [n, 3, H, W] in (0, 1)
        return torch.sigmoid(self.pre_sigmoid())

    @torch.no_grad()
    def set_image(self, x: torch.Tensor, eps: float = 1e-3) -> "FourierImage":
        """Set the parameters so that ``self()`` returns ``x`` (``[n or 1, 3, H, W]`` in [0, 1], values
        clamped to ``[eps, 1 - eps]`` where the sigmoid cannot reach)."""
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != self.size:
            raise ValueError(f"set_image needs [n, 3, {self.size[0]}, {self.size[1]}], got {tuple(x.shape)}")
        x = x.to(self.spectrum.device, torch.float64).clamp(eps, 1 - eps).expand(self.n, -1, -1, -1)
        t = correlate_inverse(torch.log(x) - torch.log1p(-x))
        coeffs = torch.fft.rfft2(t, norm="ortho") / self.scale.double()
        self.spectrum.copy_(torch.view_as_real(coeffs).to(self.spectrum.dtype))
        return self

    @classmethod
    def from_image(cls, x: torch.Tensor, n: int = 1, **kwargs) -> "FourierImage":
        """A parameterization that starts at picture ``x`` (``[1, 3, H, W]`` in [0, 1])."""
        p = cls(tuple(x.shape[-2:]), n, **kwargs)
        return p.set_image(x)
