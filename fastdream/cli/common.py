"""Flags and helpers shared by the commands that dream (dream, sheet, zoom, video, distill)."""
from __future__ import annotations

import argparse
import math
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


PRECISION_HELP = ("the backbone's precision: auto (the default: bf16 on CPUs with AVX512-BF16 or AMX and on CUDA "
                  "GPUs with bf16, fp16 on other GPUs, fp32 on other CPUs), fp32, bf16, or fp16 (CUDA only); "
                  "objectives, the update and the picture stay fp32")


def add_precision_option(group) -> None:
    """``--precision auto|fp32|bf16|fp16`` (checked against the device by :func:`resolve_precision`)."""
    group.add_argument("--precision", default="auto", metavar="auto|fp32|bf16|fp16", help=PRECISION_HELP)


def resolve_precision(args, device) -> str:
    """The precision ``--precision`` means on ``device`` (``fp32``, ``bf16`` or ``fp16``); a bad one is
    an :class:`InputError` naming what this device has."""
    from fastdream.precision import resolve_precision as resolve

    return resolve(getattr(args, "precision", "auto"), device)


class _ListPresets(argparse.Action):
    """``--list-presets``: print what each preset sets and exit (like --version, no other flag needed)."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        from fastdream.presets import table

        print(table())
        parser.exit(0)


def _schedule_default(field: str, own: dict | None = None) -> str:
    """``(default: from the preset; classic: 4)`` for a schedule flag (``own``: the command's values
    without a preset, as zoom's lighter dream per frame)."""
    from fastdream.api import make_config

    if own and field in own:
        return f"(default: from the preset; without --preset: {own[field]})"
    cfg, _ = make_config(None)
    v = getattr(cfg, field)
    shown = "none" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))
    return f"(default: from the preset; classic: {shown})"


