"""A dream's objective put together from objective objects: terms with weights and regions, priors and
faces, by the rules the command line, the web page and the Python API share.

Objects in, objects out: nothing here parses text or opens files (the command line's strings are turned
into these objects by :mod:`fastdream.objective_text`; the web page builds them from its form).

>>> from fastdream.engine.compose import Term, dream_objective
>>> from fastdream.engine.objectives import Box, ClassLogit, Layer
>>> obj = dream_objective([Term(Layer("block9")), Term(ClassLogit(107), region=Box(0.5, 0.0, 1.0, 0.5))])

The rules: a class in a region is dreamed in a zoomed view of that region (``BoxView``: the object at
the network's scale, only the region's pixels change) with the priors judging that view; a class on the
whole picture gets the priors once, on the whole picture; other objectives in a region are restricted to
it (``Masked``); priors asked for beside layer, channel or neuron objectives apply to the whole picture;
a face (a box) is MTCNN's ``Face`` objective with the priors in a view of its box.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence, Union

import torch

from fastdream.engine.objectives import (BNPrior, Box, BoxView, Channel, ClassLogit, Guide, L2Prior, Layer, Neuron,
                                         Objective, PixelGuide, TVPrior, as_box)
from fastdream.errors import FastdreamError

MIN_BOX_PIXELS = 4

# A region: a Box (fractions, x0, y0, x1, y1) or a mask tensor [H, W] in [0, 1] (white = inside).
Region = Union[Box, torch.Tensor]


@dataclasses.dataclass
class Term:
    """One objective of a dream: ``objective`` times ``weight``, only inside ``region`` when one is given."""

    objective: Objective
    weight: float = 1.0
    region: Region | None = None


def region_kwargs(region: Region) -> dict:
    """``{"box": Box}`` or ``{"mask": tensor}``: the keyword ``restrict`` and ``BoxView`` take."""
    if isinstance(region, torch.Tensor):
        return {"mask": region}
    return {"box": as_box(region, "region")}


def check_box_size(box, size: tuple[int, int]) -> None:
    """A box (fractions) must hold at least ``MIN_BOX_PIXELS`` pixels on each side of a picture of
    ``size`` (H, W)."""
    x0, y0, x1, y1 = as_box(box, "region")
    H, W = size
    if (x1 - x0) * W < MIN_BOX_PIXELS or (y1 - y0) * H < MIN_BOX_PIXELS:
        raise FastdreamError(f"the box is {(x1 - x0) * W:.1f}x{(y1 - y0) * H:.1f} pixels of the {W}x{H} picture; "
                             f"it needs at least {MIN_BOX_PIXELS} on each side")


# -- checks against the backbone ---------------------------------------------------------------------

def check_layer(backbone, name: str) -> None:
    """``name`` must be one of the backbone's taps (the message suggests the nearest)."""
    from fastdream.errors import suggest

    names = backbone.tap_names()
    if name not in names:
        raise FastdreamError(suggest(name, names, "layer"))


def check_objective(backbone, obj: Objective, grid_size: tuple[int, int] | None = None) -> None:
    """Check a ``Layer``, ``Channel``, ``Neuron`` or ``Guide`` against ``backbone``: the layer exists,
    the channels are in range, a neuron's position falls inside the layer's grid at ``grid_size`` (the
    (H, W) the dream runs at; unchecked when None). Messages name no flag (the caller adds its own)."""
    if isinstance(obj, (Layer, Channel, Neuron, Guide)):
        check_layer(backbone, obj.layer)
    if isinstance(obj, (Channel, Neuron)):
        n = backbone.channels(obj.layer)
        chans = obj.channels if isinstance(obj, Channel) else [obj.channel]
        bad = [c for c in chans if not 0 <= c < n]
        if bad:
            raise FastdreamError(f"channel {bad[0]} is out of range for {obj.layer} (0..{n - 1})")
    if isinstance(obj, Neuron) and grid_size is not None:
        gh, gw = (int(v) for v in grid_size)
        shape = dict(backbone.layers((gh, gw))).get(obj.layer)
        if shape is not None and len(shape) == 3 and not (0 <= obj.y < shape[1] and 0 <= obj.x < shape[2]):
            raise FastdreamError(f"position ({obj.y}, {obj.x}) is outside {obj.layer}'s {shape[1]}x{shape[2]} grid "
                                 f"for a {gw}x{gh} dream (Y 0..{shape[1] - 1}, X 0..{shape[2] - 1})")


