"""`fastdream layers`: the layers of a backbone you can dream at, with their output shapes.

    fastdream layers                                   # EfficientNet-Lite0 at 224x224
    fastdream layers --size 512 --json
    fastdream layers --backbone my_finetuned.pt
"""
from __future__ import annotations

import argparse
import json
import sys

from fastdream.errors import FastdreamError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "layers",
        help="list a backbone's tappable layers and their output shapes",
        description="List the layers of a backbone that objectives can tap, with their output shapes "
        "(channels x height x width) for a square input of --size pixels.",
    )
    p.add_argument("--backbone", "-b", default=None, metavar="B",
                   help="efficientnet-lite0 (default), efficientnet-lite1..4, torchvision:NAME, or a checkpoint file")
    p.add_argument("--size", type=int, default=224, metavar="N", help="input height and width in pixels (default 224)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)
    return p


def _shape_str(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def run(args) -> int:
    from fastdream.backbones import load_backbone

    if args.size < 1 or args.size > 16384:
        raise FastdreamError(f"--size must be between 1 and 16384 pixels, got {args.size}")
    bb = load_backbone(args.backbone)
    rows = bb.layers(args.size)
    alias_of = {}
    for alias, tap in bb.aliases.items():
        alias_of.setdefault(tap, []).append(alias)

    if args.json:
        doc = {
            "backbone": bb.name,
            "input": [3, args.size, args.size],
            "num_classes": bb.num_classes,
            "layers": [
                {"name": name, "shape": list(shape), "aliases": alias_of.get(name, [])} for name, shape in rows
            ],
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 0

    out = [f"{bb.name}: {len(rows)} layers at input 3x{args.size}x{args.size} (shape = channels x height x width)"]
    width = max(len(n) for n, _ in rows)
    swidth = max(len(_shape_str(s)) for _, s in rows)
    out.append(f"{'layer':<{width}}  {'shape':>{swidth}}  alias")
    for name, shape in rows:
        aliases = ", ".join(alias_of.get(name, []))
        out.append(f"{name:<{width}}  {_shape_str(shape):>{swidth}}  {aliases}".rstrip())
    sys.stdout.write("\n".join(out) + "\n")
    return 0
