"""The best pure-torch versions a competent user would write, for the benchmarks to be measured against.

The references in ``fastdream/reference/`` are written to be obviously right (a full 2-D kernel per
Gaussian, tile weights rebuilt on every call); a benchmark against them alone overstates what fusion buys.
These are written to be fast with plain torch:

- :class:`BestDreamStep`: separable Gaussian passes on the reflect-padded gradient, each pass a weighted
  sum of shifted views accumulated in place (on these CPUs 2-3x faster than ``F.conv2d`` with a ``k x 1``
  and a ``1 x k`` depthwise kernel, which oneDNN runs on a slow path for 3 channels), in-place
  normalize/step/clamp, per-channel bounds as broadcast tensors made once; optionally ``torch.compile``d.
  It skips the fused op's NaN/inf guard (one image-wide check), so it does a little less work.
- :class:`CachedAccumulate`: the tile blend with every tile's normalized weight map computed once.
"""
from __future__ import annotations

import math

import torch

from fastdream.reference.dream_step import _gaussian_taps, _reflect_pad, _sigmas
from fastdream.reference.tiling import _corners, _tile_weights


class BestDreamStep:
    """``image += step * smooth(unroll(grad)) / norm``, clamped, in place (``[1, C, H, W]`` fp32)."""

    def __init__(self, channels: int, *, step_size: float, sigma=None, kernel_size=None, norm="mean_abs",
                 lower=0.0, upper=1.0, shift=(0, 0), device="cpu", compile: bool = False):
        self.step_size, self.norm, self.shift = float(step_size), norm, tuple(shift)
        self.taps = []
        for s in _sigmas(sigma):
            r = (kernel_size - 1) // 2 if kernel_size is not None else math.ceil(3 * s)
            self.taps.append((r, [float(v) for v in _gaussian_taps(s, r)]))
        self.lo = torch.as_tensor(lower, dtype=torch.float32, device=device).reshape(-1).expand(channels).reshape(1, channels, 1, 1).contiguous()
        self.hi = torch.as_tensor(upper, dtype=torch.float32, device=device).reshape(-1).expand(channels).reshape(1, channels, 1, 1).contiguous()
        self.channels = channels
        self._fn = torch.compile(self._step, dynamic=False) if compile else self._step

    def _step(self, image: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        g = torch.roll(grad, shifts=(-self.shift[0], -self.shift[1]), dims=(2, 3))
        if self.taps:
            acc = None
            for r, w in self.taps:
                b = _pass(_pass(_reflect_pad(g, r), w, -2), w, -1)
                acc = b if acc is None else acc.add_(b)
            g = acc.div_(len(self.taps)) if len(self.taps) > 1 else acc
        if self.norm == "mean_abs":
            n = g.abs().mean()
        elif self.norm == "std":
            n = g.std(correction=0)
        else:
            n = torch.ones((), device=g.device)
        image.add_(g.mul_(self.step_size / (n + 1e-8)))  # g is a fresh tensor (roll or conv): ours to scale
        return image.clamp_(self.lo, self.hi)

    def __call__(self, image: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return self._fn(image, grad)


def _pass(x: torch.Tensor, w: list[float], dim: int) -> torch.Tensor:
    """1-D convolution of ``x`` along ``dim`` with taps ``w`` (valid part): sum_i w_i * x[i : i + n]."""
    n = x.shape[dim] - len(w) + 1
    out = x.narrow(dim, 0, n) * w[0]
    for i in range(1, len(w)):
        out.add_(x.narrow(dim, i, n), alpha=w[i])
    return out


class CachedAccumulate:
    """``out += w_n * tile_n`` for every tile, the normalized weights ``w_n`` computed once per layout."""

    def __init__(self, layout, device="cpu"):
        h, w = layout.tile_h, layout.tile_w
        weights = _tile_weights(layout)
        total = torch.zeros((layout.height, layout.width), dtype=torch.float64)
        corners = _corners(layout)
        for (y, x), wn in zip(corners, weights):
            total[y:y + h, x:x + w] += wn
        self.corners = corners
        self.h, self.w = h, w
        self.norm = [(wn / total[y:y + h, x:x + w]).float().to(device) for (y, x), wn in zip(corners, weights)]

    def __call__(self, tiles: torch.Tensor, out: torch.Tensor) -> torch.Tensor:  # tiles [n, B, C, th, tw]
        for k, (y, x) in enumerate(self.corners):
            out[..., y:y + self.h, x:x + self.w].addcmul_(self.norm[k], tiles[k])
        return out


class StyleTransferNet(torch.nn.Module):
    """The feed-forward network of fast style transfer (Johnson, Alahi & Fei-Fei, ECCV 2016; the layout of
    PyTorch's ``examples/fast_neural_style``): 9x9 conv, two stride-2 3x3 convs, 5 residual blocks,
    two upsample-then-conv stages and a 9x9 output conv, instance norm and ReLU throughout.

    ``width=32`` is the published network (32/64/128 channels, 1.68M weights); ``width=16`` is the
    *styletransfer-lite* variant that mobile and browser demos ship (16/32/64 channels, a quarter of
    the work). The benchmark filter is measured against both in one run: what a user would otherwise
    deploy as a feed-forward picture filter. Its weights are random (speed does not depend on them).
    """

    def __init__(self, width: int = 16):
        super().__init__()
        nn = torch.nn

        def conv(a, b, k, s=1):
            return nn.Sequential(nn.ReflectionPad2d(k // 2), nn.Conv2d(a, b, k, s), nn.InstanceNorm2d(b, affine=True),
                                 nn.ReLU())

        class Res(nn.Module):
            def __init__(self, c):
                super().__init__()
                self.a = conv(c, c, 3)
                self.b = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c, affine=True))

            def forward(self, x):
                return x + self.b(self.a(x))

        class Up(nn.Module):
            def __init__(self, a, b):
                super().__init__()
                self.c = conv(a, b, 3)

            def forward(self, x):
                return self.c(torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))

        w = width
        self.net = nn.Sequential(conv(3, w, 9), conv(w, 2 * w, 3, 2), conv(2 * w, 4 * w, 3, 2),
                                 *[Res(4 * w) for _ in range(5)], Up(4 * w, 2 * w), Up(2 * w, w),
                                 nn.ReflectionPad2d(4), nn.Conv2d(w, 3, 9))

    def forward(self, x):  # [B, 3, H, W] in [0, 1], H and W multiples of 4
        return torch.sigmoid(self.net(x))
