"""Objectives from the short strings the command line takes.

``--layer NAME[:KIND][*WEIGHT][@REGION]``      e.g. ``block9``, ``block11:abs_l2*0.5``
``--channel LAYER:C[,C...][*WEIGHT][@REGION]`` e.g. ``block10:17,42``
``--neuron LAYER:C:Y:X[*WEIGHT]``               e.g. ``block12:5:3:4``
``--class NAME|INDEX[*WEIGHT][@REGION]``       e.g. ``jellyfish@0.1,0.1,0.5,0.6``
``--face x0,y0,x1,y1``                         a face in the box (MTCNN)
``--prior bn[:W]|tv[:W]|l2[:W]|none``          natural-image priors (several add up)
``REGION`` is a box ``x0,y0,x1,y1`` (fractions of the picture when all are <= 1, else pixels) or the
path of a mask picture (white = inside).
"""
from __future__ import annotations

import dataclasses
import math
import os
import re

import torch

from fastdream.engine.objectives import BNPrior, BoxView, Channel, ClassLogit, L2Prior, Layer, Neuron, Objective, TVPrior
from fastdream.errors import FastdreamError

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
MIN_BOX_PIXELS = 4


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


def other_weight_hint(text: str) -> str:
    """``"; for a weight write 'cat.jpg*2'"`` when ``text`` ends in ``:NUMBER`` (the weight form of --style
    written where ``*W`` is meant), else ``""``: for messages about a file or name that is not found."""
    m = re.fullmatch(rf"(.+):({_NUM})", text)
    return f"; for a weight write {m.group(1) + '*' + m.group(2)!r}" if m else ""


def parse_region(region: str, size: tuple[int, int], flag: str):
    """A box as fractions (y0, x0, y1, x1) or a mask tensor [H, W]; size is the picture's (H, W)."""
    parts = region.split(",")
    if len(parts) == 4 and all(re.fullmatch(_NUM, p.strip()) for p in parts):
        x0, y0, x1, y1 = (float(p) for p in parts)
        H, W = size
        if max(x0, y0, x1, y1) > 1.0:  # pixels
            x0, x1, y0, y1 = x0 / W, x1 / W, y0 / H, y1 / H
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise FastdreamError(f"{flag} region {region!r}: a box is x0,y0,x1,y1 inside the picture "
                                 f"({W}x{H}) with x0<x1, y0<y1")
        if (x1 - x0) * W < MIN_BOX_PIXELS or (y1 - y0) * H < MIN_BOX_PIXELS:
            raise FastdreamError(f"{flag} region {region!r}: the box is {(x1 - x0) * W:.1f}x{(y1 - y0) * H:.1f} "
                                 f"pixels of the {W}x{H} picture; it needs at least {MIN_BOX_PIXELS} on each side")
        return {"box": (y0, x0, y1, x1)}
    if os.path.exists(region):
        from fastdream.imageio import load_image

        m, _ = load_image(region)
        return {"mask": m[0].mean(0)}
    raise FastdreamError(f"{flag} region {region!r}: neither a box x0,y0,x1,y1 nor an existing mask picture")


def _check_layer(backbone, name: str, flag: str):
    from fastdream.errors import suggest

    names = backbone.tap_names()
    if name not in names:
        raise FastdreamError(f"{flag}: " + suggest(name, names, "layer"))


