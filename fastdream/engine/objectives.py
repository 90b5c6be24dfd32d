"""Composable dream objectives over the taps of a backbone.

An objective maps the tapped activations of a batch to one value per picture (``[B]``); the dream
climbs its gradient. Objectives add and scale like numbers (a negative weight suppresses):

>>> from fastdream.engine.objectives import Layer, Channel, ClassLogit
>>> obj = Layer("block9") + 0.5 * Channel("block11", [12, 40]) - ClassLogit(281)
>>> obj = Layer("block9").restrict(box=(0.0, 0.0, 0.5, 1.0))   # only the left half of the picture

A box is ``(x0, y0, x1, y1)`` as fractions of the picture (0..1), the order of the command line and of
PIL, everywhere (``Box`` names the fields).

Spatial objectives (layer, channel, neuron, class map, guide) are means over activation positions, so a
mask restricts them to a region; masks are given in picture coordinates and follow the jitter shift and
the tile window of every step.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, NamedTuple, Sequence

import torch
import torch.nn.functional as F

from fastdream.errors import FastdreamError

LAYER_KINDS = ("l2", "mean", "l1", "abs_l2")


class Box(NamedTuple):
    """A box as fractions of the picture (0..1): ``x0, y0`` its top left corner, ``x1, y1`` its bottom
    right one; the order of the command line (``@x0,y0,x1,y1``) and of PIL. Any 4-sequence in this order
    works where a box is taken."""

    x0: float
    y0: float
    x1: float
    y1: float

    def pixels(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` in pixels of a picture of ``size`` (H, W)."""
        H, W = size
        return self.x0 * W, self.y0 * H, self.x1 * W, self.y1 * H


BOX_ORDER_NOTE = ("a box is (x0, y0, x1, y1), fractions of the picture, the order of the command line and of PIL "
                  "(fastdream 0.1 took (y0, x0, y1, x1) in Python: swap the pairs of such a box)")


