"""The feedback zoom: dream, transform (zoom, rotate, translate), dream again. The transform is one
affine ``grid_sample`` on the picture tensor where it lives (GPU or CPU); only the finished frames are
copied to the host, for the encoder."""
from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F


def affine_theta(size: tuple[int, int], zoom: float = 1.0, rotate: float = 0.0,
                 translate: tuple[float, float] = (0.0, 0.0), device=None) -> torch.Tensor:
    """The ``[1, 2, 3]`` matrix for ``F.affine_grid`` that zooms in by ``zoom`` (> 1 magnifies), turns
    the picture by ``rotate`` degrees (counter-clockwise) about its centre and moves it by ``translate``
    = (dx, dy) pixels (right, down). Built in pixel units so rotation keeps angles on non-square pictures.
    """
    H, W = size
    a = math.radians(rotate)
    c, s = math.cos(a), math.sin(a)
    # output pixel p (centred) samples the source at q = R(-a) p / zoom - t; y points down, so a
    # counter-clockwise turn on screen is a clockwise one in (x, y) maths.
    m = torch.tensor([[c, -s], [s, c]], dtype=torch.float64) / zoom
    S = torch.tensor([[W / 2.0, 0.0], [0.0, H / 2.0]], dtype=torch.float64)
    Si = torch.linalg.inv(S)
    A = Si @ m @ S
    t = -(Si @ torch.tensor([translate[0], translate[1]], dtype=torch.float64))
    theta = torch.cat([A, t[:, None]], dim=1)[None].float()
    return theta.to(device) if device is not None else theta


def transform(x: torch.Tensor, theta: torch.Tensor, padding: str = "reflection") -> torch.Tensor:
    """Resample ``x`` ``[1, 3, H, W]`` by ``theta`` ``[1, 2, 3]`` (bilinear; borders mirrored)."""
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False).clamp_(0, 1)


def zoom_frames(x: torch.Tensor, processor: Callable[[torch.Tensor], torch.Tensor], frames: int,
                zoom: float = 1.05, rotate: float = 0.0, translate: tuple[float, float] = (0.0, 0.0),
                include_input: bool = False) -> Iterator[torch.Tensor]:
    """Yield ``frames`` pictures ``[1, 3, H, W]``: ``f0 = P(x)``, ``f_k = P(T(f_{k-1}))`` with ``P`` the
    processor and ``T`` the affine transform (``include_input``: ``f0 = x`` undreamed).

    >>> from fastdream.video.zoom import zoom_frames
    >>> for f in zoom_frames(x, lambda t: t, 10, zoom=1.1): ...
    """
    theta = affine_theta(tuple(x.shape[-2:]), zoom, rotate, translate, device=x.device)
    cur = x
    for k in range(frames):
        at = getattr(processor, "at_frame", None)
        if at is not None:
            at(k)
        if k > 0:
            cur = transform(cur, theta)
        if k > 0 or not include_input:
            cur = processor(cur)
        yield cur