def _int(v: str, what: str, flag: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise FastdreamError(f"{flag}: {what} must be a whole number, got {v!r}") from None


# -- priors ----------------------------------------------------------------------------------------

PRIOR_KINDS = ("bn", "tv", "l2", "critic")
# The weights that the default priors have in a dream, for the value scale of each kind of objective
# they sit beside (chosen by measuring with the independent judge; docs/priors.md). ``--prior KIND:W``
# multiplies them by W.
DREAM_PRIOR_WEIGHTS = {"bn": 0.002, "tv": 200.0, "l2": 1.0, "critic": 1.0}


@dataclasses.dataclass(frozen=True)
class PriorSpec:
    """One ``--prior KIND[:W]``: the kind and a factor on the command's default weight of that kind."""

    kind: str
    scale: float = 1.0


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


def make_priors(specs: list[PriorSpec], weights: dict[str, float] = DREAM_PRIOR_WEIGHTS, device="cpu"):
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


DEFAULT_DREAM_PRIORS = [PriorSpec("bn"), PriorSpec("tv")]


def build_objective(backbone, size, layers=(), channels=(), neurons=(), classes=(), grid_size=None,
                    flags=None, faces=(), priors=None, face_suppress: float = 0.0, device="cpu") -> Objective | None:
    """Sum of the objectives named by command-line strings (None when none are given).

    ``size``: the picture's (H, W) (regions in pixels are relative to it); ``grid_size``: the (H, W) the
    dream runs at (default ``size``), where a neuron's Y, X must fall inside the layer's grid. ``flags``
    renames the flags in messages (the web page says ``layer``, not ``--layer``).
    ``priors``: PriorSpecs (``parse_priors``); None: the default, the BatchNorm and TV priors beside
    class objectives and faces; [] none. A class or a face in a region is dreamed in a zoomed view of
    that region (``BoxView``: the object at the network's scale, only the region's pixels change) with
    the priors judging that view."""
    terms: list[Objective] = []
    prior_specs = DEFAULT_DREAM_PRIORS if priors is None else priors
    prior = make_priors(prior_specs, device=device)
    global_prior = [None]

    def F(flag):
        return (flags or {}).get(flag, flag)

    def add(obj, weight, region, flag):
        if region is not None:
            obj = obj.restrict(**parse_region(region, size, F(flag)))
        terms.append(obj * weight if weight != 1.0 else obj)

    for s in layers:
        name, w, region = split_weight_region(s, F("--layer"))
        kind = "l2"
        if ":" in name:
            name, kind = name.split(":", 1)
        _check_layer(backbone, name, F("--layer"))
        try:
            layer = Layer(name, kind)
        except FastdreamError as e:
            raise FastdreamError(f"{F('--layer')} {s!r}: {e}{other_weight_hint(name + ':' + kind)}") from None
        add(layer, w, region, "--layer")
    for s in channels:
        body, w, region = split_weight_region(s, F("--channel"))
        if ":" not in body:
            raise FastdreamError(f"{F('--channel')} {s!r}: expected LAYER:C[,C...]")
        name, cs = body.rsplit(":", 1)
        _check_layer(backbone, name, F("--channel"))
        idx = [_int(c, "a channel", F("--channel")) for c in cs.split(",") if c != ""]
        n = backbone.channels(name)
        bad = [c for c in idx if not 0 <= c < n]
        if bad:
            raise FastdreamError(f"{F('--channel')}: channel {bad[0]} is out of range for {name} (0..{n - 1})")
        add(Channel(name, idx), w, region, "--channel")
    grid = None
    for s in neurons:
        body, w, region = split_weight_region(s, F("--neuron"))
        parts = body.rsplit(":", 3)
        if len(parts) != 4:
            raise FastdreamError(f"{F('--neuron')} {s!r}: expected LAYER:C:Y:X")
        name = parts[0]
        _check_layer(backbone, name, F("--neuron"))
        c, y, x = (_int(v, "a neuron index", F("--neuron")) for v in parts[1:])
        n = backbone.channels(name)
        if not 0 <= c < n:
            raise FastdreamError(f"{F('--neuron')}: channel {c} is out of range for {name} (0..{n - 1})")
        if grid is None:
            gh, gw = grid_size or size
            grid = dict(backbone.layers((int(gh), int(gw))))
        shape = grid.get(name)
        if shape is not None and len(shape) == 3 and not (0 <= y < shape[1] and 0 <= x < shape[2]):
            gh, gw = grid_size or size
            raise FastdreamError(f"{F('--neuron')} {s!r}: position ({y}, {x}) is outside {name}'s {shape[1]}x{shape[2]} "
                                 f"grid for a {gw}x{gh} dream (Y 0..{shape[1] - 1}, X 0..{shape[2] - 1})")
        add(Neuron(name, c, y, x), w, region, "--neuron")
    for s in classes:
        body, w, region = split_weight_region(s, F("--class"))
        try:
            idx = backbone.class_index(body)
        except FastdreamError as e:
            raise FastdreamError(f"{e}{other_weight_hint(body)}") from None
        cls = ClassLogit(idx, backbone.class_names[idx] if backbone.class_names else None)
        if region is None:
            add(cls, w, None, "--class")
            if prior is not None and global_prior[0] is None:  # once, on the same forward pass
                global_prior[0] = prior
                terms.append(prior)
        else:
            inner = cls if prior is None else cls + prior
            terms.append(BoxView(inner, **parse_region(region, size, F("--class"))) * w)
    if priors and prior is not None and global_prior[0] is None and (layers or channels or neurons):
        terms.append(prior)  # asked for beside layer, channel or neuron objectives: on the whole picture
        global_prior[0] = prior
    face_boxes = []
    for s in faces:
        r = parse_region(s, size, "--face")
        if "box" not in r:
            raise FastdreamError(f"--face {s!r}: a face needs a box x0,y0,x1,y1 (fractions or pixels)")
        face_boxes.append(r["box"])
    if face_boxes:
        from fastdream.detectors.mtcnn import get_detector
        from fastdream.engine.faces import Face, FaceSuppress

        det = get_detector(str(device))
        H, W = size
        det.check_size(H, W)
        for (y0, x0, y1, x1) in face_boxes:
            side = min((y1 - y0) * H, (x1 - x0) * W)
            if side < det.min_face_size:
                raise FastdreamError(f"--face {x0 * W:.0f},{y0 * H:.0f},{x1 * W:.0f},{y1 * H:.0f}: the box is "
                                     f"{side:.0f} pixels on its short side; the face detector finds faces of at "
                                     f"least {det.min_face_size} pixels")
            terms.append(Face((y0, x0, y1, x1), detector=det))
            if prior is not None:
                terms.append(BoxView(prior, box=(y0, x0, y1, x1)))
        if face_suppress:
            terms.append(FaceSuppress(face_boxes, detector=det) * face_suppress)
    return sum(terms[1:], terms[0]) if terms else None


def guide_features_objective(backbone, img, layers, similarity="dot", weight=1.0, region=None, size=None,
                             pixel_weight=0.0):
    """Guided dreaming towards one guide picture ``img`` ``[1, 3, H, W]`` (already loaded): its features
    at ``layers`` (seen with the long side at most 512 pixels), each a ``Guide`` term of ``weight``."""
    from fastdream.engine.objectives import Guide, PixelGuide

    h, w0 = img.shape[-2:]
    scale = min(1.0, 512 / max(h, w0))
    if scale < 1.0:
        img = torch.nn.functional.interpolate(img, size=(max(1, round(h * scale)), max(1, round(w0 * scale))),
                                              mode="bilinear", antialias=True, align_corners=False)
    for layer in layers:
        _check_layer(backbone, layer, "--guide-layer")
    with torch.no_grad():
        acts = backbone.forward_taps(img, list(layers))
    terms = []
    for layer in layers:
        obj = Guide(layer, acts[layer], similarity)
        if region is not None:
            obj = obj.restrict(**parse_region(region, size, "--guide"))
        terms.append(obj * weight if weight != 1.0 else obj)
    if pixel_weight:
        terms.append(PixelGuide(img) * (pixel_weight * weight))
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def guide_objective(backbone, guides, layers, similarity="dot", pixel_weight=0.0, device="cpu", size=None):
    """Guided dreaming towards one or several guide pictures ``["path[*weight][@region]", ...]``."""
    from fastdream.imageio import load_image

    from fastdream.errors import InputError

    total = None
    for g in guides:
        path, w, region = split_weight_region(g, "--guide")
        if not os.path.exists(path) and other_weight_hint(path):
            raise InputError(f"--guide {path}: no such file{other_weight_hint(path)}")
        img, _ = load_image(path)
        obj = guide_features_objective(backbone, img.to(device), layers, similarity, w, region, size, pixel_weight)
        total = obj if total is None else total + obj
    return total