def as_box(box, what: str = "box") -> Box:
    """``box`` (any 4 numbers ``x0, y0, x1, y1``, fractions) as a checked :class:`Box`. The old Python
    order ``(y0, x0, y1, x1)`` cannot be told apart by value (a box valid in one order is valid in the
    other), so a bad box's message says which order is meant."""
    try:
        vals = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise FastdreamError(f"{what} {box!r}: expected 4 numbers; {BOX_ORDER_NOTE}") from None
    if len(vals) != 4:
        raise FastdreamError(f"{what} {box!r}: expected 4 numbers, got {len(vals)}; {BOX_ORDER_NOTE}")
    x0, y0, x1, y1 = vals
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise FastdreamError(f"{what} {tuple(box)} must be fractions 0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1; "
                             f"{BOX_ORDER_NOTE}")
    return Box(x0, y0, x1, y1)


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
    generator: torch.Generator | None = None  # random draws of view augmentations (None: no augmentation)

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
        """This objective only inside a region: ``box=(x0, y0, x1, y1)`` as fractions of the picture
        (0..1, a :class:`Box`) or a mask tensor ``[H, W]`` (any size, resized; values in [0, 1])."""
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
    logits), it is spatial and can be masked to a region; otherwise it uses the ``logits`` tap.

    ``log_prob=True``: the log-probability (log-softmax of the logits, averaged over the positions or
    the region) instead of the logit, so that the class also has to win over every other class."""

    def __init__(self, index: int | str, name: str | None = None, log_prob: bool = False):
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
        self.index, self.name, self.log_prob = int(index), name, bool(log_prob)
        self.layer = "logits"

    def taps(self):
        return {"class_map"}

    def value_map(self, act, ctx):
        if act.dim() == 2:
            return act[:, self.index, None, None]
        return act[:, self.index]

    def __call__(self, acts, ctx, mask=None):
        if not self.log_prob:
            return Spatial.__call__(self, {"logits": acts["class_map"]}, ctx, mask)
        a = acts["class_map"]
        if a.dim() == 4:
            a = (a * mask[:, None]).mean((2, 3)) / mask.mean().clamp_min(1e-8) if mask is not None else a.mean((2, 3))
        return a.log_softmax(1)[:, self.index]

    def __repr__(self):
        extra = (f", {self.name!r}" if self.name else "") + (", log_prob=True" if self.log_prob else "")
        return f"ClassLogit({self.index}{extra})"


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
            box = as_box(box)
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
                x0, y0, x1, y1 = self.box
                m = torch.zeros(H, W)
                m[int(round(y0 * H)):max(int(round(y1 * H)), int(round(y0 * H)) + 1),
                  int(round(x0 * W)):max(int(round(x1 * W)), int(round(x0 * W)) + 1)] = 1.0
                # feathered edges (about 3% of the picture), so the region blends into the rest
                k = max(1, int(0.03 * min(H, W))) * 2 + 1
                if k > 1:
                    m = F.avg_pool2d(m[None, None], k, stride=1, padding=k // 2, count_include_pad=False)[0, 0]
            else:
                m = _resized_mask(self.mask, H, W)
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
        return f"Masked({self.inner!r}, box={None if self.box is None else tuple(self.box)})"


def collect_taps(obj: Objective) -> list[str]:
    return sorted(obj.taps())


# -- image priors ------------------------------------------------------------------------------------


def tv_penalty(x: torch.Tensor, beta: float = 2.0, seam: tuple[int, int] | None = None) -> torch.Tensor:
    """Mean total variation ``((dx)^2 + (dy)^2)^(beta/2)`` of ``x`` ``[B, 3, H, W]`` (per picture ``[B]``).

    ``seam`` (row, column): where a rolled picture's wrap-around lies (the first row and column of the
    picture before the roll); differences across it are left out, so the prior does not pull the
    picture's opposite borders together."""
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    d2 = dx * dx + dy * dy                                # [B, 3, H-1, W-1]
    v = d2 if beta == 2.0 else (d2 + 1e-8).pow(beta / 2)
    if seam is not None:
        keep = torch.ones(v.shape[-2:], dtype=v.dtype, device=v.device)
        r, c = seam
        if 1 <= r < x.shape[-2]:
            keep[r - 1, :] = 0
        if 1 <= c < x.shape[-1]:
            keep[:, c - 1] = 0
        v = v * keep
    return v.flatten(1).mean(1)


def alpha_penalty(x: torch.Tensor, alpha: float = 6.0) -> torch.Tensor:
    """Mean ``|2x - 1|^alpha`` of ``x`` ``[B, 3, H, W]`` in [0, 1] (per picture ``[B]``): with alpha = 2 the
    L2 prior, with a large alpha a soft bound on the pixel range."""
    return (2 * x - 1).abs().pow(alpha).flatten(1).mean(1)


class Prior(Objective):
    """A natural-image prior: a penalty ``[B]`` subtracted from the objective, ``weight`` times."""

    def __init__(self, weight: float = 1.0):
        weight = float(weight)
        if not (math.isfinite(weight) and weight >= 0):
            raise FastdreamError(f"{type(self).__name__} weight must be a number >= 0, got {weight!r}")
        self.weight = weight

    def taps(self):
        return set()

    def penalty(self, acts, ctx) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, acts, ctx):
        return -self.weight * self.penalty(acts, ctx)

    def __repr__(self):
        return f"{type(self).__name__}({self.weight:g})"


class BNPrior(Prior):
    """The BatchNorm-statistics prior of DeepInversion (Yin et al., CVPR 2020): at the input of every
    BatchNorm layer the network ran, the picture's per-channel mean and variance are pulled towards the
    layer's running statistics (what the training photos gave), ``sum_l ||mu_l - mu_run|| + ||var_l -
    var_run||``. Needs a backbone whose BatchNorm layers are not folded into the convolutions."""

    def taps(self):
        return {"bn_stats"}

    def penalty(self, acts, ctx):
        return acts["bn_stats"]


