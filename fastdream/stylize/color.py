"""Colour helpers for ``--preserve-color`` (Gatys, Bethge, Hertzmann & Shechtman, "Preserving color in
neural artistic style transfer", 2016): luminance-only transfer and colour histogram matching."""
from __future__ import annotations

import torch

# ITU-R BT.601 full range (JPEG's YCbCr), on [0, 1] RGB.
_RGB2YCC = torch.tensor([[0.299, 0.587, 0.114],
                         [-0.168736, -0.331264, 0.5],
                         [0.5, -0.418688, -0.081312]])
_YCC2RGB = torch.linalg.inv(_RGB2YCC)
_OFFSET = torch.tensor([0.0, 0.5, 0.5])


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` RGB in [0, 1] -> YCbCr (Y in [0, 1], Cb/Cr centered on 0.5)."""
    m = _RGB2YCC.to(x.device, x.dtype)
    return torch.einsum("ij,bjhw->bihw", m, x) + _OFFSET.to(x.device, x.dtype).view(1, 3, 1, 1)


def ycbcr_to_rgb(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (not clamped)."""
    m = _YCC2RGB.to(y.device, y.dtype)
    return torch.einsum("ij,bjhw->bihw", m, y - _OFFSET.to(y.device, y.dtype).view(1, 3, 1, 1))


def luminance(x: torch.Tensor) -> torch.Tensor:
    """Luma ``[B, 1, H, W]`` of RGB ``[B, 3, H, W]``."""
    return rgb_to_ycbcr(x)[:, :1]


def gray3(x: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """The luma of ``x`` as a 3-channel gray picture; with ``like``, its mean and standard deviation
    matched to ``like``'s luma (the luminance-only transfer's style preprocessing)."""
    y = luminance(x)
    if like is not None:
        ly = luminance(like)
        y = (y - y.mean()) / (y.std() + 1e-6) * ly.std() + ly.mean()
    return y.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def keep_chroma(result: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The luma of ``result`` with the chroma (Cb, Cr) of ``content`` (resized to match), clamped to [0, 1]."""
    import torch.nn.functional as F

    if content.shape[-2:] != result.shape[-2:]:
        content = F.interpolate(content, size=result.shape[-2:], mode="bilinear", align_corners=False,
                                antialias=True)
    r, c = rgb_to_ycbcr(result), rgb_to_ycbcr(content)
    return ycbcr_to_rgb(torch.cat([r[:, :1], c[:, 1:]], 1)).clamp(0, 1)


def match_color(source: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``source`` ``[1, 3, H, W]`` with its colour mean and covariance moved to ``target``'s (a linear map,
    the "colour histogram matching" of Gatys et al.; Cholesky-free, via symmetric square roots)."""
    def stats(x):
        f = x[0].reshape(3, -1).double()
        mu = f.mean(1, keepdim=True)
        d = f - mu
        cov = d @ d.t() / d.shape[1] + eps * torch.eye(3, dtype=torch.float64)
        return f, mu, cov

    def sqrtm(c, inv=False):
        e, v = torch.linalg.eigh(c)
        e = e.clamp_min(1e-12)
        return v @ torch.diag(e.rsqrt() if inv else e.sqrt()) @ v.t()

    fs, mus, cs = stats(source)
    _, mut, ct = stats(target)
    a = sqrtm(ct) @ sqrtm(cs, inv=True)
    out = a @ (fs - mus) + mut
    return out.float().reshape(source.shape).clamp(0, 1).to(source.device)
