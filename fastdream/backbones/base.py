"""The :class:`Backbone` wrapper: a frozen CNN with named taps, its own input normalization, class names.

A tap is the output of one submodule. ``forward_taps`` hooks the requested submodules and stops the
forward pass as soon as every requested tap has been computed, so DeepDream at a middle layer pays only
for the layers up to it. ``"logits"`` is the network's output and runs the whole network.
"""
from __future__ import annotations

import copy
from typing import Iterable, Sequence

import torch
from torch import nn

from fastdream.backbones.classes import ClassNames
from fastdream.errors import FastdreamError, suggest
from fastdream.precision import autocast

LOGITS = "logits"
# Per-position class logits [B, K, h, w] where the classifier is a linear layer over globally averaged
# features (then its mean over positions is the logits); other backbones give the logits [B, K].
CLASS_MAP = "class_map"
# The DeepInversion statistic [B]: at the input of every BatchNorm layer that ran, the distance of each
# picture's per-channel mean and variance (over positions) to the layer's running statistics.
BN_STATS = "bn_stats"


def bn_statistic(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor) -> torch.Tensor:
    """DeepInversion's BatchNorm statistic per picture (Yin et al., CVPR 2020): ``x`` ``[B, C, H, W]``, the
    running statistics ``[C]``; returns ``[B]`` = ||mean(x) - running_mean||_2 + ||var(x) - running_var||_2,
    the mean and (biased) variance taken over each picture's positions, in float32."""
    x = x.float()
    mean = x.mean(dim=(2, 3))                                     # [B, C]
    var = (x - mean[:, :, None, None]).square().mean(dim=(2, 3))  # [B, C]
    return (torch.linalg.vector_norm(mean - running_mean.float(), dim=1)
            + torch.linalg.vector_norm(var - running_var.float(), dim=1))


class _TapsComplete(Exception):
    """Raised from a forward hook once every requested tap is captured; ends the forward pass early."""