def check_face_box(box, size: tuple[int, int], detector) -> None:
    """A face box (fractions) must be at least the detector's smallest face on its short side."""
    x0, y0, x1, y1 = as_box(box, "face box")
    H, W = size
    side = min((y1 - y0) * H, (x1 - x0) * W)
    if side < detector.min_face_size:
        raise FastdreamError(f"the box is {side:.0f} pixels on its short side; the face detector finds faces of "
                             f"at least {detector.min_face_size} pixels")


# -- priors ----------------------------------------------------------------------------------------

PRIOR_KINDS = ("bn", "tv", "l2", "critic")
# The weights that the default priors have in a dream, for the value scale of each kind of objective
# they sit beside (chosen by measuring with the independent judge; docs/priors.md). ``--prior KIND:W``
# multiplies them by W.
DREAM_PRIOR_WEIGHTS = {"bn": 0.002, "tv": 200.0, "l2": 1.0, "critic": 1.0}
# The transformation robustness of a class in a box: four views of the box per step, each moved by up to
# 10 % of its size, scaled by 0.75..1.25 and mirrored at random (one view moved by 6 % and scaled by
# 0.9..1.1 made Lite2's top-1 in 5 of 10 tuning boxes, these 9 of 10; docs/priors.md).
CLASS_VIEW = {"views": 4, "jitter": 0.1, "scale": (0.75, 1.25)}
# The networks that see a class's box beside the default backbone (EfficientNet-Lite0), by name: an object
# drawn for two networks at once is one that a third, the judge EfficientNet-Lite2, also recognizes far more
# often than one drawn for Lite0 alone (docs/priors.md, "Two networks"). Other backbones get none by default.
DEFAULT_CLASS_BACKBONES = ("efficientnet-lite1",)


@dataclasses.dataclass(frozen=True)
class PriorSpec:
    """One prior: its kind (``PRIOR_KINDS``) and a factor on the command's default weight of that kind."""

    kind: str
    scale: float = 1.0

    def __post_init__(self):
        if self.kind not in PRIOR_KINDS:
            raise FastdreamError(f"unknown prior {self.kind!r}; choose from {', '.join(PRIOR_KINDS)}")
        if not (math.isfinite(self.scale) and self.scale >= 0):
            raise FastdreamError(f"prior {self.kind}: the weight must be a finite number >= 0, got {self.scale!r}")


DEFAULT_DREAM_PRIORS = [PriorSpec("bn"), PriorSpec("tv")]


def make_priors(specs: Sequence[PriorSpec], weights: dict[str, float] = DREAM_PRIOR_WEIGHTS, device="cpu"):
    """The prior objectives of ``specs`` (their sum, or None when there are none)."""
    terms = []
    for p in specs:
        w = weights[p.kind] * p.scale
        if w == 0:
            continue
        if p.kind == "bn":
            terms.append(BNPrior(w))
        elif p.kind == "tv":
            terms.append(TVPrior(w))
        elif p.kind == "l2":
            terms.append(L2Prior(w))
        else:
            from fastdream.engine.critic import CriticPrior

            terms.append(CriticPrior(w, device=device))
    return sum(terms[1:], terms[0]) if terms else None


# -- the dream's objective -------------------------------------------------------------------------

def _weighted(obj: Objective, w: float) -> Objective:
    return obj * w if w != 1.0 else obj


