"""The command line's mini-languages, parsed into objects: the one parser of objective strings.

``--layer NAME[:KIND][*WEIGHT][@REGION]``      e.g. ``block9``, ``block11:abs_l2*0.5``
``--channel LAYER:C[,C...][*WEIGHT][@REGION]`` e.g. ``block10:17,42``
``--neuron LAYER:C:Y:X[*WEIGHT]``               e.g. ``block12:5:3:4``
``--class NAME|INDEX[*WEIGHT][@REGION]``       e.g. ``jellyfish@0.1,0.1,0.5,0.6``
``--face x0,y0,x1,y1``                         a face in the box (MTCNN)
``--prior bn[:W]|tv[:W]|l2[:W]|none``          natural-image priors (several add up)
``--guide IMAGE[*W][@REGION]``, ``--style IMAGE[*W]``  pictures with weights
``REGION`` is a box ``x0,y0,x1,y1`` (fractions of the picture when all are <= 1, else pixels) or the
path of a mask picture (white = inside).

Strings become the objects of :mod:`fastdream.engine.objectives` and :mod:`fastdream.engine.compose`
(``Term``, ``Box``, ``PriorSpec``); the engine, the web page and the Python API pass those objects and
never strings. Used by the command line, by the Python API's ``layers=``/``classes=`` shortcuts and by
the stored teachers of distilled filters (their objective is kept as these strings).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from fastdream.featvis.visualize import Target

import math
import os
import re

from fastdream.engine.compose import (DEFAULT_DREAM_PRIORS, DREAM_PRIOR_WEIGHTS, MIN_BOX_PIXELS,  # noqa: F401
                                      PRIOR_KINDS, PriorSpec, Region, Term, check_box_size, check_face_box,
                                      check_layer, check_objective, dream_objective, guide_features_objective,
                                      make_priors)
from fastdream.engine.objectives import Box, Channel, ClassLogit, Layer, Neuron, Objective
from fastdream.errors import FastdreamError, InputError, suggest

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def split_weight_region(spec: str, flag: str) -> tuple[str, float, str | None]:
    """``"block9*0.5@0,0,0.5,1"`` -> ("block9", 0.5, "0,0,0.5,1")."""
    region = None
    if "@" in spec:
        spec, region = spec.split("@", 1)
        if not region:
            raise FastdreamError(f"{flag} {spec}@: empty region after '@'")
    weight = 1.0
    m = re.fullmatch(rf"(.*)\*({_NUM})", spec)
    if m:
        spec, weight = m.group(1), float(m.group(2))
    elif "*" in spec:
        raise FastdreamError(f"{flag}: weight after '*' must be a number, got {spec.split('*', 1)[1]!r}")
    if not spec:
        raise FastdreamError(f"{flag}: empty name")
    return spec, weight, region


def split_path_weight(spec: str, flag: str, colon: bool = False) -> tuple[str, float]:
    """A picture path with an optional weight: ``"painting.jpg*20"`` -> ("painting.jpg", 20.0), the form
    every flag takes; with ``colon`` also ``"painting.jpg:20"`` (the older form of --style). A path that
    exists as written is a path, whatever it ends in."""
    if os.path.exists(spec):
        return spec, 1.0
    path, weight = spec, 1.0
    m = re.fullmatch(r"(.+)\*([^*]*)", spec)
    if m is None and colon:
        m = re.fullmatch(r"(.+):([^:/\\]*)", spec)
    if m is not None:
        path, w = m.group(1), m.group(2)
        try:
            weight = float(w)
        except ValueError:
            raise FastdreamError(f"{flag} {spec!r}: the weight {w!r} is not a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise FastdreamError(f"{flag} {spec!r}: the weight must be a finite number >= 0")
    return path, weight


def parse_style(spec: str, flag: str = "style") -> tuple[str, float]:
    """``"path.jpg*0.5"`` (the weight form of every flag) or ``"path.jpg:0.5"`` -> ``("path.jpg", 0.5)``;
    a path that exists as written wins over a weight."""
    try:
        return split_path_weight(spec, flag, colon=True)
    except FastdreamError as e:
        raise InputError(str(e)) from None


def other_weight_hint(text: str) -> str:
    """``"; for a weight write 'cat.jpg*2'"`` when ``text`` ends in ``:NUMBER`` (the weight form of --style
    written where ``*W`` is meant), else ``""``: for messages about a file or name that is not found."""
    m = re.fullmatch(rf"(.+):({_NUM})", text)
    return f"; for a weight write {m.group(1) + '*' + m.group(2)!r}" if m else ""


def parse_region(region: str, size: tuple[int, int], flag: str) -> Region:
    """``"x0,y0,x1,y1"`` (fractions, or pixels when one is above 1) -> a :class:`Box` of fractions, or the
    path of a mask picture -> its mask tensor ``[H, W]``; ``size`` is the picture's (H, W)."""
    parts = region.split(",")
    if len(parts) == 4 and all(re.fullmatch(_NUM, p.strip()) for p in parts):
        x0, y0, x1, y1 = (float(p) for p in parts)
        H, W = size
        if max(x0, y0, x1, y1) > 1.0:  # pixels
            x0, x1, y0, y1 = x0 / W, x1 / W, y0 / H, y1 / H
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise FastdreamError(f"{flag} region {region!r}: a box is x0,y0,x1,y1 inside the picture "
                                 f"({W}x{H}) with x0<x1, y0<y1")
        box = Box(x0, y0, x1, y1)
        try:
            check_box_size(box, size)
        except FastdreamError as e:
            raise FastdreamError(f"{flag} region {region!r}: {e}") from None
        return box
    if os.path.exists(region):
        from fastdream.imageio import load_image

        m, _ = load_image(region)
        return m[0].mean(0)
    raise FastdreamError(f"{flag} region {region!r}: neither a box x0,y0,x1,y1 nor an existing mask picture")