class TVPrior(Prior):
    """Total variation (``beta`` = 2: squared differences of neighbouring pixels): smooth regions."""

    def __init__(self, weight: float = 1.0, beta: float = 2.0):
        super().__init__(weight)
        self.beta = float(beta)

    def penalty(self, acts, ctx):
        seam = None
        if ctx.shift != (0, 0):
            H, W = ctx.full_size
            y0, x0, _, _ = ctx.win()
            seam = ((ctx.shift[0] - y0) % H, (ctx.shift[1] - x0) % W)
        return tv_penalty(ctx.image, self.beta, seam)


class L2Prior(Prior):
    """The L2 image prior: mean of ``(2x - 1)^2``, pixels kept from the extremes of [0, 1]."""

    def penalty(self, acts, ctx):
        return alpha_penalty(ctx.image, 2.0)


# -- objects in boxes ---------------------------------------------------------------------------------


def _resized_mask(mask: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """A mask picture ``[h, w]`` in [0, 1] resized to ``[H, W]`` (bilinear)."""
    return F.interpolate(mask[None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)


def _feathered_box(H: int, W: int, box, inward: bool = True) -> torch.Tensor:
    """A box ``(x0, y0, x1, y1)`` as fractions -> a mask ``[H, W]``: 1 inside, a linear ramp of about 3 %
    of the picture inside its edges (nothing outside changes), at least one pixel."""
    x0, y0, x1, y1 = box
    r0, r1 = int(round(y0 * H)), max(int(round(y1 * H)), int(round(y0 * H)) + 1)
    c0, c1 = int(round(x0 * W)), max(int(round(x1 * W)), int(round(x0 * W)) + 1)
    ramp = max(1.0, 0.03 * min(H, W))
    ys = torch.arange(H, dtype=torch.float32) + 0.5
    xs = torch.arange(W, dtype=torch.float32) + 0.5
    # distance inside the edges, in pixels, less one pixel: the octaves' upsampling of the detail
    # spreads it by about a pixel, which then still falls inside the box
    dy = torch.minimum(ys - r0, r1 - ys) - 1.0
    dx = torch.minimum(xs - c0, c1 - xs) - 1.0
    my = (dy / ramp).clamp(0, 1)
    mx = (dx / ramp).clamp(0, 1)
    return my[:, None] * mx[None, :]


class BoxView(Objective):
    """An objective evaluated on a zoomed view of one region of the picture: the region (a box, or the
    bounding box of a mask) is cut out, resized so that it holds about ``size * size`` pixels (its aspect
    kept) and, while dreaming, moved by a random fraction ``jitter`` of its size, scaled by a random
    factor in ``scale`` and mirrored at random (transformation robustness); the backbone sees only
    this view, and the gradient reaches only the region's pixels (``pixel_mask``: feathered inwards).
    ``backbone``: the network that sees the view (default: the dream's own, from the context); another
    network of the same classes makes the view a second opinion (``dream_objective``'s class backbones).

    The network then sees the object at the scale it was trained on whatever the box's size, the
    rest of the picture stays as it was, and priors inside ``inner`` (``BNPrior``...) judge the view.

    >>> obj = BoxView(ClassLogit(107) + BNPrior(0.01), box=(0.5, 0.1, 0.95, 0.6))   # (x0, y0, x1, y1)
    """

    whole_picture = True  # needs the whole picture, not one tile

    def __init__(self, inner: Objective, box=None, mask=None, *, size: int = 224, jitter: float = 0.06,
                 scale: tuple[float, float] = (0.9, 1.1), flip: bool = True, views: int = 1,
                 rotate: float = 0.0, backbone=None):
        if (mask is None) == (box is None):
            raise FastdreamError("BoxView takes a mask or a box, not both or neither")
        self.mask = None
        if mask is not None:
            self.mask = torch.as_tensor(mask, dtype=torch.float32).squeeze()
            if self.mask.dim() != 2:
                raise FastdreamError(f"a mask must be a 2-d picture, got shape {tuple(self.mask.shape)}")
            inside = (self.mask > 0.5).nonzero()
            if inside.numel() == 0:
                raise FastdreamError("the mask is empty (no pixel above 0.5)")
            h, w = self.mask.shape
            box = (float(inside[:, 1].min()) / w, float(inside[:, 0].min()) / h,
                   float(inside[:, 1].max() + 1) / w, float(inside[:, 0].max() + 1) / h)
        box = as_box(box)
        if not 16 <= int(size) <= 4096 or int(views) < 1:
            raise FastdreamError(f"BoxView needs size 16..4096 and views >= 1, got {size}, {views}")
        if not 0.0 <= float(rotate) <= 45.0:
            raise FastdreamError(f"BoxView's rotate is a largest angle in degrees, 0..45, got {rotate}")
        self.inner, self.box = inner, box
        self.size, self.jitter, self.scale, self.flip, self.views = int(size), float(jitter), tuple(scale), flip, int(views)
        self.rotate = float(rotate)
        if backbone is not None and not hasattr(backbone, "forward_taps"):
            raise FastdreamError(f"BoxView's backbone must be a Backbone, got {type(backbone).__name__}")
        self.backbone = backbone
        self._cache: dict = {}

    def taps(self):
        return set()  # the view has its own forward pass

    def _full_mask(self, H, W, device):
        key = (H, W, str(device))
        if key not in self._cache:
            if self.mask is None:
                m = _feathered_box(H, W, self.box)
            else:
                m = _resized_mask(self.mask, H, W)
            self._cache = {key: m.to(device)}
        return self._cache[key]

    def pixel_mask(self, ctx: Context, device) -> torch.Tensor:
        """Where the gradient may change the network input (rolled by the jitter): ``[h, w]``."""
        H, W = ctx.full_size
        m = self._full_mask(H, W, device)
        return torch.roll(m, shifts=ctx.shift, dims=(0, 1)) if ctx.shift != (0, 0) else m

    def view_size(self, H: int, W: int) -> tuple[int, int]:
        x0, y0, x1, y1 = self.box
        bh, bw = (y1 - y0) * H, (x1 - x0) * W
        s = self.size / math.sqrt(bh * bw)
        return max(16, round(bh * s)), max(16, round(bw * s))

    def view(self, picture: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The view(s) ``[views * B, 3, vh, vw]`` of ``picture`` ``[B, 3, H, W]`` (unrolled); random
        moves, scales and mirrors from ``generator`` (None: the box as it is)."""
        H, W = picture.shape[-2:]
        n = self.views if generator is not None else 1
        views, _ = sample_views(picture, self.box, self.view_size(H, W), n, generator, self.jitter, self.scale,
                                self.flip, self.rotate)
        return views

    def __call__(self, acts, ctx):
        if ctx.window is not None and tuple(ctx.window[2:]) != tuple(ctx.full_size):
            raise FastdreamError("BoxView needs the whole picture, not one tile")
        backbone = self.backbone if self.backbone is not None else ctx.backbone
        if backbone is None:
            raise FastdreamError("BoxView needs the backbone in its context")
        x = ctx.image
        picture = torch.roll(x, shifts=(-ctx.shift[0], -ctx.shift[1]), dims=(2, 3)) if ctx.shift != (0, 0) else x
        v = self.view(picture, ctx.generator)
        taps = sorted(self.inner.taps())
        vacts = backbone.forward_taps(v, taps) if taps else {}
        vctx = Context(full_size=tuple(v.shape[-2:]), image=v, backbone=backbone)
        vals = self.inner(vacts, vctx)                                                # [B * n]
        return vals.view(-1, x.shape[0]).mean(0)

    def __repr__(self):
        seen_by = "" if self.backbone is None else f", backbone={getattr(self.backbone, 'name', '?')}"
        return f"BoxView({self.inner!r}, box={tuple(round(b, 4) for b in self.box)}{seen_by})"


def sample_views(picture: torch.Tensor, box, out_hw: tuple[int, int], n: int = 1,
                 generator: torch.Generator | None = None, jitter: float = 0.0,
                 scale: tuple[float, float] = (1.0, 1.0), flip: bool = False,
                 rotate: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of one region of ``picture`` ``[B, 3, H, W]``: the box ``(x0, y0, x1, y1)`` (fractions),
    moved by up to ``jitter`` of its size, its size divided by a factor drawn from ``scale`` (> 1
    zooms in), mirrored at random when ``flip``, turned by a random angle of up to ``rotate`` degrees
    either way (about the view's centre, in picture pixels so that the box's aspect holds), resampled to
    ``out_hw`` (bilinear, the picture shrunk with antialiasing first where the view is much smaller than the box; borders reflected).

    Returns the views ``[n * B, 3, oh, ow]`` (view i of picture b at ``i * B + b``) and the window each
    view shows, ``[n, 4]`` (x0, y0, x1, y1) in picture pixels. Without a generator: the box itself."""
    B, _, H, W = picture.shape
    x0, y0, x1, y1 = box
    oh, ow = out_hw
    # the box's centre and half sizes in normalized [-1, 1] picture coordinates
    cy, cx = (y0 + y1) - 1.0, (x0 + x1) - 1.0
    hy, hx = (y1 - y0), (x1 - x0)
    if generator is not None:
        r = torch.rand(n, 4, generator=generator, dtype=torch.float64)
        s = scale[0] + (scale[1] - scale[0]) * r[:, 0]
        ty = (2 * r[:, 1] - 1) * jitter * 2 * hy
        tx = (2 * r[:, 2] - 1) * jitter * 2 * hx
        fl = torch.where((r[:, 3] < 0.5) & flip, -1.0, 1.0).to(torch.float64)
        # drawn after the others, so that rotate=0 leaves the other draws as they were
        a = ((2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1) * math.radians(rotate)
             if rotate else torch.zeros(n, dtype=torch.float64))
    else:
        s = torch.ones(n, dtype=torch.float64)
        ty = tx = torch.zeros(n, dtype=torch.float64)
        fl = torch.ones(n, dtype=torch.float64)
        a = torch.zeros(n, dtype=torch.float64)
    shrink = min(1.0, 1.5 * oh / (hy * H), 1.5 * ow / (hx * W))
    src = picture
    if shrink < 0.999:
        src = F.interpolate(picture, size=(max(2, round(H * shrink)), max(2, round(W * shrink))),
                            mode="bilinear", antialias=True, align_corners=False)
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    # the view's [-1, 1] spans the box's half sizes hx, hy (normalized), turned by a in picture pixels
    ca, sa = torch.cos(a), torch.sin(a)
    theta[:, 0, 0] = ca * hx / s * fl
    theta[:, 0, 1] = -sa * hy / s * (H / W)
    theta[:, 0, 2] = cx + tx
    theta[:, 1, 0] = sa * hx / s * fl * (W / H)
    theta[:, 1, 1] = ca * hy / s
    theta[:, 1, 2] = cy + ty
    grid = F.affine_grid(theta.to(src.device, src.dtype), [n, 3, oh, ow], align_corners=False)  # [n, oh, ow, 2]
    views = F.grid_sample(src.repeat(n, 1, 1, 1), grid.repeat_interleave(B, 0), mode="bilinear",
                          padding_mode="reflection", align_corners=False)
    windows = torch.stack([(cx + tx - hx / s + 1) / 2 * W, (cy + ty - hy / s + 1) / 2 * H,
                           (cx + tx + hx / s + 1) / 2 * W, (cy + ty + hy / s + 1) / 2 * H], 1)
    return views, windows.float()
