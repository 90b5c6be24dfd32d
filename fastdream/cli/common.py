"""Flags and helpers shared by the commands that dream (dream, sheet, zoom, video, distill)."""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time

from fastdream.errors import FastdreamError


def number(kind=float, lo=None, hi=None, lo_open=False):
    """An argparse type: a finite number in a range, with a one-line message otherwise."""

    def parse(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, got {s!r}")
        if isinstance(v, float) and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo}, got {s}")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi}, got {s}")
        return v

    parse.__name__ = kind.__name__
    return parse


def number_list(s: str):
    try:
        vals = tuple(float(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {s!r}")
    if not vals or any(not math.isfinite(v) or v < 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected non-negative numbers, got {s!r}")
    return vals


def add_dream_options(p: argparse.ArgumentParser, presets_help: str) -> None:
    """Objective and schedule flags of `fastdream dream` (also used by sheet, zoom, video, distill)."""
    g = p.add_argument_group("objective (several add up; WEIGHT may be negative to suppress)")
    g.add_argument("--preset", help=f"a named dream: {presets_help}")
    g.add_argument("--layer", action="append", default=[], metavar="NAME[:KIND][*W][@REGION]",
                   help="amplify a layer (KIND: l2 (default), mean, l1, abs_l2); see `fastdream layers`")
    g.add_argument("--channel", action="append", default=[], metavar="LAYER:C[,C..][*W][@REGION]",
                   help="amplify channels of a layer")
    g.add_argument("--neuron", action="append", default=[], metavar="LAYER:C:Y:X[*W]",
                   help="amplify one unit (channel C at activation position Y, X)")
    g.add_argument("--class", dest="classes", action="append", default=[], metavar="NAME|INDEX[*W][@REGION]",
                   help="raise an ImageNet class (e.g. jellyfish, 'tabby cat', 107)")
    g.add_argument("--face", dest="faces", action="append", default=[], metavar="x0,y0,x1,y1",
                   help="a face in this box (fractions or pixels), made for and checked by the MTCNN face "
                        "detector; the report says whether its full cascade finds it (detected, iou, score)")
    g.add_argument("--face-suppress", type=number(float, 0), default=0.0, metavar="W",
                   help="with --face: also push the detector's face probability down outside the boxes (weight)")
    g.add_argument("--prior", dest="priors", action="append", default=[], metavar="bn[:W]|tv[:W]|l2[:W]|none",
                   help="natural-image priors beside class and face objectives (default bn + tv): bn = the "
                        "backbone's BatchNorm statistics (DeepInversion), tv = total variation, l2 = pixel L2; "
                        "W scales the default weight; none switches them off")
    g.add_argument("--guide", action="append", default=[], metavar="IMAGE[*W][@REGION]",
                   help="guide picture: make the dream's features resemble its features")
    g.add_argument("--guide-layer", action="append", default=[], metavar="NAME",
                   help="layer(s) where guide features are matched (default block9)")
    g.add_argument("--guide-similarity", choices=["dot", "l1", "l2"], default="dot")
    g.add_argument("--guide-pixel-weight", type=number(float, 0), default=0.0,
                   help="also pull the pixels towards the guide's (weight)")
    g.add_argument("--style", action="append", default=[], metavar="IMAGE[:WEIGHT]",
                   help="also paint in the style of a picture (Gram matrices of its features; weight "
                        "relative to the dream objective, e.g. painting.jpg:20)")
    s = p.add_argument_group("schedule")
    s.add_argument("--octaves", type=number(int, 1, 12))
    s.add_argument("--octave-scale", type=number(float, 1.0, 4.0, lo_open=True))
    s.add_argument("--steps", type=number(int, 0, 10000), help="steps per octave")
    s.add_argument("--step-size", type=number(float, 0, 10, lo_open=True))
    s.add_argument("--jitter", type=number(int, 0, 4096), help="random shift of up to +-N pixels per step")
    s.add_argument("--sigma", type=number_list, metavar="S[,S..]",
                   help="smooth the gradient with a Gaussian (several sigmas: their average)")
    s.add_argument("--smooth-kernel", type=number(int, 1, 255), help="odd kernel size for --sigma")
    s.add_argument("--norm", choices=["mean_abs", "std", "none"], help="gradient normalization")
    s.add_argument("--init", choices=["image", "noise"], help="start from the picture (default) or noise")
    s.add_argument("--recursions", type=number(int, 0, 100))
    s.add_argument("--recursion-scale", type=number(float, 0, 1, lo_open=True))
    s.add_argument("--recursion-blend", type=number(float, 0, 1))
    s.add_argument("--seed", type=number(int, 0, 2**63 - 1), default=0, help="same seed, same bytes (default 0)")
    m = p.add_argument_group("size and device")
    m.add_argument("--max-size", type=number(int, 16, 1 << 16),
                   help="dream at most this many pixels on the long side; the detail is added back at full size")
    m.add_argument("--tile", type=number(int, 32, 1 << 16), help="tile size (default: tiles only for big pictures)")
    m.add_argument("--tile-overlap", type=number(int, 0, 4096))
    m.add_argument("--max-tile-pixels", type=number(int, 1024, 1 << 30),
                   help="pictures above this many pixels are dreamed tile by tile (memory budget)")
    m.add_argument("--device", default="auto", help="auto, cpu or cuda")
    m.add_argument("--backbone", help="default: the embedded EfficientNet-Lite0; or a checkpoint file")


CONFIG_FLAGS = ["octaves", "octave_scale", "steps", "step_size", "jitter", "smooth_kernel", "norm", "init",
                "recursions", "recursion_scale", "recursion_blend", "seed", "tile", "tile_overlap",
                "max_tile_pixels"]


def dream_setup(args, size, device):
    """(backbone, objective, config, params) from parsed dream flags for a picture of ``size`` (H, W)."""
    from fastdream.api import get_backbone, make_config
    from fastdream.engine.spec import build_objective, guide_objective, parse_priors

    overrides = {k: getattr(args, k) for k in CONFIG_FLAGS if getattr(args, k, None) is not None}
    if args.sigma is not None:
        overrides["sigma"] = args.sigma if len(args.sigma) > 1 else args.sigma[0]
    preset = args.preset
    if preset is None and (getattr(args, "faces", None) or any("@" in c for c in args.classes)):
        from fastdream.presets import OBJECTS_CONFIG

        overrides = {**OBJECTS_CONFIG, **overrides}  # objects in boxes: their own schedule unless a preset is named
    cfg, preset_layers = make_config(preset, **overrides)
    backbone = get_backbone(args.backbone, device)
    priors = parse_priors(getattr(args, "priors", None))
    if getattr(args, "face_suppress", 0.0) and not getattr(args, "faces", None):
        raise FastdreamError("--face-suppress goes with --face")
    objective = build_objective(backbone, size, layers=args.layer, channels=args.channel, neurons=args.neuron,
                                classes=args.classes, faces=getattr(args, "faces", ()), priors=priors,
                                face_suppress=getattr(args, "face_suppress", 0.0), device=device)
    if args.guide:
        g = guide_objective(backbone, args.guide, args.guide_layer or ["block9"], args.guide_similarity,
                            args.guide_pixel_weight, device=device, size=size)
        objective = g if objective is None else objective + g
    if args.guide_layer and not args.guide:
        raise FastdreamError("--guide-layer needs --guide IMAGE")
    if objective is None:
        objective = build_objective(backbone, size, layers=preset_layers)
    if getattr(args, "style", None):
        from fastdream.cli.style import parse_style
        from fastdream.stylize.objective import StyleObjective

        styles = [parse_style(s) for s in args.style]
        total = sum(w for _, w in styles)
        if total <= 0:
            raise FastdreamError("--style: the weights sum to zero")
        objective = objective + StyleObjective.from_images(backbone, styles, device=device) * total
    import dataclasses

    params = {"preset": preset, "objective": repr(objective), **dataclasses.asdict(cfg),
              "priors": "default" if priors is None else [f"{p.kind}:{p.scale:g}" for p in priors] or "none",
              "max_size": args.max_size, "backbone": args.backbone or "efficientnet-lite0"}
    return backbone, objective, cfg, params


@contextlib.contextmanager
def progress_bar(total: int, desc: str, enabled: bool | None = None):
    """A tqdm bar on a terminal (stderr); a no-op callback otherwise. Yields ``update(done, total)``."""
    if enabled is None:
        enabled = sys.stderr.isatty() and not os.environ.get("TQDM_DISABLE")
    if not enabled:
        yield lambda done, tot: None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, file=sys.stderr)

    def update(done, tot):
        if bar.total != tot:
            bar.total = tot
        bar.n = done
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
