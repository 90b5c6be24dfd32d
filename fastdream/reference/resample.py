"""Pure-torch references for fastdream.ops.resample (ground truth for tests and benchmarks)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["_resample", "_octave_upsample_add"]


def _resample(x: torch.Tensor, size, mode: str = "bilinear", antialias: bool = False) -> torch.Tensor:
    """``x [B, C, H, W]`` resized to ``size`` (``(H2, W2)``) -> ``[B, C, H2, W2]``."""
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=False, antialias=antialias)


def _octave_upsample_add(detail: torch.Tensor, base: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """``base [B, C, H, W] + resize(detail [B, C, h, w], (H, W))`` -> ``[B, C, H, W]``."""
    return base + F.interpolate(detail, size=tuple(base.shape[-2:]), mode=mode, align_corners=False)
