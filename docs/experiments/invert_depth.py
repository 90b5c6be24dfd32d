"""What the weights remember: invert a photo from each depth of EfficientNet-Lite0, with and without the
BatchNorm prior, and judge the result with EfficientNet-Lite2 (docs/priors.md). Run from the repo root:

    python docs/experiments/invert_depth.py examples/chelsea.jpg --size 128 --steps 60 --out inv.json

Several photos at once (the block10 check on the filters' held-out photos, docs/priors.md):

    python docs/experiments/invert_depth.py examples/chelsea.jpg build/photos/heldout/*.jpg --size 224 \
        --layers block10 --bn 0.3 1 3 --out block10.json

Rows: layer, prior (none / bn), PSNR and SSIM against the resized photo, Lite2 distance to it.
"""
from __future__ import annotations

import argparse
import json
import pathlib


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("photos", nargs="+")
    ap.add_argument("--layers", default="stem,block3,block6,block8,block10,block13,head,logits")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0, help="the inversion's seed (its random start)")
    ap.add_argument("--bn", type=float, nargs="*", default=[1.0], help="scales of the default BN weight to try")
    ap.add_argument("--out")
    ap.add_argument("--save", help="folder for the pictures")
    args = ap.parse_args(argv)
    from fastdream.backbones import get_backbone
    from fastdream.engine.compose import PriorSpec, make_priors
    from fastdream.featvis.api import fit_size
    from fastdream.featvis.invert import INVERT_PRIOR_WEIGHTS, InvertConfig, invert_layers
    from fastdream.imageio import load_image, save_image
    from fastdream.metrics import Judge

    bb = get_backbone(None, "cpu")
    judge = Judge()
    layers = args.layers.split(",")
    rows = []
    for photo in args.photos:
        x, _ = load_image(photo)
        x = fit_size(x, args.size)
        for scale in [0.0, *args.bn]:
            prior = make_priors([PriorSpec("bn", scale)], INVERT_PRIOR_WEIGHTS) if scale else None
            cfg = InvertConfig(steps=args.steps, seed=args.seed)
            pics, rs = invert_layers(bb, x, layers, cfg, judge=judge, prior=lambda layer: prior)
            for r, p in zip(rs, pics):
                r["bn_scale"] = scale
                r["photo"] = pathlib.Path(photo).name
                print(json.dumps(r), flush=True)
                if args.save:
                    save_image(p, pathlib.Path(args.save) / f"{pathlib.Path(photo).stem}_{r['layer']}_bn{scale:g}.png")
            rows += rs
    def dist(photo, layer, s):
        return next(r["lite2_distance"] for r in rows if r["photo"] == photo and r["layer"] == layer and r["bn_scale"] == s)

    names = sorted({r["photo"] for r in rows})
    for scale in args.bn:  # per layer: on how many photos the prior brings the inversion closer
        for layer in layers:
            closer = sum(dist(n, layer, scale) < dist(n, layer, 0.0) for n in names)
            print(f"{layer}, BN prior x{scale:g}: closer on {closer} of {len(names)} photos", flush=True)
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps({"photos": args.photos, "size": args.size, "steps": args.steps,
                                                     "seed": args.seed,
                                                     "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
