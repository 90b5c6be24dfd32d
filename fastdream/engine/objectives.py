"""Composable dream objectives over the taps of a backbone.

An objective maps the tapped activations of a batch to one value per picture (``[B]``); the dream
climbs its gradient. Objectives add and scale like numbers (a negative weight suppresses):

>>> from fastdream.engine.objectives import Layer, Channel, ClassLogit
>>> obj = Layer("block9") + 0.5 * Channel("block11", [12, 40]) - ClassLogit(281)
>>> obj = Layer("block9").restrict(box=(0.0, 0.0, 0.5, 1.0))   # only the left half of the picture

Spatial objectives (layer, channel, neuron, class map, guide) are means over activation positions, so a
mask restricts them to a region; masks are given in picture coordinates and follow the jitter shift and
the tile window of every step.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from fastdream.errors import FastdreamError

LAYER_KINDS = ("l2", "mean", "l1", "abs_l2")


@dataclasses.dataclass
class Context:
    """Where the activations of one forward pass sit in the whole picture.

    ``full_size`` is the picture's (H, W); the network saw the picture rolled by ``shift`` (dy, dx),
    cropped to ``window`` (y0, x0, h, w) of the rolled picture (the whole picture when untiled).
    """

    full_size: tuple[int, int]
    shift: tuple[int, int] = (0, 0)
    window: tuple[int, int, int, int] | None = None
    image: torch.Tensor | None = None   # the network's input for this pass, [B, 3, h, w]
    backbone: object | None = None

    def win(self) -> tuple[int, int, int, int]:
        return self.window if self.window is not None else (0, 0, self.full_size[0], self.full_size[1])


class Objective:
    """Base class: ``taps()`` names the layers needed, ``__call__(acts, ctx)`` gives ``[B]`` values."""

    def taps(self) -> set[str]:
        raise NotImplementedError

    def __call__(self, acts: dict, ctx: Context) -> torch.Tensor:
        raise NotImplementedError

    # -- algebra ------------------------------------------------------------------------------
    def __add__(self, other):
        if isinstance(other, (int, float)) and other == 0:
            return self
        if not isinstance(other, Objective):
            return NotImplemented
        return Sum([(1.0, self), (1.0, other)])

    __radd__ = __add__

    def __mul__(self, w):
        if not isinstance(w, (int, float)):
            return NotImplemented
        return Sum([(float(w), self)])

    __rmul__ = __mul__

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-other)

    def restrict(self, mask=None, *, box=None) -> "Masked":
        """This objective only inside a region: ``box=(y0, x0, y1, x1)`` as fractions of the picture
        (0..1) or a mask tensor ``[H, W]`` (any size, resized; values in [0, 1])."""
        return Masked(self, mask=mask, box=box)


class Sum(Objective):
    def __init__(self, terms: Iterable[tuple[float, Objective]]):
        flat: list[tuple[float, Objective]] = []
        for w, o in terms:
            if isinstance(o, Sum):
                flat.extend((w * w2, o2) for w2, o2 in o.terms)
            else:
                flat.append((w, o))
        self.terms = flat

    def taps(self):
        out: set[str] = set()
        for _, o in self.terms:
            out |= o.taps()
        return out

    def __call__(self, acts, ctx):
        total = None
        for w, o in self.terms:
            v = w * o(acts, ctx)
            total = v if total is None else total + v
        return total

    def __repr__(self):
        return " + ".join(f"{w:g}*{o!r}" for w, o in self.terms)


class Spatial(Objective):
    """An objective that is the mean over positions of a per-position map ``[B, h, w]``."""

    layer: str

    def taps(self):
        return {self.layer}

    def value_map(self, act: torch.Tensor, ctx: Context) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, acts, ctx, mask: torch.Tensor | None = None):
        v = self.value_map(acts[self.layer], ctx)
        if mask is not None:
            v = v * mask
        return v.flatten(1).mean(1)


def _layer_value(a: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-position value ``[B, h, w]`` of activations ``[B, C, h, w]`` (channels averaged)."""
    if kind == "l2":
        return a.square().mean(1)
    if kind == "mean":
        return a.mean(1)
    if kind == "l1":
        return a.abs().mean(1)
    if kind == "abs_l2":
        return (a.abs() + a.square()).mean(1)
    raise FastdreamError(f"unknown layer objective kind {kind!r}; choose from {', '.join(LAYER_KINDS)}")


class Layer(Spatial):
    """Amplify a whole layer: mean of squared activations (the Inceptionism objective) by default;
    ``kind`` = l2 | mean | l1 | abs_l2."""

    def __init__(self, layer: str, kind: str = "l2"):
        if kind not in LAYER_KINDS:
            raise FastdreamError(f"unknown layer objective kind {kind!r}; choose from {', '.join(LAYER_KINDS)}")
        self.layer, self.kind = layer, kind

    def value_map(self, act, ctx):
        if act.dim() == 2:  # a vector layer (logits, pooled features): one "position"
            act = act[:, :, None, None]
        return _layer_value(act, self.kind)

    def __repr__(self):
        return f"Layer({self.layer!r}, {self.kind!r})"


