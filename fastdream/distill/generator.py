"""The feed-forward dream generator: a small image-to-image network built for speed and a clean ONNX graph.

Layout (``width=w``; shapes for an input ``[B, 3, H, W]``)::

    x ──► conv3x3/2 (3→w)                       e1 [B, w,  H/2, W/2]
          depthwise 3x3/2 + 1x1 (w→2w)          e2 [B, 2w, H/4, W/4]
          depthwise 3x3/2 + 1x1 (2w→4w)         e3 [B, 4w, H/8, W/8]
          blocks × depthwise-separable residual (dilations 1, 2, 1, 2, ...)
          1x1 (4w→2w) → resize to e2 → + e2 → relu(separable 3x3)      [B, 2w, H/4, W/4]
          1x1 (2w→w)  → resize to e1 → + e1 → relu(separable 3x3)      [B, w,  H/2, W/2]
          separable 3x3 (w→3) → resize to H×W = delta                   [B, 3,  H,   W]
    out = clamp(x + delta, 0, 1)

Design choices and why:

- Strided convolutions down, resize-then-convolve up (bilinear ``Resize`` in ONNX): no transposed
  convolutions, so no checkerboard artifacts. The last resize carries only the 3-channel change to
  full resolution (smooth, and the cheapest place for it: full-resolution feature maps would cost more
  than the rest of the network on a CPU); the picture's own detail comes through the residual.
- Every resize targets the exact size of the encoder feature it joins (and the input at the end), so
  any height and width works — odd sizes included — with no padding and no crop.
- ``padding="replicate"`` (what ``distill train`` uses): the convolutions extend each feature map by its
  edge values instead of zeros, so the network cannot easily tell where the picture ends; with zero
  padding a generator trained to climb a backbone objective learns to treat its borders specially
  (frames and blobs along the edges). ONNX: a ``Pad`` (mode ``edge``) before each such convolution.
- No normalization layers (BatchNorm/InstanceNorm after upsampling behaves differently in ONNX and
  at other sizes); plain convolutions with biases and ReLU.
- A residual connection to the input: the network only learns the dream's change, which starts at
  zero (the last layer is zero-initialized), so an untrained filter is the identity.
- Depthwise-separable convolutions everywhere but the first layer: about 0.3 GMAC at 640x480 for
  the default width 16.

Input and output: RGB float32 in [0, 1], ``[B, 3, H, W]``, any ``H, W >= 1``.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from fastdream.errors import FastdreamError

ARCH = "fastdream-dreamnet-v1"
STRIDE = 8  # total downsampling of the encoder (sizes need not be multiples of it)
PADDINGS = ("zeros", "replicate")


@dataclasses.dataclass
class GeneratorConfig:
    width: int = 16      # channels of the first encoder stage (then 2x, 4x)
    blocks: int = 4      # residual blocks at 1/8 resolution
    padding: str = "zeros"  # border handling of every convolution: zeros | replicate

    def validate(self) -> None:
        if self.padding not in PADDINGS:
            raise FastdreamError(f"generator padding must be one of {', '.join(PADDINGS)}, got {self.padding!r}")
        if not isinstance(self.width, int) or not 4 <= self.width <= 256:
            raise FastdreamError(f"generator width must be a whole number in 4..256, got {self.width!r}")
        if not isinstance(self.blocks, int) or not 0 <= self.blocks <= 32:
            raise FastdreamError(f"generator blocks must be a whole number in 0..32, got {self.blocks!r}")


class SeparableConv(nn.Module):
    """Depthwise 3x3 (optionally dilated or strided) then pointwise 1x1: ``[B, cin, h, w] -> [B, cout, h/s, w/s]``."""

    def __init__(self, cin: int, cout: int, dilation: int = 1, stride: int = 1, padding: str = "zeros"):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, stride=stride, padding=dilation, dilation=dilation, groups=cin,
                                   padding_mode=padding)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ResidualBlock(nn.Module):
    """``x + sep(relu(sep(x)))`` at constant width: ``[B, c, h, w] -> [B, c, h, w]``."""

    def __init__(self, c: int, dilation: int = 1, padding: str = "zeros"):
        super().__init__()
        self.conv1 = SeparableConv(c, c, dilation, padding=padding)
        self.conv2 = SeparableConv(c, c, dilation, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def _resize_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to the spatial size of ``like`` (traced as a dynamic ONNX Resize)."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class DreamGenerator(nn.Module):
    """Feed-forward dream filter. ``forward(x: [B, 3, H, W] in [0, 1]) -> [B, 3, H, W] in [0, 1]``.

    >>> g = DreamGenerator(GeneratorConfig(width=16, blocks=4))
    >>> g(torch.rand(1, 3, 37, 50)).shape
    torch.Size([1, 3, 37, 50])
    """

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = config or GeneratorConfig()
        self.config.validate()
        w, pad = self.config.width, self.config.padding
        self.enc1 = nn.Conv2d(3, w, 3, stride=2, padding=1, padding_mode=pad)
        self.enc2 = SeparableConv(w, 2 * w, stride=2, padding=pad)
        self.enc3 = SeparableConv(2 * w, 4 * w, stride=2, padding=pad)
        self.blocks = nn.Sequential(*[ResidualBlock(4 * w, dilation=1 + (i % 2), padding=pad)
                                      for i in range(self.config.blocks)])
        self.reduce3 = nn.Conv2d(4 * w, 2 * w, 1)
        self.dec2 = SeparableConv(2 * w, 2 * w, padding=pad)
        self.reduce2 = nn.Conv2d(2 * w, w, 1)
        self.dec1 = SeparableConv(w, w, padding=pad)
        self.out = SeparableConv(w, 3, padding=pad)
        nn.init.zeros_(self.out.pointwise.weight)
        nn.init.zeros_(self.out.pointwise.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, 3, H, W]
        e1 = F.relu(self.enc1(x))                                  # [B, w, H/2, W/2]
        e2 = F.relu(self.enc2(e1))                                 # [B, 2w, H/4, W/4]
        e3 = F.relu(self.enc3(e2))                                 # [B, 4w, H/8, W/8]
        y = self.blocks(e3)                                        # [B, 4w, H/8, W/8]
        y = F.relu(self.dec2(_resize_to(self.reduce3(y), e2) + e2))  # [B, 2w, H/4, W/4]
        y = F.relu(self.dec1(_resize_to(self.reduce2(y), e1) + e1))  # [B, w, H/2, W/2]
        delta = _resize_to(self.out(y), x)                         # [B, 3, H, W]
        return torch.clamp(x + delta, 0.0, 1.0)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
