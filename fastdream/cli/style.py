"""fastdream style CONTENT STYLE[:WEIGHT] [STYLE[:WEIGHT] ...] -o OUTPUT: neural style transfer."""
from __future__ import annotations

import argparse
import pathlib
import time

from fastdream.cli.common import add_precision_option, number, progress_bar, resolve_precision
from fastdream.errors import InputError


def _iters(s: str):
    try:
        vals = tuple(int(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or numbers separated by commas, got {s!r}")
    if not vals or any(v < 0 or v > 100000 for v in vals):
        raise argparse.ArgumentTypeError(f"expected whole numbers 0..100000, got {s!r}")
    return vals[0] if len(vals) == 1 else vals


def _names(s: str):
    names = tuple(v.strip() for v in s.split(",") if v.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected layer names separated by commas, got {s!r}")
    return names


from fastdream.cli.common import number_list as _weights  # noqa: E402  (non-negative numbers, comma-separated)


def add_parser(sub):
    from fastdream.stylize.transfer import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, FINAL_ITERS, StyleConfig

    d = StyleConfig()
    p = sub.add_parser("style", help="neural style transfer (Gatys et al.)", description=(
        "Paint CONTENT in the style of one or more STYLE pictures (Gatys et al.): content loss at "
        f"{DEFAULT_CONTENT_LAYER}, Gram-matrix style losses at {', '.join(DEFAULT_STYLE_LAYERS)} of the embedded "
        "EfficientNet-Lite0. STYLE*WEIGHT (or STYLE:WEIGHT) blends several styles (weights are normalized). "
        "Large outputs are "
        "made coarse to fine and evaluated tile by tile."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("content", help="the picture to paint")
    p.add_argument("styles", nargs="+", metavar="STYLE[*WEIGHT]",
                   help="style picture(s), optional weight as on every flag, e.g. painting.jpg*2 (painting.jpg:2 "
                        "works too; default weight 1)")
    p.add_argument("-o", "--output", required=True, help="output picture (.png .jpg .webp .tif .bmp)")
    p.add_argument("--report", help="write a JSON report here ('-': stdout)")
    p.add_argument("--quality", type=number(int, 1, 100), default=95, help="JPEG/WebP quality (default 95)")
    g = p.add_argument_group("losses")
    g.add_argument("--content-layer", default=DEFAULT_CONTENT_LAYER, help=f"default {DEFAULT_CONTENT_LAYER}")
    g.add_argument("--style-layers", type=_names, default=DEFAULT_STYLE_LAYERS, metavar="L[,L..]",
                   help=f"default {','.join(DEFAULT_STYLE_LAYERS)} (see `fastdream layers`)")
    g.add_argument("--layer-weights", type=_weights, metavar="W[,W..]", help="one per style layer (default equal)")
    g.add_argument("--content-weight", type=number(float, 0), default=d.content_weight)
    g.add_argument("--style-weight", type=number(float, 0), default=d.style_weight)
    g.add_argument("--tv-weight", type=number(float, 0), default=d.tv_weight, help="total-variation (smoothness) weight")
    g.add_argument("--style-scale", type=number(float, 0.01, 16, lo_open=True), default=d.style_scale,
                   help="style pictures are seen at this times the working size (bigger: larger strokes)")
    g.add_argument("--preserve-color", nargs="?", const="luminance", choices=["luminance", "histogram"],
                   help="keep the content's colours: luminance-only transfer (default) or colour histogram matching")
    o = p.add_argument_group("optimization")
    o.add_argument("--optimizer", choices=["lbfgs", "adam"], default=d.optimizer)
    o.add_argument("--iters", type=_iters, default=d.iters, metavar="N[,N..]",
                   help=f"evaluations at the coarsest scale (finer scales get a quarter per scale, the output scale at "
                        f"least {FINAL_ITERS}), or one per scale (default {d.iters})")
    o.add_argument("--pyramid", type=number(int, 1, 8), default=d.pyramid,
                   help=f"L-BFGS over up to this many pyramid levels, the coarsest at least 32 px (1: plain pixels; "
                        f"default {d.pyramid})")
    o.add_argument("--lr", type=number(float, 0, 10, lo_open=True), default=d.lr, help="Adam's step size")
    o.add_argument("--init", default="content", metavar="content|noise|PATH", help="starting picture (default content)")
    o.add_argument("--seed", type=number(int, 0, 2**63 - 1), default=0)
    m = p.add_argument_group("size and device")
    m.add_argument("--size", type=number(int, 16, 1 << 15), help="long side of the output (default: the content's)")
    m.add_argument("--scales", type=number(int, 1, 8), help="coarse-to-fine scales, x2 apart (default: automatic)")
    m.add_argument("--max-tile-pixels", type=number(int, 64 * 64, 1 << 30), default=d.max_tile_pixels,
                   help="pictures above this many pixels are evaluated tile by tile (memory budget)")
    m.add_argument("--tile", type=number(int, 64, 1 << 15), help="tile size (default: from --max-tile-pixels)")
    m.add_argument("--device", default="auto", help="auto, cpu or cuda")
    add_precision_option(m)
    m.add_argument("--backbone", help="default: the embedded EfficientNet-Lite0; or a checkpoint file")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from fastdream.stylize.api import get_backbone
    from fastdream.convert import resolve_device
    from fastdream.imageio import check_output_path, load_image, save_image
    from fastdream.objective_text import parse_style
    from fastdream.report import peak_rss_mb, write_report
    from fastdream.stylize.gram import blend_grams
    from fastdream.stylize.transfer import StyleConfig, StyleTransfer

    t0 = time.perf_counter()
    # every check before any work: output, report, pictures, weights, layers, sizes
    out = check_output_path(args.output)
    if args.report and args.report != "-":
        rp = pathlib.Path(args.report)
        if not rp.parent.is_dir():
            raise InputError(f"{rp}: the folder {rp.parent} does not exist")
    styles = [parse_style(s) for s in args.styles]
    blend_grams([0.0] * len(styles), [w for _, w in styles])  # weights: >= 0, not all zero
    content, meta = load_image(args.content)
    style_pics = [(load_image(pth)[0], w) for pth, w in styles]
    init = None
    if args.init not in ("content", "noise"):
        init = load_image(args.init)[0]
    cfg = StyleConfig(content_layer=args.content_layer, style_layers=tuple(args.style_layers),
                      layer_weights=args.layer_weights, content_weight=args.content_weight,
                      style_weight=args.style_weight, tv_weight=args.tv_weight, optimizer=args.optimizer,
                      iters=args.iters, lr=args.lr, size=args.size, scales=args.scales,
                      style_scale=args.style_scale, preserve_color=args.preserve_color,
                      init="noise" if args.init == "noise" else "content", seed=args.seed,
                      max_tile_pixels=args.max_tile_pixels, tile=args.tile, pyramid=args.pyramid)
    device = resolve_device(args.device)
    cfg.precision = resolve_precision(args, device)
    backbone = get_backbone(args.backbone, device)
    engine = StyleTransfer(backbone, cfg)           # unknown layers raise here, with suggestions
    plan = engine.schedule(*content.shape[-2:])     # sizes too small for the layers raise here
    total = sum(i for _, i in plan)
    with progress_bar(total, pathlib.Path(args.content).name) as update:
        t1 = time.perf_counter()
        result, stats = engine.run(content.to(device), [(s.to(device), w) for s, w in style_pics], init=init,
                                   progress=update)
        seconds_opt = time.perf_counter() - t1
    params = {"content": str(args.content), "styles": [[p_, w] for p_, w in styles],
              "init": args.init, "backbone": args.backbone or "efficientnet-lite0",
              **{k: v for k, v in vars(cfg).items() if k != "init"}}
    save_image(result.cpu(), out, meta, params=params, quality=args.quality)
    if args.report:
        write_report(args.report, {
            "content": str(args.content),
            "styles": [{"path": p_, "weight": w} for p_, w in styles],
            "output": str(out),
            "input_size": [int(content.shape[-1]), int(content.shape[-2])],
            "output_size": [int(result.shape[-1]), int(result.shape[-2])],
            "device": str(device),
            "content_loss_start": stats.content_loss_start,
            "content_loss_end": stats.content_loss_end,
            "style_loss_start": stats.style_loss_start,
            "style_loss_end": stats.style_loss_end,
            "style_loss_ratio": stats.style_loss_end / stats.style_loss_start if stats.style_loss_start else None,
            "style_loss_per_layer": stats.style_loss_per_layer,
            "tv_loss_end": stats.tv_loss_end,
            "evaluations": stats.evaluations,
            "scale_sizes": stats.scale_sizes,
            "iters": stats.iters,
            "tiles": stats.tiles,
            "seconds": round(time.perf_counter() - t0, 3),
            "optimize_seconds": round(seconds_opt, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "params": params,
        })
    return 0
