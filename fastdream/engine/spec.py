"""Objectives from the short strings the command line takes.

``--layer NAME[:KIND][*WEIGHT][@REGION]``      e.g. ``block9``, ``block11:abs_l2*0.5``
``--channel LAYER:C[,C...][*WEIGHT][@REGION]`` e.g. ``block10:17,42``
``--neuron LAYER:C:Y:X[*WEIGHT]``               e.g. ``block12:5:3:4``
``--class NAME|INDEX[*WEIGHT][@REGION]``       e.g. ``jellyfish@0.1,0.1,0.5,0.6``
``REGION`` is a box ``x0,y0,x1,y1`` (fractions of the picture when all are <= 1, else pixels) or the
path of a mask picture (white = inside).
"""
from __future__ import annotations

import os
import re

import torch

from fastdream.engine.objectives import Channel, ClassLogit, Layer, Neuron, Objective
from fastdream.errors import FastdreamError

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


def parse_region(region: str, size: tuple[int, int], flag: str):
    """A box as fractions (y0, x0, y1, x1) or a mask tensor [H, W]; size is the picture's (H, W)."""
    parts = region.split(",")
    if len(parts) == 4 and all(re.fullmatch(_NUM, p.strip()) for p in parts):
        x0, y0, x1, y1 = (float(p) for p in parts)
        H, W = size
        if max(x0, y0, x1, y1) > 1.0:  # pixels
            x0, x1, y0, y1 = x0 / W, x1 / W, y0 / H, y1 / H
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise FastdreamError(f"{flag} region {region!r}: a box is x0,y0,x1,y1 inside the picture with x0<x1, y0<y1")
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


def build_objective(backbone, size, layers=(), channels=(), neurons=(), classes=()) -> Objective | None:
    """Sum of the objectives named by command-line strings (None when none are given)."""
    terms: list[Objective] = []

    def add(obj, weight, region, flag):
        if region is not None:
            obj = obj.restrict(**parse_region(region, size, flag))
        terms.append(obj * weight if weight != 1.0 else obj)

    for s in layers:
        name, w, region = split_weight_region(s, "--layer")
        kind = "l2"
        if ":" in name:
            name, kind = name.split(":", 1)
        _check_layer(backbone, name, "--layer")
        add(Layer(name, kind), w, region, "--layer")
    for s in channels:
        body, w, region = split_weight_region(s, "--channel")
        if ":" not in body:
            raise FastdreamError(f"--channel {s!r}: expected LAYER:C[,C...]")
        name, cs = body.rsplit(":", 1)
        _check_layer(backbone, name, "--channel")
        idx = [_int(c, "a channel", "--channel") for c in cs.split(",") if c != ""]
        n = backbone.channels(name)
        bad = [c for c in idx if not 0 <= c < n]
        if bad:
            raise FastdreamError(f"--channel: channel {bad[0]} is out of range for {name} (0..{n - 1})")
        add(Channel(name, idx), w, region, "--channel")
    for s in neurons:
        body, w, region = split_weight_region(s, "--neuron")
        parts = body.rsplit(":", 3)
        if len(parts) != 4:
            raise FastdreamError(f"--neuron {s!r}: expected LAYER:C:Y:X")
        name = parts[0]
        _check_layer(backbone, name, "--neuron")
        c, y, x = (_int(v, "a neuron index", "--neuron") for v in parts[1:])
        n = backbone.channels(name)
        if not 0 <= c < n:
            raise FastdreamError(f"--neuron: channel {c} is out of range for {name} (0..{n - 1})")
        add(Neuron(name, c, y, x), w, region, "--neuron")
    for s in classes:
        body, w, region = split_weight_region(s, "--class")
        idx = backbone.class_index(body)
        add(ClassLogit(idx, backbone.class_names[idx] if backbone.class_names else None), w, region, "--class")
    if not terms:
        return None
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


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

    total = None
    for g in guides:
        path, w, region = split_weight_region(g, "--guide")
        img, _ = load_image(path)
        obj = guide_features_objective(backbone, img.to(device), layers, similarity, w, region, size, pixel_weight)
        total = obj if total is None else total + obj
    return total
