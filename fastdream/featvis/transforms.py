"""Transformation robustness: random small geometric changes applied to the picture at every step.

A picture that excites a unit only at one exact pixel alignment is an adversarial pattern, not a
feature. Lucid's ``standard_transforms`` (Olah et al. 2017) settled on: pad 12 (constant 0.5), jitter
8, scale by one of 0.90..1.10, rotate by -10..10 degrees, jitter 4. Here the chain is composed into
**one affine map per picture** and sampled once (bilinear), so there is one interpolation instead of
two, every picture in a batch gets its own draw, and the output keeps the input's size ``[B, 3, H, W]``
(the network always sees the size that was asked for). Content moved in from outside the picture is
mid-grey: the constant padding.

Randomness comes only from the ``torch.Generator`` passed in: the same seed gives the same transforms.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
import torch.nn.functional as F

LUCID_SCALES = tuple(1 + (i - 5) / 50 for i in range(11))   # 0.90, 0.92, ... 1.10
LUCID_ANGLES = tuple(range(-10, 11))                         # degrees


@dataclasses.dataclass(frozen=True)
class RobustTransform:
    """Jitter -> scale -> rotate -> jitter, one random draw per picture, constant fill outside.

    ``jitter``: the random shift in pixels is ``randint(0, jitter) - jitter // 2`` per axis (Lucid's random
    crop of ``jitter`` pixels, centred). ``scales``/``angles``: chosen uniformly from these values.

    >>> tf = RobustTransform()
    >>> y = tf(torch.rand(4, 3, 224, 224), torch.Generator().manual_seed(0))   # [4, 3, 224, 224]
    """

    jitter1: int = 8
    scales: Sequence[float] = LUCID_SCALES
    angles: Sequence[float] = LUCID_ANGLES
    jitter2: int = 4
    fill: float = 0.5

    def sample(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The random draws for ``n`` pictures: shifts ``[n, 2]`` (x, y) in pixels, scale ``[n]``, angle ``[n]`` (deg)."""

        def shift(d):
            if d <= 0:
                return torch.zeros(n, 2)
            return (torch.randint(0, d, (n, 2), generator=generator) - d // 2).float()

        t1 = shift(self.jitter1)
        s = torch.tensor([float(v) for v in self.scales])[torch.randint(0, len(self.scales), (n,), generator=generator)]
        a = torch.tensor([float(v) for v in self.angles])[torch.randint(0, len(self.angles), (n,), generator=generator)]
        t2 = shift(self.jitter2)
        return {"shift1": t1, "scale": s, "angle": a, "shift2": t2}

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x``: ``[B, 3, H, W]`` -> transformed ``[B, 3, H, W]`` (differentiable in ``x``)."""
        return apply_affine(x, self.sample(x.shape[0], generator), self.fill)


def affine_theta(draw: dict[str, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """``affine_grid`` matrices ``[B, 2, 3]`` for the draws: output pixel -> source pixel.

    Content moves as ``p' = R S (p + t1) + t2`` (pixel coordinates about the centre), so a pixel of the
    output samples the source at ``p = S^-1 R^-1 (p' - t2) - t1``.
    """
    h, w = size
    s, a = draw["scale"].double(), torch.deg2rad(draw["angle"].double())
    t1, t2 = draw["shift1"].double(), draw["shift2"].double()
    cos, sin = torch.cos(a), torch.sin(a)
    # inverse of R(a) S: (1/s) R(-a)
    inv = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2) / s[:, None, None]  # [B,2,2]
    trans = -(inv @ t2[..., None])[..., 0] - t1  # [B, 2] pixels
    # pixel coordinates about the centre <-> normalized [-1, 1] (align_corners=False): x_pix = x_n * w / 2
    to_pix = torch.tensor([w / 2.0, h / 2.0], dtype=torch.float64)
    lin = inv * to_pix[None, None, :] / to_pix[None, :, None]
    theta = torch.cat([lin, (trans / to_pix)[..., None]], -1)
    return theta


def apply_affine(x: torch.Tensor, draw: dict[str, torch.Tensor], fill: float = 0.5) -> torch.Tensor:
    """Warp ``x`` ``[B, 3, H, W]`` by the draws (see :func:`affine_theta`); outside is ``fill``."""
    B, _, H, W = x.shape
    theta = affine_theta(draw, (H, W)).to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, [B, x.shape[1], H, W], align_corners=False)
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


def is_identity(draw: dict[str, torch.Tensor]) -> bool:
    return bool((draw["shift1"] == 0).all() and (draw["shift2"] == 0).all() and (draw["scale"] == 1).all()
                and (draw["angle"] == 0).all())


__all__ = ["RobustTransform", "apply_affine", "affine_theta", "LUCID_SCALES", "LUCID_ANGLES"]