def dream_objective(terms: Sequence[Term] = (), *, priors: Sequence[PriorSpec] | None = None, faces=(),
                    face_suppress: float = 0.0, size: tuple[int, int] | None = None, detector=None,
                    device="cpu", class_backbones: Sequence = ()) -> Objective | None:
    """The sum of ``terms`` with priors and faces, by the rules of this module's docstring (None when
    there is nothing to dream).

    ``priors``: PriorSpecs; None: the default, the BatchNorm and TV priors beside class objectives and
    faces; []: none. ``faces``: boxes ``(x0, y0, x1, y1)`` (fractions) where a face is to appear;
    ``face_suppress``: the weight of pushing MTCNN's face probability down outside them. Faces need
    ``size``, the picture's (H, W), and use ``detector`` (default: a new MTCNN on ``device``).
    ``class_backbones``: further networks of the same classes that also see each class's box (an
    ensemble: the class logit and priors are averaged over the dream's own network and these, each with
    its own views), so that the object is drawn for more than one network's eyes."""
    for bb in class_backbones:
        if not hasattr(bb, "forward_taps"):
            raise FastdreamError(f"a class backbone must be a Backbone, got {type(bb).__name__}")
    out: list[Objective] = []
    prior = make_priors(DEFAULT_DREAM_PRIORS if priors is None else priors, device=device)
    prior_added = False
    for t in terms:
        obj, w = t.objective, float(t.weight)
        if isinstance(obj, ClassLogit):
            if t.region is None:
                out.append(_weighted(obj, w))
                if prior is not None and not prior_added:  # once, on the same forward pass
                    prior_added = True
                    out.append(prior)
            else:
                inner = obj if prior is None else obj + prior
                seen_by = [None, *class_backbones]  # None: the dream's own network
                for bb in seen_by:
                    out.append(BoxView(inner, **region_kwargs(t.region), **CLASS_VIEW, backbone=bb) * (w / len(seen_by)))
        else:
            if t.region is not None:
                obj = obj.restrict(**region_kwargs(t.region))
            out.append(_weighted(obj, w))
    if priors and prior is not None and not prior_added and any(not isinstance(t.objective, ClassLogit) for t in terms):
        out.append(prior)  # asked for beside layer, channel or neuron objectives: on the whole picture
    boxes = [as_box(b, "face box") for b in faces]
    if boxes:
        from fastdream.engine.faces import Face, FaceSuppress

        if size is None:
            raise FastdreamError("faces need the picture's size")
        if detector is None:
            from fastdream.detectors.mtcnn import get_detector

            detector = get_detector(str(device))
        H, W = size
        detector.check_size(H, W)
        for b in boxes:
            try:
                check_face_box(b, size, detector)
            except FastdreamError as e:
                px = ",".join(f"{v:.0f}" for v in b.pixels(size))
                raise FastdreamError(f"face box {px} (pixels): {e}") from None
            out.append(Face(b, detector=detector))
            if prior is not None:
                out.append(BoxView(prior, box=b))
        if face_suppress:
            out.append(FaceSuppress(boxes, detector=detector) * face_suppress)
    elif face_suppress:
        raise FastdreamError("face_suppress goes with faces")
    return sum(out[1:], out[0]) if out else None


def guide_features_objective(backbone, img, layers, similarity="dot", weight=1.0, region: Region | None = None,
                             pixel_weight=0.0) -> Objective:
    """Guided dreaming towards one guide picture ``img`` ``[1, 3, H, W]`` (already loaded): its features
    at ``layers`` (seen with the long side at most 512 pixels), each a ``Guide`` term of ``weight``,
    restricted to ``region`` when one is given (a Box or a mask); ``pixel_weight``: also pull the pixels
    towards the guide's."""
    h, w0 = img.shape[-2:]
    scale = min(1.0, 512 / max(h, w0))
    if scale < 1.0:
        img = torch.nn.functional.interpolate(img, size=(max(1, round(h * scale)), max(1, round(w0 * scale))),
                                              mode="bilinear", antialias=True, align_corners=False)
    for layer in layers:
        check_layer(backbone, layer)
    with torch.no_grad():
        acts = backbone.forward_taps(img, list(layers))
    terms = []
    for layer in layers:
        obj = Guide(layer, acts[layer], similarity)
        if region is not None:
            obj = obj.restrict(**region_kwargs(region))
        terms.append(_weighted(obj, weight))
    if pixel_weight:
        terms.append(PixelGuide(img) * (pixel_weight * weight))
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


__all__ = ["Term", "Region", "dream_objective", "check_objective", "check_layer", "check_box_size", "check_face_box",
           "PriorSpec", "PRIOR_KINDS", "CLASS_VIEW", "DEFAULT_CLASS_BACKBONES", "DREAM_PRIOR_WEIGHTS", "DEFAULT_DREAM_PRIORS", "make_priors",
           "guide_features_objective", "region_kwargs", "MIN_BOX_PIXELS"]