def parse_face(spec: str, size: tuple[int, int]) -> Box:
    """``--face x0,y0,x1,y1`` (fractions or pixels) -> a :class:`Box` of fractions."""
    r = parse_region(spec, size, "--face")
    if not isinstance(r, Box):
        raise FastdreamError(f"--face {spec!r}: a face needs a box x0,y0,x1,y1 (fractions or pixels)")
    return r


def _int(v: str, what: str, flag: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise FastdreamError(f"{flag}: {what} must be a whole number, got {v!r}") from None


def _checked(backbone, obj: Objective, flag: str, grid_size=None, spec: str | None = None) -> Objective:
    try:
        check_objective(backbone, obj, grid_size)
    except FastdreamError as e:
        raise FastdreamError(f"{flag}{'' if spec is None else ' ' + repr(spec)}: {e}") from None
    return obj


# -- priors ----------------------------------------------------------------------------------------

def parse_priors(specs, flag: str = "--prior") -> list[PriorSpec] | None:
    """``["bn", "tv:0.5"]`` -> PriorSpecs; ``["none"]`` -> [] (no prior); None or [] -> None (the
    command's default)."""
    if not specs:
        return None
    out: list[PriorSpec] = []
    for s in specs:
        kind, _, w = str(s).partition(":")
        kind = kind.strip().lower()
        if kind == "none":
            if w or len(specs) > 1:
                raise FastdreamError(f"{flag} none: switches every prior off, so it goes alone and takes no weight")
            return []
        if kind not in PRIOR_KINDS:
            from fastdream.errors import suggest

            raise FastdreamError(f"{flag} {s!r}: " + suggest(kind, [*PRIOR_KINDS, "none"], "prior"))
        scale = 1.0
        if w:
            try:
                scale = float(w)
            except ValueError:
                raise FastdreamError(f"{flag} {s!r}: the weight after ':' must be a number, got {w!r}") from None
            if not (math.isfinite(scale) and scale >= 0):
                raise FastdreamError(f"{flag} {s!r}: the weight must be a finite number >= 0, got {w!r}")
        out.append(PriorSpec(kind, scale))
    return out


# -- objectives ------------------------------------------------------------------------------------

def parse_layer(backbone, s: str, size, flag: str = "--layer") -> Term:
    """``NAME[:KIND][*W][@REGION]`` -> a Term of a checked ``Layer``."""
    name, w, region = split_weight_region(s, flag)
    kind = "l2"
    if ":" in name:
        name, kind = name.split(":", 1)
    try:
        check_layer(backbone, name)
    except FastdreamError as e:
        raise FastdreamError(f"{flag}: {e}") from None
    try:
        layer = Layer(name, kind)
    except FastdreamError as e:
        raise FastdreamError(f"{flag} {s!r}: {e}{other_weight_hint(name + ':' + kind)}") from None
    return Term(layer, w, None if region is None else parse_region(region, size, flag))


def parse_channel(backbone, s: str, size, flag: str = "--channel") -> Term:
    """``LAYER:C[,C...][*W][@REGION]`` -> a Term of a checked ``Channel``."""
    body, w, region = split_weight_region(s, flag)
    if ":" not in body:
        raise FastdreamError(f"{flag} {s!r}: expected LAYER:C[,C...]")
    name, cs = body.rsplit(":", 1)
    try:
        check_layer(backbone, name)
    except FastdreamError as e:
        raise FastdreamError(f"{flag}: {e}") from None
    idx = [_int(c, "a channel", flag) for c in cs.split(",") if c != ""]
    obj = _checked(backbone, Channel(name, idx), flag)
    return Term(obj, w, None if region is None else parse_region(region, size, flag))


def parse_neuron(backbone, s: str, size, grid_size=None, flag: str = "--neuron") -> Term:
    """``LAYER:C:Y:X[*W]`` -> a Term of a checked ``Neuron`` (Y, X inside the layer's grid at
    ``grid_size``, the (H, W) the dream runs at; default ``size``)."""
    body, w, region = split_weight_region(s, flag)
    parts = body.rsplit(":", 3)
    if len(parts) != 4:
        raise FastdreamError(f"{flag} {s!r}: expected LAYER:C:Y:X")
    name = parts[0]
    try:
        check_layer(backbone, name)
    except FastdreamError as e:
        raise FastdreamError(f"{flag}: {e}") from None
    c, y, x = (_int(v, "a neuron index", flag) for v in parts[1:])
    obj = Neuron(name, c, y, x)
    n = backbone.channels(name)
    if not 0 <= c < n:
        raise FastdreamError(f"{flag}: channel {c} is out of range for {name} (0..{n - 1})")
    _checked(backbone, obj, flag, grid_size or size, spec=s)
    return Term(obj, w, None if region is None else parse_region(region, size, flag))


def parse_class(backbone, s: str, size, flag: str = "--class") -> Term:
    """``NAME|INDEX[*W][@REGION]`` -> a Term of a ``ClassLogit`` of the backbone's classes."""
    body, w, region = split_weight_region(s, flag)
    try:
        idx = backbone.class_index(body)
    except FastdreamError as e:
        raise FastdreamError(f"{e}{other_weight_hint(body)}") from None
    cls = ClassLogit(idx, backbone.class_names[idx] if backbone.class_names else None)
    return Term(cls, w, None if region is None else parse_region(region, size, flag))


def parse_terms(backbone, size, layers=(), channels=(), neurons=(), classes=(), grid_size=None) -> list[Term]:
    """The Terms of the objective flags, in the order layers, channels, neurons, classes."""
    return ([parse_layer(backbone, s, size) for s in layers]
            + [parse_channel(backbone, s, size) for s in channels]
            + [parse_neuron(backbone, s, size, grid_size) for s in neurons]
            + [parse_class(backbone, s, size) for s in classes])


def class_backbone_names(given, backbone_spec=None) -> list[str]:
    """The networks beside the dream's own that see the classes' boxes, from ``--class-backbone`` values:
    none given, ``DEFAULT_CLASS_BACKBONES`` when the dream's backbone (``backbone_spec``) is the default
    EfficientNet-Lite0 and none for other backbones; ``none`` switches them off."""
    from fastdream.backbones.loading import DEFAULT
    from fastdream.engine.compose import DEFAULT_CLASS_BACKBONES

    names = [str(n).strip() for n in (given or [])]
    if any(n.lower() == "none" for n in names):
        if len(names) > 1:
            raise FastdreamError("--class-backbone none goes alone")
        return []
    if names:
        return names
    default_dream = backbone_spec is None or (isinstance(backbone_spec, str) and backbone_spec.strip().lower() == DEFAULT)
    return list(DEFAULT_CLASS_BACKBONES) if default_dream else []


def load_class_backbones(names, device="cpu") -> list:
    """The Backbones named by ``class_backbone_names`` (loaded once per process)."""
    from fastdream.backbones import get_backbone

    out = []
    for n in names:
        try:
            out.append(get_backbone(n, device))
        except FastdreamError as e:
            raise FastdreamError(f"--class-backbone {n}: {e}") from None
    return out


def build_objective(backbone, size, layers=(), channels=(), neurons=(), classes=(), grid_size=None,
                    faces=(), priors=None, face_suppress: float = 0.0, device="cpu",
                    class_backbones=()) -> Objective | None:
    """The dream's objective named by command-line strings (None when none are given): the strings
    parsed into Terms and face boxes, put together by :func:`fastdream.engine.compose.dream_objective`.

    ``size``: the picture's (H, W) (regions in pixels are relative to it); ``grid_size``: the (H, W) the
    dream runs at (default ``size``), where a neuron's Y, X must fall inside the layer's grid.
    ``priors``: PriorSpecs (``parse_priors``); None: the default; [] none. ``class_backbones``: further
    Backbones of the same classes that also see the classes' boxes (``dream_objective``)."""
    terms = parse_terms(backbone, size, layers, channels, neurons, classes, grid_size)
    for bb in class_backbones:
        if bb.num_classes != backbone.num_classes:
            raise FastdreamError(f"--class-backbone {bb.name}: it has {bb.num_classes} classes, the dream's "
                                 f"backbone {backbone.num_classes}")
    boxes = [parse_face(s, size) for s in faces]
    detector = None
    if boxes:
        from fastdream.detectors.mtcnn import get_detector

        detector = get_detector(str(device))
        detector.check_size(*size)
        for s, b in zip(faces, boxes):
            try:
                check_face_box(b, size, detector)
            except FastdreamError as e:
                px = ",".join(f"{v:.0f}" for v in b.pixels(size))
                raise FastdreamError(f"--face {px}: {e}") from None
    return dream_objective(terms, priors=priors, faces=boxes, face_suppress=face_suppress if boxes else 0.0,
                           size=size, detector=detector, device=device,
                           class_backbones=class_backbones)


def guide_objective(backbone, guides, layers, similarity="dot", pixel_weight=0.0, device="cpu", size=None):
    """Guided dreaming towards one or several guide pictures ``["path[*weight][@region]", ...]``."""
    from fastdream.imageio import load_image

    for layer in layers:
        try:
            check_layer(backbone, layer)
        except FastdreamError as e:
            raise FastdreamError(f"--guide-layer: {e}") from None
    total = None
    for g in guides:
        path, w, region = split_weight_region(g, "--guide")
        if not os.path.exists(path) and other_weight_hint(path):
            raise InputError(f"--guide {path}: no such file{other_weight_hint(path)}")
        img, _ = load_image(path)
        reg = None if region is None else parse_region(region, size, "--guide")
        obj = guide_features_objective(backbone, img.to(device), layers, similarity, w, reg, pixel_weight)
        total = obj if total is None else total + obj
    return total


# -- visualize's targets ----------------------------------------------------------------------------

def _vis_split_weight(spec: str, flag: str) -> tuple[str, float]:
    body, w, region = split_weight_region(str(spec), flag)
    if region is not None:
        raise FastdreamError(f"{flag} {spec!r}: regions ('@') are for dreaming; visualize optimizes the whole picture")
    if not math.isfinite(w):
        raise FastdreamError(f"{flag} {spec!r}: the weight must be a finite number")
    return body, w


def _vis_int(v: str, what: str, flag: str, spec: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise FastdreamError(f"{flag} {spec!r}: {what} must be a whole number, got {v!r}") from None


def _layer_shape(backbone, name: str, shapes: dict, flag: str) -> tuple[int, ...]:
    if name not in shapes:
        aliases = getattr(backbone, "aliases", {}) or {}
        if name in aliases:
            return shapes[aliases[name]]
        raise FastdreamError(f"{flag}: " + suggest(name, [*shapes, *aliases], "layer"))
    return shapes[name]


def parse_targets(backbone, size: tuple[int, int], classes: Sequence = (), channels: Sequence[str] = (),
                  neurons: Sequence[str] = ()) -> list[Target]:
    """Targets from command-line strings, checked against the backbone (names with suggestions,
    channel and position ranges) before any work: ``classes=["jellyfish*1", 107]``,
    ``channels=["block10:5*0.5"]``, ``neurons=["block12:5:3:3"]``."""
    from fastdream.featvis.visualize import Target, layer_shapes

    targets: list[Target] = []

    def shapes():
        return layer_shapes(backbone, size)

    for c in classes:
        if isinstance(c, int) and not isinstance(c, bool):
            body, w = str(c), 1.0
        else:
            body, w = _vis_split_weight(c, "--class")
        idx = backbone.class_index(body)
        names = backbone.class_names
        targets.append(Target("class", body, w, ClassLogit(idx, names[idx] if names else None), idx))
    for s in channels:
        body, w = _vis_split_weight(s, "--channel")
        if ":" not in body:
            raise FastdreamError(f"--channel {s!r}: expected LAYER:C (e.g. block10:5)")
        name, c = body.rsplit(":", 1)
        shape = _layer_shape(backbone, name, shapes(), "--channel")
        ch = _vis_int(c, "the channel", "--channel", s)
        if not 0 <= ch < shape[0]:
            raise FastdreamError(f"--channel {s!r}: channel {ch} is out of range for {name} "
                                 f"({shape[0]} channels: 0..{shape[0] - 1})")
        targets.append(Target("channel", body, w, Channel(name, [ch], kind="mean")))
    for s in neurons:
        body, w = _vis_split_weight(s, "--neuron")
        parts = body.rsplit(":", 3)
        if len(parts) != 4:
            raise FastdreamError(f"--neuron {s!r}: expected LAYER:C:Y:X (e.g. block12:5:3:3)")
        name = parts[0]
        shape = _layer_shape(backbone, name, shapes(), "--neuron")
        ch, y, x = (_vis_int(v, what, "--neuron", s) for v, what in zip(parts[1:], ("the channel", "Y", "X")))
        if not 0 <= ch < shape[0]:
            raise FastdreamError(f"--neuron {s!r}: channel {ch} is out of range for {name} "
                                 f"({shape[0]} channels: 0..{shape[0] - 1})")
        if len(shape) == 3 and not (0 <= y < shape[1] and 0 <= x < shape[2]):
            raise FastdreamError(f"--neuron {s!r}: position ({y}, {x}) is outside {name}'s "
                                 f"{shape[1]}x{shape[2]} grid at this size")
        targets.append(Target("neuron", body, w, Neuron(name, ch, y, x)))
    if not targets:
        raise FastdreamError("nothing to visualize: give --class, --channel or --neuron")
    return targets


__all__ = ["split_weight_region", "split_path_weight", "parse_style", "other_weight_hint", "parse_region",
           "parse_face", "parse_priors", "parse_layer", "parse_channel", "parse_neuron", "parse_class", "parse_terms",
           "build_objective", "guide_objective", "PriorSpec", "make_priors", "parse_targets"]
