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

from fastdream.backbones.efficientnet_lite import MEAN, STD, EfficientNetLite, conv_bn, default_weights_path, fold_bn
from fastdream.errors import FastdreamError

ARCH = "fastdream-dreamnet-v2"          # what `distill train` makes by default
ARCHS = ("fastdream-dreamnet-v1", ARCH, "fastdream-dreamnet-v3")  # what checkpoints may hold (index: version - 1)
STRIDE = 16  # total downsampling of the encoder (v1, v2: sizes need not be multiples of it; v3: padded to it)
PADDINGS = ("zeros", "replicate")
OUTPUT_STAGES = ("resize", "phases")


@dataclasses.dataclass
class GeneratorConfig:
    width: int = 24      # channels of the first encoder stage (v2: then 2x, 4x, `deep`; v1: 2x, 4x)
    blocks: int = 4      # residual blocks at the coarsest resolution (v2: 1/16, dilations 1, 2, 4, 8; v1: 1/8)
    padding: str = "zeros"  # border handling of every convolution: zeros | replicate
    version: int = 2     # 1: the first filter's layout (DreamGenerator); 2: DreamNet (deeper, pixel-shuffle
                         # output); 3: DreamNetB (the backbone's own blocks as the encoder)
    deep: int = 128      # v2: channels at 1/16 resolution
    mid_blocks: int = 1  # v2: residual blocks at 1/8 resolution on the way up
    coarse: bool = False  # v3: the encoder also reads the picture at half size, its features join at 1/16
    fine_blocks: int = 0  # v3: residual blocks after the decoder's 1/4 and 1/2 stages (each starts as the identity)
    output: str = "resize"  # v3: resize (bilinear 2x, then 3x3 at full size) | phases (12 free phase channels
                            # at half size, pixel-shuffled: full-resolution detail)
    stem_path: bool = False  # v3: a 32-channel map at 1/2 drawn back to the pixels through the stem's own
                             # vector-Jacobian product at the picture (what a dream's step does there)
    block0_path: bool = False  # v3: a 16-channel map at 1/2 drawn back through block0's and the stem's
                               # vector-Jacobian products (the depthwise 3x3's gates: oriented strokes)

    def validate(self) -> None:
        if self.padding not in PADDINGS:
            raise FastdreamError(f"generator padding must be one of {', '.join(PADDINGS)}, got {self.padding!r}")
        if not isinstance(self.width, int) or not 4 <= self.width <= 256:
            raise FastdreamError(f"generator width must be a whole number in 4..256, got {self.width!r}")
        if not isinstance(self.blocks, int) or not 0 <= self.blocks <= 32:
            raise FastdreamError(f"generator blocks must be a whole number in 0..32, got {self.blocks!r}")
        if self.version not in (1, 2, 3):
            raise FastdreamError(f"generator version must be 1, 2 or 3, got {self.version!r}")
        if not isinstance(self.deep, int) or not 8 <= self.deep <= 1024:
            raise FastdreamError(f"generator deep width must be a whole number in 8..1024, got {self.deep!r}")
        if not isinstance(self.mid_blocks, int) or not 0 <= self.mid_blocks <= 16:
            raise FastdreamError(f"generator mid blocks must be a whole number in 0..16, got {self.mid_blocks!r}")
        if self.coarse and self.version != 3:
            raise FastdreamError("the coarse (half-size) encoder pass is for the v3 generator")
        if not isinstance(self.fine_blocks, int) or not 0 <= self.fine_blocks <= 8:
            raise FastdreamError(f"generator fine blocks must be a whole number in 0..8, got {self.fine_blocks!r}")
        if self.fine_blocks and self.version != 3:
            raise FastdreamError("fine blocks are for the v3 generator")
        if self.output not in OUTPUT_STAGES:
            raise FastdreamError(f"generator output stage must be one of {', '.join(OUTPUT_STAGES)}, got {self.output!r}")
        if self.output != "resize" and self.version != 3:
            raise FastdreamError("the phases output stage is for the v3 generator")
        if self.stem_path and self.version != 3:
            raise FastdreamError("the stem path is for the v3 generator")
        if self.block0_path and self.version != 3:
            raise FastdreamError("the block0 path is for the v3 generator")

    @property
    def arch(self) -> str:
        return ARCHS[self.version - 1]


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