class Channel(Spatial):
    """Amplify chosen channels of a layer."""

    def __init__(self, layer: str, channels: int | Sequence[int], kind: str = "mean"):
        self.layer = layer
        self.channels = [int(channels)] if isinstance(channels, int) else [int(c) for c in channels]
        if not self.channels:
            raise FastdreamError("Channel objective needs at least one channel")
        if kind not in LAYER_KINDS:
            raise FastdreamError(f"unknown channel objective kind {kind!r}; choose from {', '.join(LAYER_KINDS)}")
        self.kind = kind

    def value_map(self, act, ctx):
        if act.dim() == 2:
            act = act[:, :, None, None]
        n = act.shape[1]
        bad = [c for c in self.channels if not 0 <= c < n]
        if bad:
            raise FastdreamError(f"channel {bad[0]} is out of range for layer {self.layer!r} ({n} channels: 0..{n - 1})")
        return _layer_value(act[:, self.channels], self.kind)

    def __repr__(self):
        return f"Channel({self.layer!r}, {self.channels})"


class Neuron(Objective):
    """One unit: channel ``c`` of ``layer`` at activation position (y, x) of the unjittered picture
    (follows the picture under the jitter shift)."""

    def __init__(self, layer: str, channel: int, y: int, x: int):
        self.layer, self.channel, self.y, self.x = layer, int(channel), int(y), int(x)

    def taps(self):
        return {self.layer}

    def __call__(self, acts, ctx):
        a = acts[self.layer]
        if a.dim() == 2:
            return a[:, self.channel]
        B, C, h, w = a.shape
        if not 0 <= self.channel < C:
            raise FastdreamError(f"channel {self.channel} is out of range for layer {self.layer!r} ({C} channels)")
        H, W = ctx.full_size
        y0, x0, wh, ww = ctx.win()
        sy, sx = wh / h, ww / w  # picture pixels per activation cell
        # the unit's picture position, moved by the jitter, then into this window's activation grid
        py = ((self.y + 0.5) * sy + ctx.shift[0]) % H - y0
        px = ((self.x + 0.5) * sx + ctx.shift[1]) % W - x0
        iy, ix = int(math.floor(py / sy)), int(math.floor(px / sx))
        if not (0 <= iy < h and 0 <= ix < w):
            return a.new_zeros(B)  # the unit is outside this tile
        return a[:, self.channel, iy, ix]

    def __repr__(self):
        return f"Neuron({self.layer!r}, {self.channel}, {self.y}, {self.x})"


class ClassLogit(Spatial):
    """A class logit, by index or by ImageNet class name (``ClassLogit("jellyfish")``). On backbones that can score every position (the default backbone's
    head is a 1x1 conv + global average pool + linear layer, so the logit is the mean of per-position
    logits), it is spatial and can be masked to a region; otherwise it uses the ``logits`` tap."""

    def __init__(self, index: int | str, name: str | None = None):
        if isinstance(index, str) and not index.strip().isdigit():  # a name, as the command line takes
            from fastdream.backbones.classes import imagenet_classes

            try:
                i = imagenet_classes().index(index)
            except FastdreamError as e:
                raise FastdreamError(f"ClassLogit: {e} (names are ImageNet's; for a backbone with classes of "
                                     "its own pass backbone.class_index(name))") from None
            index, name = i, name or imagenet_classes()[i]
        elif isinstance(index, bool) or not isinstance(index, (int, str)) and not hasattr(index, "__index__"):
            raise FastdreamError(f"ClassLogit: expected a class index or an ImageNet class name, got {index!r}")
        self.index, self.name = int(index), name
        self.layer = "logits"

    def taps(self):
        return {"class_map"}

    def value_map(self, act, ctx):
        if act.dim() == 2:
            return act[:, self.index, None, None]
        return act[:, self.index]

    def __call__(self, acts, ctx, mask=None):
        return Spatial.__call__(self, {"logits": acts["class_map"]}, ctx, mask)

    def __repr__(self):
        return f"ClassLogit({self.index}{', ' + repr(self.name) if self.name else ''})"


class Guide(Spatial):
    """Make the dream's features at ``layer`` resemble a guide picture's (the guided hallucination of
    the original DeepDream notebook): every dream position is matched to the guide feature with the
    largest dot product, and pulled towards it by ``similarity`` = dot | l1 | l2."""

    def __init__(self, layer: str, guide_features: torch.Tensor, similarity: str = "dot"):
        if similarity not in ("dot", "l1", "l2"):
            raise FastdreamError(f"unknown guide similarity {similarity!r}; choose from dot, l1, l2")
        self.layer, self.similarity = layer, similarity
        g = guide_features.detach()
        if g.dim() == 4:
            g = g[0]
        self.guide = g.flatten(1)  # [C, N]

    def value_map(self, act, ctx):
        B, C, h, w = act.shape
        g = self.guide.to(device=act.device, dtype=act.dtype)
        if g.shape[0] != C:
            raise FastdreamError(f"guide features have {g.shape[0]} channels, layer {self.layer!r} has {C}")
        x = act.flatten(2)  # [B, C, hw]
        with torch.no_grad():
            idx = torch.einsum("bcn,cm->bnm", x, g).argmax(-1)  # [B, hw]
        y = g.t()[idx].transpose(1, 2)  # [B, C, hw] matched guide features
        if self.similarity == "dot":
            v = (x * y).sum(1)
        elif self.similarity == "l2":
            v = -(x - y).square().sum(1)
        else:
            v = -(x - y).abs().sum(1)
        return (v / C).view(B, h, w)

    def __repr__(self):
        return f"Guide({self.layer!r}, {self.similarity!r})"


