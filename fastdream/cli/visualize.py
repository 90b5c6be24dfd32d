"""fastdream visualize -o OUT --class NAME | --channel LAYER:C | --neuron LAYER:C:Y:X: feature visualization."""
from __future__ import annotations

import argparse
import pathlib
import time

from fastdream.cli.common import add_precision_option, number, progress_bar, resolve_precision
from fastdream.errors import FastdreamError, InputError


def add_parser(sub):
    p = sub.add_parser("visualize", help="a picture from noise that a class, channel or neuron loves", description=(
        "Optimize a picture from noise (or from a photo with --from: a fooling image) so that it excites a "
        "class, a channel or a neuron of the backbone: spectral, colour-decorrelated parameterization, random "
        "jitter/scale/rotation every step, Adam. Several targets add up with their weights "
        "(--class jellyfish*1 --channel block10:5*0.5). The report holds probability and robust_probability "
        "(activation and robust_activation for channels and neurons): the result as it is, and the mean "
        "over 16 random jitter/scale/rotate transforms of it."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", required=True,
                   help="output picture (.png .jpg .webp .tif .bmp); with --variants N a sheet of the N pictures")
    g = p.add_argument_group("targets (several add up; WEIGHT may be negative)")
    g.add_argument("--class", dest="classes", action="append", default=[], metavar="NAME|INDEX[*W]",
                   help="a class of the backbone (e.g. jellyfish, 'tabby cat', 107; a fine-tuned class name)")
    g.add_argument("--channel", dest="channels", action="append", default=[], metavar="LAYER:C[*W]",
                   help="one channel of a layer (mean activation), e.g. block10:5")
    g.add_argument("--neuron", dest="neurons", action="append", default=[], metavar="LAYER:C:Y:X[*W]",
                   help="one unit: channel C at position (Y, X) of the layer's grid")
    o = p.add_argument_group("optimization")
    o.add_argument("--size", type=number(int, 16, 4096), default=224,
                   help="picture size in pixels (square; with --from: the photo's long side), default 224")
    o.add_argument("--steps", type=number(int, 0, 100000), default=256, help="Adam steps (default 256)")
    o.add_argument("--lr", type=number(float, 0, 10, lo_open=True), default=0.05, help="learning rate (default 0.05)")
    o.add_argument("--decay", type=number(float, 0, 3), default=1.25,
                   help="the picture's spectrum falls as 1/f^DECAY: larger draws larger, bolder structures; "
                        "Lucid's is 1 (default 1.25)")
    o.add_argument("--samples", "--variants", dest="variants", type=number(int, 1, 64), default=1, metavar="N",
                   help="N pictures of the same target at once, pushed apart by the diversity term")
    o.add_argument("--diversity", type=number(float, 0), default=20.0,
                   help="weight of the diversity term with --samples (default 20)")
    o.add_argument("--prior", dest="priors", action="append", default=[], metavar="bn[:W]|tv[:W]|l2[:W]|none",
                   help="natural-image priors (default: bn, the backbone's BatchNorm statistics); W scales "
                        "the default weight; none switches them off")
    o.add_argument("--from", dest="init", metavar="PHOTO", help="start from this photo instead of noise")
    o.add_argument("--seed", type=number(int, 0, 2**63 - 1), default=0, help="same seed, same picture (default 0)")
    m = p.add_argument_group("backbone and output")
    m.add_argument("--backbone", help="default: the embedded EfficientNet-Lite0; or a checkpoint (fastdream finetune)")
    m.add_argument("--device", default="auto", help="auto, cpu or cuda")
    add_precision_option(m)
    m.add_argument("--quality", type=number(int, 1, 100), default=95, help="JPEG/WebP quality (default 95)")
    m.add_argument("--report", help="write a JSON report here ('-' for stdout)")
    p.set_defaults(func=run)
    return p


def check_report_path(path) -> None:
    if path and str(path) != "-":
        rp = pathlib.Path(path)
        folder = rp.parent if str(rp.parent) else pathlib.Path(".")
        if not folder.is_dir():
            raise InputError(f"{rp}: the folder {folder} does not exist")
        if rp.is_dir():
            raise InputError(f"{rp}: is a folder")


def run(args) -> int:
    import torch

    from fastdream.convert import resolve_device
    from fastdream.featvis.api import fit_size, get_backbone
    from fastdream.metrics import psnr
    from fastdream.featvis.sheet import make_sheet, save_pil
    from fastdream.featvis.visualize import VisualizeConfig, headline, measure, optimize, visualize_priors
    from fastdream.objective_text import parse_priors, parse_targets
    from fastdream.imageio import check_output_path, load_image, save_image
    from fastdream.report import peak_rss_mb, write_report

    t0, c0 = time.perf_counter(), time.process_time()
    out = check_output_path(args.output)
    check_report_path(args.report)
    if not (args.classes or args.channels or args.neurons):
        raise FastdreamError("nothing to visualize: give --class, --channel or --neuron")
    parse_priors(args.priors)  # a bad --prior fails before any work
    device = resolve_device(args.device)
    precision = resolve_precision(args, device)
    x0 = None
    size = (args.size, args.size)
    if args.init:
        x0, _ = load_image(args.init)
        x0 = fit_size(x0, args.size).to(device)
        size = tuple(x0.shape[-2:])
    backbone = get_backbone(args.backbone, device)
    targets = parse_targets(backbone, size, args.classes, args.channels, args.neurons)
    priors = visualize_priors(parse_priors(args.priors), device)
    cfg = VisualizeConfig(size=size, steps=args.steps, lr=args.lr, variants=args.variants,
                          diversity=args.diversity, seed=args.seed, precision=precision, prior=priors,
                          decay_power=args.decay)
    cfg.validate()
    with progress_bar(cfg.steps, "visualize") as update:
        images, stats = optimize(backbone, targets, cfg, init=x0, progress=update, device=device)
    figs = measure(backbone, targets, images)
    params = {"command": "visualize", "targets": [t.label for t in targets], "size": [size[1], size[0]],
              "steps": cfg.steps, "lr": cfg.lr, "variants": cfg.variants, "decay": cfg.decay_power, "diversity": cfg.diversity,
              "seed": cfg.seed, "precision": precision, "from": args.init, "backbone": args.backbone or "efficientnet-lite0",
              "prior": repr(priors) if priors is not None else "none"}
    if cfg.variants == 1:
        save_image(images.cpu(), out, params=params, quality=args.quality)
    else:
        labels = [f"variant {i + 1}" for i in range(cfg.variants)]
        save_pil(make_sheet([images[i:i + 1].cpu() for i in range(cfg.variants)], labels, cols=min(cfg.variants, 4)),
                 out, quality=args.quality)
    if args.report:
        report = {
            "command": "visualize",
            "output": str(out),
            **headline(figs),
            "targets": figs,
            "size": [size[1], size[0]],
            "device": str(device),
            "seconds": round(time.perf_counter() - t0, 3),
            "cpu_seconds": round(time.process_time() - c0, 3),  # the machine may be shared: CPU time too
            "optimize_seconds": round(stats["seconds"], 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "history": stats["history"],
            "params": params,
        }
        if x0 is not None:
            with torch.no_grad():
                report["psnr_to_photo"] = [round(psnr(images[i:i + 1].cpu(), x0.cpu()), 3) for i in range(images.shape[0])]
        write_report(args.report, report)
    return 0