def _upsample_taps() -> torch.Tensor:
    """``A[a, t, m]``: the weight of the half-size sample at offset ``m - 1`` in the full-size sample at
    offset ``t - 1`` from row ``2i + a``, for a 2x bilinear resize with half-pixel centres (edges clamped):
    full-size sample ``2q`` is ``0.75 h[q] + 0.25 h[q - 1]``, ``2q + 1`` is ``0.75 h[q] + 0.25 h[q + 1]``."""
    taps = torch.zeros(2, 3, 3)
    for a in range(2):
        for t in range(3):
            q, s = divmod(a + t - 1, 2)
            taps[a, t, q + 1] += 0.75
            taps[a, t, q + (1 if s else -1) + 1] += 0.25
    return taps


class HalfSizeOutput(nn.Module):
    """The v3 output stage, ``conv3x3(cat(resize2x(h), x))``, computed at half size: the same numbers in
    less time (what the exported graph runs).

    A 3x3 convolution after a 2x bilinear resize is, for each of the four output phases (row and column
    parity), a 3x3 convolution of the half-size map with weights mixed from the kernel and the resize's
    0.25/0.75 taps; the four phases come out as 4x the channels and ``pixel_shuffle`` interleaves them.
    So the 8-channel map is never resized to full size and the full-size 11-channel convolution (the
    most expensive layer per output of the float tail on a CPU) becomes a half-size 8 -> 12 one plus
    the picture's own 3 -> 3 convolution. Inside the picture this is exact; along its one-pixel border
    the resized map's zero padding differs from the half-size map's edge padding, and four row and
    column convolutions of the resized edges put it back (``padding="zeros"``; with ``"replicate"`` the
    two paddings agree). Built from a trained ``out`` convolution; holds constants, no parameters.
    """

    def __init__(self, out: nn.Conv2d, channels: int, padding: str):
        super().__init__()
        w = out.weight.detach()
        wu, wx = w[:, :channels], w[:, channels:]
        up = _upsample_taps()
        self.kernel = torch.einsum("aym,bxn,oiyx->oabimn", up, up, wu).reshape(4 * w.shape[0], channels, 3, 3)
        self.bias = out.bias.detach().repeat_interleave(4)
        self.wx, self.wu, self.padding = wx.clone(), wu.clone(), padding

    @staticmethod
    def full_size_weights(kernel: torch.Tensor, bias: torch.Tensor, wx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``out`` convolution's weight and bias back from the half-size stage's phase kernel, bias and
        picture kernel (what an exported graph holds): the even-even phase is ``A0ᵀ W A0`` per channel
        pair, ``A0`` the resize's 3x3 tap matrix for even rows (invertible)."""
        a0 = _upsample_taps()[0].double()
        k = kernel.double().reshape(-1, 4, *kernel.shape[1:])[:, 0]                 # [o, c, 3, 3], phase (0, 0)
        inv = torch.linalg.inv(a0)
        wu = torch.einsum("my,ocmn,nx->ocyx", inv, k, inv).float()
        return torch.cat([wu, wx], 1), bias.reshape(-1, 4)[:, 0].clone()

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # [B, c, H/2, W/2], [B, 3, H, W]
        z = F.conv2d(F.pad(h, (1, 1, 1, 1), mode="replicate"), self.kernel, self.bias)   # [B, 12, H/2, W/2]
        if self.padding != "zeros":  # edge padding at both sizes: nothing to put back
            return F.pixel_shuffle(z, 2) + F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.wx)
        d = F.pixel_shuffle(z, 2) + F.conv2d(x, self.wx, padding=1)
        # zero padding: take out what the edge padding added along the border (the resized map's first and
        # last rows and columns, each convolved with the kernel's outer row or column; the corners once)
        wu = self.wu

        def edge(rows, scale):  # the resized map's first or last row (or column): only one direction resized
            return F.interpolate(rows, scale_factor=scale, mode="bilinear", align_corners=False)

        top = F.conv2d(F.pad(edge(h[:, :, :1], (1, 2)), (1, 1, 0, 0), mode="replicate"), wu[:, :, :1])
        bottom = F.conv2d(F.pad(edge(h[:, :, -1:], (1, 2)), (1, 1, 0, 0), mode="replicate"), wu[:, :, 2:])
        left = F.conv2d(F.pad(edge(h[..., :1], (2, 1)), (0, 0, 1, 1)), wu[..., :1])
        right = F.conv2d(F.pad(edge(h[..., -1:], (2, 1)), (0, 0, 1, 1)), wu[..., 2:])
        d = torch.cat([d[:, :, :1] - top, d[:, :, 1:-1], d[:, :, -1:] - bottom], 2)
        return torch.cat([d[..., :1] - left, d[..., 1:-1], d[..., -1:] - right], 3)