class PixelGuide(Objective):
    """Pull the picture's pixels towards a guide picture's (negative mean squared difference)."""

    def __init__(self, guide: torch.Tensor):
        self.guide = guide.detach()  # [1, 3, H, W] in [0, 1]

    def taps(self):
        return set()

    def __call__(self, acts, ctx):
        x = ctx.image
        H, W = ctx.full_size
        g = self.guide.to(x.device, x.dtype)
        if g.shape[-2:] != (H, W):
            g = F.interpolate(g, size=(H, W), mode="bilinear", align_corners=False, antialias=True)
        g = torch.roll(g, shifts=ctx.shift, dims=(2, 3))
        y0, x0, h, w = ctx.win()
        g = g[..., y0:y0 + h, x0:x0 + w]
        return -(x - g).square().flatten(1).mean(1)


class Masked(Objective):
    """An objective restricted to a region of the picture."""

    def __init__(self, inner: Objective, mask=None, box=None):
        if (mask is None) == (box is None):
            raise FastdreamError("restrict() takes a mask or a box, not both or neither")
        if box is not None:
            y0, x0, y1, x1 = (float(v) for v in box)
            if not (0 <= y0 < y1 <= 1 and 0 <= x0 < x1 <= 1):
                raise FastdreamError(f"box {box} must be fractions 0 <= y0 < y1 <= 1, 0 <= x0 < x1 <= 1")
        self.inner, self.box = inner, box
        self.mask = None if mask is None else torch.as_tensor(mask, dtype=torch.float32).squeeze()
        if self.mask is not None and self.mask.dim() != 2:
            raise FastdreamError(f"a mask must be a 2-d picture, got shape {tuple(self.mask.shape)}")
        self._cache: dict = {}

    def taps(self):
        return self.inner.taps()

    def _full_mask(self, H, W, device):
        key = (H, W, str(device))
        if key not in self._cache:
            if self.box is not None:
                y0, x0, y1, x1 = self.box
                m = torch.zeros(H, W)
                m[int(round(y0 * H)):max(int(round(y1 * H)), int(round(y0 * H)) + 1),
                  int(round(x0 * W)):max(int(round(x1 * W)), int(round(x0 * W)) + 1)] = 1.0
                # feathered edges (about 3% of the picture), so the region blends into the rest
                k = max(1, int(0.03 * min(H, W))) * 2 + 1
                if k > 1:
                    m = F.avg_pool2d(m[None, None], k, stride=1, padding=k // 2, count_include_pad=False)[0, 0]
            else:
                m = F.interpolate(self.mask[None, None], size=(H, W), mode="bilinear",
                                  align_corners=False)[0, 0].clamp(0, 1)
            self._cache = {key: m.to(device)}
        return self._cache[key]

    def pixel_mask(self, ctx: Context, device) -> torch.Tensor:
        """The region in the network input's pixels (rolled by the jitter, cut to the tile): [h, w]."""
        H, W = ctx.full_size
        m = torch.roll(self._full_mask(H, W, device), shifts=ctx.shift, dims=(0, 1))
        y0, x0, h, w = ctx.win()
        return m[y0:y0 + h, x0:x0 + w]

    def mask_for(self, hw: tuple[int, int], ctx: Context, device) -> torch.Tensor:
        H, W = ctx.full_size
        m = torch.roll(self._full_mask(H, W, device), shifts=ctx.shift, dims=(0, 1))
        y0, x0, h, w = ctx.win()
        m = m[y0:y0 + h, x0:x0 + w]
        return F.adaptive_avg_pool2d(m[None, None], hw)[0]  # [1, h', w'] broadcast over the batch

    def __call__(self, acts, ctx):
        inner = self.inner
        if isinstance(inner, Spatial):
            layer = "class_map" if isinstance(inner, ClassLogit) else inner.layer
            a = acts[layer]
            if a.dim() == 4:
                return inner(acts, ctx, mask=self.mask_for(a.shape[-2:], ctx, a.device))
        raise FastdreamError(f"{inner!r} has no spatial map on this backbone, so it cannot be restricted "
                             "to a region")

    def __repr__(self):
        return f"Masked({self.inner!r}, box={self.box})"


def collect_taps(obj: Objective) -> list[str]:
    return sorted(obj.taps())