def add_dream_options(p: argparse.ArgumentParser, presets_help: str, own_defaults: dict | None = None) -> None:
    """Objective and schedule flags of `fastdream dream` (also used by sheet, zoom, video, distill);
    ``own_defaults``: schedule values the command uses when no preset is named."""
    from fastdream.presets import DEFAULT_PRESET, OBJECTIVE_RULE

    import textwrap

    g = p.add_argument_group("objective (several add up; WEIGHT may be negative to suppress)",
                             textwrap.fill(OBJECTIVE_RULE, 78))
    g.add_argument("--preset", help=f"a named dream (default: {DEFAULT_PRESET}): {presets_help}")
    g.add_argument("--list-presets", action=_ListPresets, help="print what each preset sets (a table) and exit")
    g.add_argument("--layer", action="append", default=[], metavar="NAME[:KIND][*W][@REGION]",
                   help="amplify a layer (KIND: l2 (default), mean, l1, abs_l2); see `fastdream layers`")
    g.add_argument("--channel", action="append", default=[], metavar="LAYER:C[,C..][*W][@REGION]",
                   help="amplify channels of a layer")
    g.add_argument("--neuron", action="append", default=[], metavar="LAYER:C:Y:X[*W]",
                   help="amplify one unit (channel C at position Y, X of the layer's grid at the dream's size)")
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
    g.add_argument("--class-backbone", dest="class_backbones", action="append", default=[], metavar="NAME|none",
                   help="a further network of the same classes that also sees each --class box (repeatable; "
                        "the class is drawn for all of them at once; default: efficientnet-lite1 beside the "
                        "default backbone, none beside another --backbone); none: the dream's backbone alone")
    g.add_argument("--guide", action="append", default=[], metavar="IMAGE[*W][@REGION]",
                   help="guide picture: make the dream's features resemble its features")
    g.add_argument("--guide-layer", action="append", default=[], metavar="NAME",
                   help="layer(s) where guide features are matched (default: block9)")
    g.add_argument("--guide-similarity", choices=["dot", "l1", "l2"], default="dot",
                   help="how a dream feature is pulled towards its best-matching guide feature")
    g.add_argument("--guide-pixel-weight", type=number(float, 0), default=0.0,
                   help="also pull the pixels towards the guide's (weight)")
    g.add_argument("--style", action="append", default=[], metavar="IMAGE[*W]",
                   help="also paint in the style of a picture (Gram matrices of its features; weight "
                        "relative to the dream objective, e.g. painting.jpg*20; IMAGE:W works too)")
    s = p.add_argument_group("schedule", "Without these flags the preset's values apply "
                                         "(`--list-presets` shows them).")
    s.add_argument("--octaves", type=number(int, 1, 12), help="pyramid levels " + _schedule_default("octaves", own_defaults))
    s.add_argument("--octave-scale", type=number(float, 1.0, 4.0, lo_open=True),
                   help="size ratio between octaves " + _schedule_default("octave_scale", own_defaults))
    s.add_argument("--steps", type=number(int, 0, 10000), help="steps per octave " + _schedule_default("steps", own_defaults))
    s.add_argument("--step-size", type=number(float, 0, 10, lo_open=True),
                   help="step in units of the normalized gradient " + _schedule_default("step_size", own_defaults))
    s.add_argument("--jitter", type=number(int, 0, 4096),
                   help="random shift of up to +-N pixels per step " + _schedule_default("jitter", own_defaults))
    s.add_argument("--sigma", type=number_list, metavar="S[,S..]",
                   help="smooth the gradient with a Gaussian (several sigmas: their average) "
                        + _schedule_default("sigma", own_defaults))
    s.add_argument("--smooth-kernel", type=number(int, 1, 255),
                   help="odd kernel size for --sigma (default: 2*ceil(3*sigma)+1)")
    s.add_argument("--norm", choices=["mean_abs", "std", "none"],
                   help="gradient normalization " + _schedule_default("norm", own_defaults))
    s.add_argument("--init", choices=["image", "noise"], help="start from the picture or noise "
                   + _schedule_default("init", own_defaults))
    s.add_argument("--box-step", choices=["auto", "picture", "sqrt", "area"],
                   help="where only boxes dream (--class NAME@BOX, --face): picture = the step normalized over the "
                        "whole picture (strong objects, with colour noise); area = scaled by the boxes' share of it "
                        "(faint objects); sqrt = by the square root of that share; auto (default): sqrt for classes "
                        "and faces in boxes, picture for masked objectives")
    s.add_argument("--recursions", type=number(int, 0, 100),
                   help="dream, rescale, blend with the original, dream again " + _schedule_default("recursions", own_defaults))
    s.add_argument("--recursion-scale", type=number(float, 0, 1, lo_open=True),
                   help="rescale between recursions " + _schedule_default("recursion_scale", own_defaults))
    s.add_argument("--recursion-blend", type=number(float, 0, 1),
                   help="weight of the original in each recursion " + _schedule_default("recursion_blend", own_defaults))
    s.add_argument("--seed", type=number(int, 0, 2**63 - 1), default=0, help="same seed, same bytes (default: 0)")
    m = p.add_argument_group("size and device")
    m.add_argument("--max-size", type=number(int, 16, 1 << 16),
                   help="dream at most this many pixels on the long side, add the detail back at full size "
                        "and finish there with --finish-steps (default: the full size)")
    m.add_argument("--finish-steps", type=number(int, 0, 10000),
                   help="with --max-size: steps at full size after the detail is added back, which keep the "
                        "dream's strength there (default: half of --steps, rounded up; 0: none, the fastest)")
    m.add_argument("--tile", type=number(int, 32, 1 << 16),
                   help="tile size (default: tiles only above --max-tile-pixels)")
    from fastdream.engine.dream import DreamConfig

    d = DreamConfig()
    m.add_argument("--tile-overlap", type=number(int, 0, 4096),
                   help=f"overlap of tiles in pixels (default: {d.tile_overlap})")
    m.add_argument("--max-tile-pixels", type=number(int, 1024, 1 << 30),
                   help=f"pictures above this many pixels are dreamed tile by tile (memory budget, in fp32 "
                        f"pixels: bf16/fp16 tiles hold twice as many; default: {d.max_tile_pixels})")
    m.add_argument("--device", default="auto", help="auto, cpu or cuda")
    add_precision_option(m)
    m.add_argument("--backbone", help="a checkpoint file (default: the embedded EfficientNet-Lite0)")


CONFIG_FLAGS = ["octaves", "octave_scale", "steps", "step_size", "jitter", "smooth_kernel", "norm", "init", "box_step",
                "recursions", "recursion_scale", "recursion_blend", "seed", "tile", "tile_overlap",
                "max_tile_pixels", "finish_steps"]


_NOTED: set = set()  # presets whose objective a note said was replaced (once per process)


def dream_size(size, max_size):
    """The (H, W) a dream of a picture of ``size`` runs at under ``--max-size`` (api.dream_tensor's rule)."""
    H, W = size
    if max_size is not None and max(H, W) > max_size:
        s = max_size / max(H, W)
        return max(1, round(H * s)), max(1, round(W * s))
    return H, W