def _add_decoder(net: nn.Module, w: int, out_channels: int, pad: str) -> None:
    """The decoder both layouts share, from 4w channels at 1/8 up to ``out_channels`` at 1/2: 1x1 reduce,
    resize to the skip, add, separable 3x3, twice; the output layer starts at zero (identity filter)."""
    net.reduce3 = nn.Conv2d(4 * w, 2 * w, 1)
    net.dec2 = SeparableConv(2 * w, 2 * w, padding=pad)
    net.reduce2 = nn.Conv2d(2 * w, w, 1)
    net.dec1 = SeparableConv(w, w, padding=pad)
    net.out = SeparableConv(w, out_channels, padding=pad)
    nn.init.zeros_(net.out.pointwise.weight)
    nn.init.zeros_(net.out.pointwise.bias)


def _decode(net: nn.Module, y: torch.Tensor, e2: torch.Tensor, e1: torch.Tensor) -> torch.Tensor:
    """``[B, 4w, H/8, W/8]`` -> ``[B, w, H/2, W/2]`` through the skips ``e2`` (1/4) and ``e1`` (1/2)."""
    y = F.relu(net.dec2(_resize_to(net.reduce3(y), e2) + e2))
    return F.relu(net.dec1(_resize_to(net.reduce2(y), e1) + e1))


class _Generator(nn.Module):
    """What every generator layout shares: taking another generator's weights (``--init``)."""

    def load_generator(self, other: nn.Module) -> "_Generator":
        """Take ``other``'s weights (a generator of the same layout)."""
        self.load_state_dict(other.state_dict())
        return self


class DreamGenerator(_Generator):
    """Feed-forward dream filter. ``forward(x: [B, 3, H, W] in [0, 1]) -> [B, 3, H, W] in [0, 1]``.

    >>> g = DreamGenerator(GeneratorConfig(width=16, blocks=4))
    >>> g(torch.rand(1, 3, 37, 50)).shape
    torch.Size([1, 3, 37, 50])
    """

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = dataclasses.replace(config or GeneratorConfig(width=16), version=1)
        self.config.validate()
        w, pad = self.config.width, self.config.padding
        self.enc1 = nn.Conv2d(3, w, 3, stride=2, padding=1, padding_mode=pad)
        self.enc2 = SeparableConv(w, 2 * w, stride=2, padding=pad)
        self.enc3 = SeparableConv(2 * w, 4 * w, stride=2, padding=pad)
        self.blocks = nn.Sequential(*[ResidualBlock(4 * w, dilation=1 + (i % 2), padding=pad)
                                      for i in range(self.config.blocks)])
        _add_decoder(self, w, 3, pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, 3, H, W]
        e1 = F.relu(self.enc1(x))                                  # [B, w, H/2, W/2]
        e2 = F.relu(self.enc2(e1))                                 # [B, 2w, H/4, W/4]
        e3 = F.relu(self.enc3(e2))                                 # [B, 4w, H/8, W/8]
        y = self.blocks(e3)                                        # [B, 4w, H/8, W/8]
        y = _decode(self, y, e2, e1)                               # [B, w, H/2, W/2]
        delta = _resize_to(self.out(y), x)                         # [B, 3, H, W]
        return torch.clamp(x + delta, 0.0, 1.0)


