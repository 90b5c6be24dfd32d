"""Objectives from the short strings the command line takes.

``--layer NAME[:KIND][*WEIGHT][@REGION]``      e.g. ``block9``, ``block11:abs_l2*0.5``
``--channel LAYER:C[,C...][*WEIGHT][@REGION]`` e.g. ``block10:17,42``
``--neuron LAYER:C:Y:X[*WEIGHT]``               e.g. ``block12:5:3:4``
``--class NAME|INDEX[*WEIGHT][@REGION]``       e.g. ``jellyfish@0.1,0.1,0.5,0.6``
``REGION`` is a box ``x0,y0,x1,y1`` (fractions of the picture when all are <= 1, else pixels) or the
path of a mask picture (white = inside).
"""
from __future__ import annotations

import math
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


def build_objective(backbone, size, layers=(), channels=(), neurons=(), classes=(), grid_size=None,
                    flags=None) -> Objective | None:
    """Sum of the objectives named by command-line strings (None when none are given).

    ``size``: the picture's (H, W) (regions in pixels are relative to it); ``grid_size``: the (H, W) the
    dream runs at (default ``size``), where a neuron's Y, X must fall inside the layer's grid. ``flags``
    renames the flags in messages (the web page says ``layer``, not ``--layer``)."""
    terms: list[Objective] = []

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
