"""fastdream sheet INPUT -o SHEET.png: the same picture dreamed at each layer (or at each of the top
channels of one layer), as labelled tiles on one sheet, to choose a layer by eye."""
from __future__ import annotations

import math
import time

from fastdream.cli.common import add_dream_options, dream_setup, number, progress_bar
from fastdream.errors import FastdreamError


def add_parser(sub):
    from fastdream.presets import describe

    p = sub.add_parser("sheet", help="a contact sheet of dreams at every layer or channel",
                       description="Dream one picture at several layers (default: every block) or at the "
                                   "most active channels of one layer, and lay the results out with labels. "
                                   "Each tile's layer or channel is its objective: --preset sets the schedule "
                                   "only, and objective flags (--layer, --class...) are refused.")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--layers", help="comma-separated layers (default: every block)")
    p.add_argument("--channels-of", metavar="LAYER", help="one tile per top channel of this layer")
    p.add_argument("--top", type=number(int, 1, 256), default=8, help="how many channels with --channels-of")
    p.add_argument("--cell", type=number(int, 32, 2048), default=256, help="tile size in pixels (long side)")
    p.add_argument("--columns", type=number(int, 1, 64), help="tiles per row (default: about square)")
    p.add_argument("--report")
    add_dream_options(p, describe())
    p.set_defaults(func=run)
    return p


def _label(img, text):
    from PIL import ImageDraw, ImageFont

    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=max(12, img.width // 16))
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    box = draw.textbbox((0, 0), text, font=font)
    pad = 4
    draw.rectangle([0, 0, box[2] + 2 * pad, box[3] + 2 * pad], fill=(0, 0, 0))
    draw.text((pad, pad), text, fill=(255, 255, 255), font=font)
    return img


def run(args) -> int:
    import torch
    from PIL import Image

    from fastdream.api import dream_tensor
    from fastdream.convert import resolve_device
    from fastdream.engine.objectives import Channel, Layer
    from fastdream.errors import suggest
    from fastdream.imageio import WRITERS, atomic_write, check_output_path, load_image, tensor_to_pil
    from fastdream.report import peak_rss_mb, write_report

    t0 = time.perf_counter()
    out = check_output_path(args.output)
    if args.layers and args.channels_of:
        raise FastdreamError("give --layers or --channels-of, not both")
    named = [f for f, v in (("--layer", args.layer), ("--channel", args.channel), ("--neuron", args.neuron),
                            ("--class", args.classes), ("--guide", args.guide), ("--style", args.style)) if v]
    if named:
        raise FastdreamError(f"{named[0]}: a sheet dreams one layer or channel per tile; choose them with "
                             "--layers or --channels-of")
    x, meta = load_image(args.input)
    device = resolve_device(args.device)
    # dream small: each tile is `cell` pixels on the long side
    H, W = x.shape[-2:]
    s = min(1.0, args.cell / max(H, W))
    small = torch.nn.functional.interpolate(x, size=(max(1, round(H * s)), max(1, round(W * s))),
                                            mode="bilinear", antialias=True, align_corners=False).to(device)
    backbone, _, cfg, params = dream_setup(args, tuple(small.shape[-2:]), device)
    names = backbone.tap_names()
    tiles = []
    if args.channels_of:
        layer = args.channels_of
        if layer not in names:
            raise FastdreamError("--channels-of: " + suggest(layer, names, "layer"))
        with torch.no_grad():
            act = backbone.forward_taps(small, [layer])[layer]
        means = act.mean(dim=(0, 2, 3)) if act.dim() == 4 else act.mean(0)
        top = torch.argsort(means, descending=True)[: args.top].tolist()
        tiles = [(f"{layer}:{c}", Channel(layer, [c])) for c in top]
    else:
        if args.layers:
            chosen = [v.strip() for v in args.layers.split(",") if v.strip()]
            for c in chosen:
                if c not in names:
                    raise FastdreamError("--layers: " + suggest(c, names, "layer"))
        else:
            chosen = [n for n in names if n.startswith("block")]
        tiles = [(n, Layer(n)) for n in chosen]
    params["objective"] = [repr(obj) for _, obj in tiles]  # what ran: one objective per tile
    images = []
    with progress_bar(len(tiles), "sheet") as update:
        for i, (label, obj) in enumerate(tiles):
            r, _ = dream_tensor(small, obj, backbone, cfg)
            images.append(_label(tensor_to_pil(r.cpu()), label))
            update(i + 1, len(tiles))
    cols = args.columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    cw, ch = images[0].size
    gap = 4
    sheet = Image.new("RGB", (cols * cw + (cols + 1) * gap, rows * ch + (rows + 1) * gap), (24, 24, 24))
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        sheet.paste(im, (gap + c * (cw + gap), gap + r * (ch + gap)))
    fmt = WRITERS[out.suffix.lower()]  # check_output_path accepted it, so a writer knows it
    atomic_write(out, lambda tmp: sheet.save(tmp, format=fmt))
    if args.report:
        write_report(args.report, {"input": str(args.input), "output": str(out), "tiles": [t[0] for t in tiles],
                                   "sheet_size": list(sheet.size), "seconds": round(time.perf_counter() - t0, 3),
                                   "peak_rss_mb": round(peak_rss_mb(), 1), "params": params})
    return 0