class DreamNet(_Generator):
    """The second-generation filter (``fastdream-dreamnet-v2``): room to draw the dream's structures.

    Layout (``width=w``, ``deep=d``; shapes for an input ``[B, 3, H, W]``)::

        x ──► conv3x3/2 (3→w)                               e1 [B, w,  H/2,  W/2]
              separable 3x3/2 (w→2w)                        e2 [B, 2w, H/4,  W/4]
              separable 3x3/2 (2w→4w)                       e3 [B, 4w, H/8,  W/8]
              separable 3x3/2 (4w→d)                        e4 [B, d,  H/16, W/16]
              blocks × residual separable (dilations 1, 2, 4, 8, ...)   at 1/16
              1x1 (d→4w) → resize to e3 → + e3 → mid_blocks × residual  at 1/8
              1x1 (4w→2w) → resize to e2 → + e2 → relu(separable 3x3)   at 1/4
              1x1 (2w→w) → resize to e1 → + e1 → relu(separable 3x3)    at 1/2
              separable 3x3 (w→12) → pixel shuffle ×2 → crop to H×W = delta
        out = clamp(x + delta, 0, 1)

    Why: the dream's structures at the size of use (a 640-pixel picture) span up to a few hundred
    pixels; the dilated blocks at 1/16 see about 1,000 pixels across, so the filter can lay out eyes
    and swirls over whole objects (the first filter, at 1/8 with dilations 1 and 2, saw about 200). The
    pixel-shuffle output paints full-resolution detail (the teacher's fine stripes) from half-resolution
    features, where a bilinear resize of a half-resolution change could only blur it. Everything else
    as in :class:`DreamGenerator`: any size, no normalization, an identity at initialization.
    """

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = dataclasses.replace(config or GeneratorConfig(), version=2)
        self.config.validate()
        w, d, pad = self.config.width, self.config.deep, self.config.padding
        self.enc1 = nn.Conv2d(3, w, 3, stride=2, padding=1, padding_mode=pad)
        self.enc2 = SeparableConv(w, 2 * w, stride=2, padding=pad)
        self.enc3 = SeparableConv(2 * w, 4 * w, stride=2, padding=pad)
        self.enc4 = SeparableConv(4 * w, d, stride=2, padding=pad)
        self.blocks = nn.Sequential(*[ResidualBlock(d, dilation=2 ** (i % 4), padding=pad)
                                      for i in range(self.config.blocks)])
        self.reduce4 = nn.Conv2d(d, 4 * w, 1)
        self.mid = nn.Sequential(*[ResidualBlock(4 * w, dilation=1 + (i % 2), padding=pad)
                                   for i in range(self.config.mid_blocks)])
        _add_decoder(self, w, 12, pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, 3, H, W]
        e1 = F.relu(self.enc1(x))                                   # [B, w, H/2, W/2]
        e2 = F.relu(self.enc2(e1))                                  # [B, 2w, H/4, W/4]
        e3 = F.relu(self.enc3(e2))                                  # [B, 4w, H/8, W/8]
        e4 = F.relu(self.enc4(e3))                                  # [B, d, H/16, W/16]
        y = self.blocks(e4)
        y = self.mid(_resize_to(self.reduce4(y), e3) + e3)          # [B, 4w, H/8, W/8]
        y = _decode(self, y, e2, e1)                               # [B, w, H/2, W/2]
        delta = F.pixel_shuffle(self.out(y), 2)[..., :x.shape[-2], :x.shape[-1]]  # [B, 3, H, W]
        return torch.clamp(x + delta, 0.0, 1.0)


ENCODER_BLOCKS = 10  # v3: the stem and block0..block9 of EfficientNet-Lite0 (block9: the classic dream's layer)