class Backbone(nn.Module):
    """A network to dream with: RGB images in [0, 1] in, named feature maps out.

    Args:
        model: the network; ``model(x)`` gets the *normalized* image and returns logits ``[B, K]``
            (or any tensor: it is the ``"logits"`` tap).
        taps: tap name -> submodule path in ``model.named_modules()``, in execution order where known.
        name: what to call it in messages and reports (``"efficientnet-lite0"``).
        class_names: names of the model's outputs (``ClassNames`` or a list of names); None: numbered.
        mean, std: per-channel input normalization applied inside, on [0, 1] images.
        aliases: extra tap names -> tap names (``stage3`` -> ``block4``).
        arch: the built-in architecture name, when the model is one (makes ``save_checkpoint`` work).

    >>> bb = load_backbone()                           # EfficientNet-Lite0, ImageNet
    >>> x = torch.rand(1, 3, 224, 224)                 # [B, 3, H, W] in [0, 1]
    >>> bb.forward_taps(x, ["block5"])["block5"].shape
    torch.Size([1, 80, 14, 14])
    """

    def __init__(
        self,
        model: nn.Module,
        taps: dict[str, str],
        *,
        name: str,
        class_names: ClassNames | Sequence[str] | None = None,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        aliases: dict[str, str] | None = None,
        arch: str | None = None,
    ):
        super().__init__()
        self.model = model
        self.name = name
        self.arch = arch
        modules = dict(model.named_modules())
        for tap, path in taps.items():
            if path not in modules:
                raise FastdreamError(suggest(path, [p for p in modules if p], f"{name} layer"))
        self._taps = {k: v for k, v in taps.items() if k != LOGITS}
        self._aliases = dict(aliases or {})
        if len(mean) != 3 or len(std) != 3 or any(float(s) == 0.0 for s in std):
            raise FastdreamError(f"mean and std need 3 values each (std non-zero), got mean={mean} std={std}")
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([float(s) for s in std]).view(1, 3, 1, 1), persistent=False)
        self.classes: ClassNames | None = None
        self.set_class_names(class_names)
        self.freeze()

    # -- setup ---------------------------------------------------------------------------------

    def freeze(self) -> "Backbone":
        """Eval mode and ``requires_grad=False`` on every parameter (gradients flow to the input only)."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def set_class_names(self, class_names: ClassNames | Sequence[str] | None) -> None:
        if class_names is None:
            self.classes = None
        elif isinstance(class_names, ClassNames):
            self.classes = class_names
        else:
            self.classes = ClassNames.from_names(list(class_names))

    # -- taps ----------------------------------------------------------------------------------

    def tap_names(self) -> list[str]:
        """Tappable names in execution order (where known), ending with ``"logits"``."""
        return [*self._taps, LOGITS]

    @property
    def aliases(self) -> dict[str, str]:
        return dict(self._aliases)

    def _class_map_parts(self):
        """(tap, linear layer) for per-position class logits, or (``logits``, None) when the model's
        classifier is not a linear layer over averaged features."""
        fc = getattr(self.model, "_fc", None)
        if isinstance(fc, torch.nn.Linear) and "head" in self._taps:
            return "head", fc
        return LOGITS, None

    def channels(self, name: str) -> int:
        """Number of channels of tap ``name`` (from a forward at 224 pixels, cached)."""
        if not hasattr(self, "_channels_cache"):
            self._channels_cache = {n: shape[0] for n, shape in self.layers(224)}
        return self._channels_cache[self.resolve_tap(name)]

    def resolve_tap(self, name: str) -> str:
        """The canonical tap name for ``name`` (an alias resolves to its tap); unknown names raise."""
        if name in self._taps or name == LOGITS:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise FastdreamError(suggest(name, [*self.tap_names(), *self._aliases], f"{self.name} layer"))

    def _check_input(self, x) -> None:
        if not isinstance(x, torch.Tensor):
            raise FastdreamError(f"backbone input must be a torch.Tensor [B, 3, H, W], got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise FastdreamError(f"backbone input must be [B, 3, H, W] RGB, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise FastdreamError(f"backbone input must be float in [0, 1], got {x.dtype}")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] in [0, 1] -> model input
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` for RGB images ``x: [B, 3, H, W]`` in [0, 1]."""
        self._check_input(x)
        return self.model(self.normalize(x))

    def forward_taps(self, x: torch.Tensor, taps: Iterable[str], precision: str = "fp32") -> dict[str, torch.Tensor]:
        """Feature maps of the named taps for ``x: [B, 3, H, W]`` (RGB, [0, 1]); keys as requested.

        The forward pass stops once all requested taps are computed (``"logits"`` runs it to the end).
        Autograd works through the result: ``out["block5"].mean().backward()`` fills ``x.grad``.
        A submodule that runs more than once in one forward is tapped at its first call.
        ``precision`` (``fp32``, ``bf16``, ``fp16``; see :mod:`fastdream.precision`): the network runs
        under autocast at that precision; the taps come back as float32 either way.
        """
        requested = list(dict.fromkeys(taps))
        if not requested:
            raise FastdreamError("no taps requested")
        if CLASS_MAP in requested:
            head, fc = self._class_map_parts()
            rest = [t for t in requested if t != CLASS_MAP]
            inner = self.forward_taps(x, list(dict.fromkeys([*rest, head])), precision)
            if fc is None:
                cmap = inner[head]
            else:
                cmap = torch.nn.functional.conv2d(inner[head], fc.weight[:, :, None, None], fc.bias)
            return {t: (cmap if t == CLASS_MAP else inner[t]) for t in requested}
        self._check_input(x)
        want_bn = BN_STATS in requested
        canon = {t: self.resolve_tap(t) for t in requested if t != BN_STATS}
        wanted = {c for c in canon.values() if c != LOGITS}
        captured: dict[str, torch.Tensor] = {}
        # BN statistics alone: every BatchNorm layer, so the whole network runs
        stop_early = LOGITS not in canon.values() and bool(wanted)
        handles = []
        bn_terms: list[torch.Tensor] = []

        def make_hook(tap: str):
            def hook(_module, _inputs, output):
                if tap in captured:
                    return
                if not isinstance(output, torch.Tensor):
                    raise FastdreamError(
                        f"layer {tap!r} of {self.name} returns {type(output).__name__}, not a tensor; tap another layer"
                    )
                captured[tap] = output
                if stop_early and len(captured) == len(wanted):
                    raise _TapsComplete

            return hook

        try:
            for tap in wanted:
                module = self.model.get_submodule(self._taps[tap])
                handles.append(module.register_forward_hook(make_hook(tap)))
            if want_bn:
                layers = self.batchnorm_layers()
                if not layers:
                    raise FastdreamError(f"{self.name} has no BatchNorm layers with running statistics (folded "
                                         "into the convolutions?), so the BatchNorm prior cannot be used with it")
                for bn in layers:
                    handles.append(bn.register_forward_pre_hook(
                        lambda m, inputs: bn_terms.append(bn_statistic(inputs[0], m.running_mean, m.running_var))))
            try:
                with autocast(precision, x.device):
                    logits = self.model(self.normalize(x))
            except _TapsComplete:
                logits = None
        finally:
            for h in handles:
                h.remove()
        missing = wanted - captured.keys()
        if missing:
            raise FastdreamError(f"layers {sorted(missing)} of {self.name} did not run in the forward pass")
        out = {}
        for t in requested:
            if t == BN_STATS:
                out[t] = torch.stack(bn_terms).sum(0)
            else:
                v = logits if canon[t] == LOGITS else captured[canon[t]]
                out[t] = v.float() if v is not None and v.dtype != torch.float32 and v.is_floating_point() else v
        return out

    def batchnorm_layers(self) -> list[nn.Module]:
        """The BatchNorm layers that carry running statistics, in definition order."""
        return [m for m in self.model.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
                and m.running_var is not None]

    META_PIXELS = 1024 * 1024

    @torch.no_grad()
    def layers(self, size: int | tuple[int, int] = 224) -> list[tuple[str, tuple[int, ...]]]:
        """``[(tap name, output shape without batch), ...]`` for one ``size`` (or ``(H, W)``) input.

        Shapes come from a forward pass on a zero image; above ``META_PIXELS`` pixels it runs on the
        meta device instead (no compute or memory, but a few seconds of one-time setup).
        """
        h, w = (size, size) if isinstance(size, int) else size
        if h < 1 or w < 1:
            raise FastdreamError(f"input size must be positive, got {size}")
        names = self.tap_names()
        out = None
        if h * w > self.META_PIXELS:
            try:
                meta = copy.deepcopy(self).to("meta")
                out = meta.forward_taps(torch.zeros(1, 3, h, w, device="meta"), names)
            except FastdreamError:
                raise
            except Exception:  # a model that cannot run on meta: compute for real
                out = None
        if out is None:
            out = self.forward_taps(torch.zeros(1, 3, h, w, device=self.mean.device), names)
        return [(n, tuple(out[n].shape[1:])) for n in names]

    # -- classes -------------------------------------------------------------------------------

    @property
    def class_names(self) -> list[str]:
        """Display names of the outputs, in index order (numbered when the model has none)."""
        if self.classes is None:
            return [f"class {i}" for i in range(self.num_classes)] if self.num_classes else []
        return list(self.classes.names)

    @property
    def num_classes(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        n = getattr(self.model, "num_classes", None)
        if isinstance(n, int):
            return n
        last = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        return last[-1].out_features if last else 0

    def class_index(self, name_or_index) -> int:
        """Output index for a class name (case-insensitive, synonyms too) or an index."""
        classes = self.classes if self.classes is not None else ClassNames.numbered(self.num_classes)
        return classes.index(name_or_index)

    def replace_classifier(self, class_names: Sequence[str]) -> None:
        """A fresh, trainable classifier for ``class_names`` (built-in architectures only)."""
        if not hasattr(self.model, "reset_classifier"):
            raise FastdreamError(f"{self.name} has no replaceable classifier")
        self.model.reset_classifier(len(class_names))
        self.set_class_names(class_names)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, taps={len(self._taps) + 1}, classes={self.num_classes}"