def dream_setup(args, size, device):
    """(backbone, objective, config, params) from parsed dream flags for a picture of ``size`` (H, W).
    The objective follows presets.OBJECTIVE_RULE; ``params["objective"]`` is what runs. Objects in boxes
    (``--class NAME@BOX``, ``--face``) get the objects schedule unless a preset is named."""
    from fastdream.api import get_backbone, make_config, preset_objective
    from fastdream.engine.dream import resolved_box_step
    from fastdream.objective_text import (build_objective, class_backbone_names, guide_objective, load_class_backbones,
                                          parse_priors, parse_style)
    from fastdream.presets import DEFAULT_PRESET

    overrides = {k: getattr(args, k) for k in CONFIG_FLAGS if getattr(args, k, None) is not None}
    overrides["precision"] = resolve_precision(args, device)
    if args.sigma is not None:
        overrides["sigma"] = args.sigma if len(args.sigma) > 1 else args.sigma[0]
    boxed = any("@" in c for c in args.classes)  # classes in boxes
    objects = args.preset is None and (getattr(args, "faces", None) or boxed)
    if objects:
        from fastdream.presets import OBJECTS_CONFIG

        overrides = {**OBJECTS_CONFIG, **overrides}  # objects in boxes: their own schedule unless a preset is named
    cfg, _ = make_config(args.preset, **overrides)
    backbone = get_backbone(args.backbone, device)
    priors = parse_priors(getattr(args, "priors", None))
    if getattr(args, "face_suppress", 0.0) and not getattr(args, "faces", None):
        raise FastdreamError("--face-suppress goes with --face")
    class_backbones = class_backbone_names(getattr(args, "class_backbones", None), args.backbone) if boxed else []
    objective = build_objective(backbone, size, layers=args.layer, channels=args.channel, neurons=args.neuron,
                                classes=args.classes, grid_size=dream_size(size, getattr(args, "max_size", None)),
                                faces=getattr(args, "faces", ()), priors=priors,
                                face_suppress=getattr(args, "face_suppress", 0.0), device=device,
                                class_backbones=load_class_backbones(class_backbones, device))
    if args.guide:
        g = guide_objective(backbone, args.guide, args.guide_layer or ["block9"], args.guide_similarity,
                            args.guide_pixel_weight, device=device, size=size)
        objective = g if objective is None else objective + g
    if args.guide_layer and not args.guide:
        raise FastdreamError("--guide-layer needs --guide IMAGE")
    objective = preset_objective(args.preset, objective, backbone, size)
    if getattr(args, "style", None):
        from fastdream.stylize.objective import StyleObjective

        styles = [parse_style(s, "--style") for s in args.style]
        total = sum(w for _, w in styles)
        if total <= 0:
            raise FastdreamError("--style: the weights sum to zero")
        objective = objective + StyleObjective.from_images(backbone, styles, device=device) * total
    named = [f for f, v in (("--layer", args.layer), ("--channel", args.channel), ("--neuron", args.neuron),
                            ("--class", args.classes), ("--guide", args.guide)) if v]
    if args.preset and named and args.preset not in _NOTED:
        from fastdream.presets import get_preset

        _NOTED.add(args.preset)
        print(f"fastdream {getattr(args, 'command', None) or 'dream'}: note: {', '.join(named)} replace the "
              f"{args.preset!r} preset's objective ({' + '.join(get_preset(args.preset)['layers'])}); its "
              "schedule still applies", file=sys.stderr)
    import dataclasses

    params = {"preset": args.preset or ("objects" if objects else DEFAULT_PRESET), "objective": repr(objective),
              **dataclasses.asdict(cfg), "precision_requested": getattr(args, "precision", "auto"),
              "priors": "default" if priors is None else [f"{p.kind}:{p.scale:g}" for p in priors] or "none",
              "max_size": args.max_size, "backbone": args.backbone or "efficientnet-lite0"}
    params["box_step"] = resolved_box_step(objective, cfg.box_step)  # the step that runs ("auto" resolved)
    if boxed:
        params["class_backbones"] = class_backbones
    return backbone, objective, cfg, params


# the progress display lives below the commands (streams and video jobs use it too); re-exported here
from fastdream.progress import (PLAIN_EVERY, PROGRESS_MODES, Progress, progress_bar, progress_mode,  # noqa: E402,F401
                                set_progress_mode)


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