class DreamNetB(_Generator):
    """The third-generation filter (``fastdream-dreamnet-v3``): the backbone's own blocks as the encoder.

    A dream is the backbone's gradient ascent, so where eyes and swirls grow is decided by the
    backbone's features. The first two layouts had to learn those features from about a hundred
    photos; this one starts from them: its encoder is the stem and blocks 0..9 of the embedded
    EfficientNet-Lite0 with its ImageNet weights (BatchNorm folded in eval mode), frozen unless
    ``train_encoder``, and only the decoder learns to turn the features into the dream's change.

    Layout (``width=w``, ``deep=d``; shapes for an input ``[B, 3, H, W]``, H and W multiples of 16,
    other sizes are padded by edge replication and cropped back)::

        x ──► Lite0 stem                                   e1 [B, 32,  H/2,  W/2]
              block0..2                                    e2 [B, 24,  H/4,  W/4]
              block3..4                                    e3 [B, 40,  H/8,  W/8]
              block5..9                                    e4 [B, 112, H/16, W/16]
              1x1 (112→d) → blocks × residual separable (dilations 1, 2, 4, 8, ...)  at 1/16
              1x1 (d→4w) → resize → + 1x1(e3) → mid_blocks × residual              at 1/8
              1x1 (4w→2w) → resize → + 1x1(e2) → relu(separable 3x3)               at 1/4
              1x1 (2w→w) → resize → + 1x1(e1) → relu(separable 3x3) → 1x1 (w→8)    at 1/2
              (fine_blocks: that many residual separable blocks after the 1/4 and the 1/2 stage)
              bilinear resize to H×W, beside x → 3x3 (11→3) = delta               at 1/1
              (output="phases": 3x3 (8→12) at 1/2, pixel shuffle, + 3x3 (3→3) of x = delta)
        out = clamp(x + delta, 0, 1)

    The output is a resize-then-convolve at full resolution (no pixel shuffle: the second layout's
    2-pixel grid came from it), and the picture itself enters the last convolution, so the change can
    follow its edges. About 24 ms of its time at 640x480 on this CPU is the encoder.

    ``output="phases"`` frees the output stage: the resize-then-convolve stage is, computed at half size
    (:class:`HalfSizeOutput`), a 3x3 convolution to 12 channels (4 phases x 3 colours) whose weights are
    tied to the 3x3 kernel through the resize's taps, so the change is smooth between neighbouring
    pixels except for what a fixed filter of the picture adds. Untied, each 2x2 block of the output is
    drawn from the half-size map freely, at the same cost. :meth:`load_generator` converts a trained
    resize stage into it. (Measured in docs/distill.md: fine-tuned, it draws a pattern fixed to the
    2-pixel grid unless ``--grid-weight`` holds it back, and then it is no closer to the teacher.)

    With ``coarse`` the encoder makes a second pass over the picture at half size (2x2 mean), and its
    block9 features (at 1/32) are lifted, resized to 1/16 and added before the residual blocks::

        avgpool2(x) ──► stem, block0..9 ──► 1x1 (112→d) ──► resize ──► + 1x1 (112→d)(e4)

    The teacher dreams its coarse octaves first (at 1/2.7 of the size of use for the classic preset),
    so its largest structures are those the backbone draws on a smaller picture; the half-size pass
    shows the decoder that picture. It costs a quarter of the encoder's time more.
    """

    STEM_SCALE = 0.02  # the stem path's change per unit of its map: Adam's first steps move it about as
                       # far as they move the output stage's

    def __init__(self, config: GeneratorConfig | None = None, pretrained: bool = False):
        super().__init__()
        self.config = dataclasses.replace(config or GeneratorConfig(), version=3)
        self.config.validate()
        w, d, pad = self.config.width, self.config.deep, self.config.padding
        lite = EfficientNetLite("efficientnet-lite0")
        if pretrained:
            lite.load_state_dict(torch.load(default_weights_path(), map_location="cpu", weights_only=True))
        self.encoder = nn.Module()
        self.encoder._conv_stem, self.encoder._bn0, self.encoder._stem_act = lite._conv_stem, lite._bn0, lite._stem_act
        self.encoder._blocks = nn.ModuleList(lite._blocks[:ENCODER_BLOCKS])
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        chans = [b.spec.cout for b in self.encoder._blocks]
        c1, c2, c3, c4 = lite._bn0.num_features, chans[2], chans[4], chans[9]
        self.lift4 = nn.Conv2d(c4, d, 1)
        self.lift4_coarse = nn.Conv2d(c4, d, 1) if self.config.coarse else None
        self.blocks = nn.Sequential(*[ResidualBlock(d, dilation=2 ** (i % 4), padding=pad)
                                      for i in range(self.config.blocks)])
        self.reduce4 = nn.Conv2d(d, 4 * w, 1)
        self.skip3 = nn.Conv2d(c3, 4 * w, 1)
        self.mid = nn.Sequential(*[ResidualBlock(4 * w, dilation=1 + (i % 2), padding=pad)
                                   for i in range(self.config.mid_blocks)])
        self.reduce3 = nn.Conv2d(4 * w, 2 * w, 1)
        self.skip2 = nn.Conv2d(c2, 2 * w, 1)
        self.dec2 = SeparableConv(2 * w, 2 * w, padding=pad)
        self.reduce2 = nn.Conv2d(2 * w, w, 1)
        self.skip1 = nn.Conv2d(c1, w, 1)
        self.dec1 = SeparableConv(w, w, padding=pad)
        self.fine2 = nn.Sequential(*[ResidualBlock(2 * w, padding=pad) for _ in range(self.config.fine_blocks)])
        self.fine1 = nn.Sequential(*[ResidualBlock(w, padding=pad) for _ in range(self.config.fine_blocks)])
        for block in [*self.fine2, *self.fine1]:  # the identity at first: a trained filter can grow them
            nn.init.zeros_(block.conv2.pointwise.weight)
            nn.init.zeros_(block.conv2.pointwise.bias)
        self.head = nn.Conv2d(w, 8, 1)
        self.out = self.out_phases = self.out_picture = None
        if self.config.output == "phases":  # each 2x2 output block drawn from the half-size map freely
            self.out_phases = nn.Conv2d(8, 12, 3)
            self.out_picture = nn.Conv2d(3, 3, 3, padding=1, padding_mode=pad, bias=False)
            outs = [self.out_phases, self.out_picture]
        else:
            self.out = nn.Conv2d(8 + 3, 3, 3, padding=1, padding_mode=pad)
            outs = [self.out]
        for m in outs:  # zero at initialization: the untrained filter is the identity
            for t in m.parameters():
                nn.init.zeros_(t)
        self.to_stem = None
        if self.config.stem_path:  # zero at first: a trained filter grows it
            self.to_stem = nn.Conv2d(w, c1, 1)
            nn.init.zeros_(self.to_stem.weight)
            nn.init.zeros_(self.to_stem.bias)
        self.to_block0 = None
        if self.config.block0_path:  # zero at first, like the stem path
            spec = self.encoder._blocks[0].spec
            if (spec.expand, spec.stride, spec.kernel, spec.cin) != (1, 1, 3, c1):
                raise ValueError(f"the block0 path needs a block0 without expansion, stride 1, 3x3; got {spec}")
            self.to_block0 = nn.Conv2d(w, spec.cout, 1)
            nn.init.zeros_(self.to_block0.weight)
            nn.init.zeros_(self.to_block0.bias)
        self.tail: HalfSizeOutput | None = None
        self.train_encoder(False)

    def train_encoder(self, on: bool) -> None:
        """Let the encoder's weights learn too (``on``) or keep the backbone's frozen (the default). Its
        BatchNorm statistics stay the backbone's either way (eval mode: batches of a few crops would
        make poor statistics)."""
        self.encoder.requires_grad_(bool(on))
        self.encoder.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()
        if mode:
            self.tail = None  # the half-size output stage holds constants of the weights it was built from
        return self

    def half_size_output(self) -> "DreamNetB":
        """Compute the output stage at half size from now on (:class:`HalfSizeOutput`: the same numbers,
        less time; what ``fastdream export`` traces). Built from the current weights, for inference only:
        ``train()`` drops it."""
        if self.out is not None:  # the phases stage is at half size already
            self.tail = HalfSizeOutput(self.out, self.head.out_channels, self.config.padding)
        return self

    def load_generator(self, other: "DreamNetB") -> "DreamNetB":
        """Take ``other``'s weights. A ``resize`` output stage becomes this one's ``phases`` stage through
        :class:`HalfSizeOutput`'s phase kernel (the same pictures but along the one-pixel border), and fine
        blocks that ``other`` lacks start as the identity, so a trained filter can grow either and go on
        training from where it was."""
        state = other.state_dict()
        if self.config.output == "phases" and other.config.output == "resize":
            tail = HalfSizeOutput(other.out, other.head.out_channels, other.config.padding)
            state = {k: v for k, v in state.items() if not k.startswith("out.")}
            state.update({"out_phases.weight": tail.kernel, "out_phases.bias": tail.bias,
                          "out_picture.weight": tail.wx})
        elif self.config.output != other.config.output:
            raise ValueError(f"a {other.config.output} output stage cannot become a {self.config.output} one")
        if other.config.fine_blocks > self.config.fine_blocks:
            raise ValueError(f"{other.config.fine_blocks} fine blocks cannot become {self.config.fine_blocks}")
        if other.config.stem_path and not self.config.stem_path:
            raise ValueError("a generator with the stem path cannot lose it")
        if other.config.block0_path and not self.config.block0_path:
            raise ValueError("a generator with the block0 path cannot lose it")
        grown = [k for k in self.state_dict()
                 if k not in state and k.startswith(("fine1.", "fine2.", "to_stem.", "to_block0."))]
        missing, unexpected = self.load_state_dict(state, strict=False)
        if set(missing) != set(grown) or unexpected:
            raise ValueError(f"weights that do not fit: missing {missing}, unexpected {unexpected}")
        return self

    def _encode(self, x: torch.Tensor, keep_depthwise0: bool = False):
        """``x`` in [0, 1] -> the stem's output (1/2), each encoder block's in order, and block0's depthwise
        3x3 before its ReLU6 (``keep_depthwise0``; else None) for the block0 path's gate."""
        enc = self.encoder
        h = enc._stem_act(conv_bn(enc._conv_stem, enc._bn0, (x - self.mean) / self.std))  # BatchNorm folded
        stem, feats = h, []
        dw0 = enc._blocks[0].depthwise(h) if keep_depthwise0 else None
        for i, block in enumerate(enc._blocks):
            h = block(h, dw0) if i == 0 else block(h)
            feats.append(h)
        return stem, feats, dw0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, 3, H, W]
        H, W = x.shape[-2:]
        m = pad_multiple(self.config)
        ph, pw = (-H) % m, (-W) % m
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        e1, feats, dw0 = self._encode(xp, self.to_block0 is not None)     # e1 [B, 32, H/2, W/2]
        e2, e3, e4 = feats[2], feats[4], feats[9]                         # 1/4, 1/8, 1/16
        y = self.lift4(e4)                                                # [B, d, H/16, W/16]
        if self.lift4_coarse is not None:                                 # the half-size pass: 1/32 -> 1/16
            y = y + _resize_to(self.lift4_coarse(self._encode(F.avg_pool2d(xp, 2))[1][9]), e4)
        y = self.blocks(y)                                                # [B, d, H/16, W/16]
        y = self.mid(_resize_to(self.reduce4(y), e3) + self.skip3(e3))    # [B, 4w, H/8, W/8]
        y = self.fine2(F.relu(self.dec2(_resize_to(self.reduce3(y), e2) + self.skip2(e2))))   # [B, 2w, H/4, W/4]
        y = self.fine1(F.relu(self.dec1(_resize_to(self.reduce2(y), e1) + self.skip1(e1))))   # [B, w, H/2, W/2]
        g = self.to_stem(y) if self.to_stem is not None else None         # [B, 32, H/2, W/2]
        if self.to_block0 is not None:                                    # block0's map, carried to the stem's
            b = self.block0_vjp(self.to_block0(y), dw0)
            g = b if g is None else g + b
        y = self.head(y)                                                  # [B, 8, H/2, W/2]
        if self.out_phases is not None:                                   # 4 phases x 3 colours at 1/2
            delta = (F.pixel_shuffle(self.out_phases(F.pad(y, (1, 1, 1, 1), mode="replicate")), 2)
                     + self.out_picture(xp))
        elif self.tail is not None:                                       # the same, computed at half size
            delta = self.tail(y, xp)
        else:
            delta = self.out(torch.cat([_resize_to(y, xp), xp], 1))       # [B, 3, H, W]
        if g is not None:
            delta = delta + self.stem_vjp(g, e1, xp)
        if ph or pw:  # (not in the ONNX graph: the runtime pads to its multiples itself, so no crop is traced)
            delta = delta[..., :H, :W]
        return torch.clamp(x + delta, 0.0, 1.0)

    def block0_vjp(self, g: torch.Tensor, depthwise: torch.Tensor) -> torch.Tensor:
        """``J^T g``: the map ``g`` at block0's output ``[B, 16, H/2, W/2]`` carried back to the stem's
        output ``[B, 32, H/2, W/2]`` through block0 at the picture (the 1x1 projection transposed, ReLU6's
        gate where ``depthwise``, block0's depthwise 3x3 before its ReLU6 (``MBConvBlock.depthwise``, kept
        by the encoder pass), is strictly between 0 and 6, the depthwise 3x3 transposed; BatchNorms
        folded, SAME padding of a stride-1 3x3 is one pixel each side). The gradient of
        ``<block0(stem), g>`` with respect to the stem's output; tested against autograd."""
        blk = self.encoder._blocks[0]
        gate = ((depthwise > 0) & (depthwise < 6)).to(g.dtype)
        wp, _ = fold_bn(blk._project_conv, blk._bn2)                      # [16, 32, 1, 1]
        wd, _ = fold_bn(blk._depthwise_conv, blk._bn1)                    # [32, 1, 3, 3]
        a = F.conv_transpose2d(g, wp) * gate
        return F.conv_transpose2d(a, wd, padding=1, groups=wd.shape[0])

    def stem_vjp(self, g: torch.Tensor, stem: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``J^T g``: the map ``g`` at the stem's output ``[B, 32, H/2, W/2]`` carried back to the picture
        ``[B, 3, H, W]`` through the stem as it acts on ``x`` (ReLU6's gate where the activation ``stem``
        is strictly between 0 and 6, the stride-2 convolution transposed with its BatchNorm folded, its
        TensorFlow-style padding, the input normalization), scaled by ``STEM_SCALE``. It is what the
        gradient of ``<stem(x), g>`` with respect to ``x`` is, so it draws pixel-fine detail the way a
        dream's steps do; tested against autograd."""
        conv = self.encoder._conv_stem
        weight, _ = fold_bn(conv, self.encoder._bn0)                      # [32, 3, 3, 3]
        gate = ((stem > 0) & (stem < 6)).to(g.dtype)
        H, W = x.shape[-2:]
        (pt, _), (pl, _) = conv.same_pads((H, W))
        d = F.conv_transpose2d(g * gate, weight, stride=conv.stride)     # over the padded input
        d = d[..., pt:pt + H, pl:pl + W]
        return d * (self.STEM_SCALE / self.std)


def pad_multiple(config: GeneratorConfig) -> int:
    """The size steps a v3 generator pads its input to (and an exported graph of it needs): the encoder's
    total stride, twice that with the half-size pass (``coarse``)."""
    return 2 * STRIDE if config.coarse else STRIDE


def build_generator(config: GeneratorConfig, pretrained: bool = False) -> nn.Module:
    """The generator a config describes (``version`` 1: :class:`DreamGenerator`, 2: :class:`DreamNet`, 3:
    :class:`DreamNetB`, whose encoder starts from the embedded backbone's weights when ``pretrained``)."""
    if config.version == 3:
        return DreamNetB(config, pretrained=pretrained)
    return (DreamGenerator if config.version == 1 else DreamNet)(config)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
