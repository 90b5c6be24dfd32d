"""fastdream dream INPUT -o OUTPUT: DeepDream a picture (or every picture in a folder)."""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

from fastdream.cli.common import Timer, add_dream_options, dream_setup, number, progress_bar
from fastdream.errors import FastdreamError, InputError


def add_parser(sub):
    from fastdream.presets import DEFAULT_PRESET, describe

    p = sub.add_parser("dream", help="DeepDream a picture", description=(
        "DeepDream a picture with the embedded EfficientNet-Lite0 (or another backbone). Without objective "
        f"flags the '{DEFAULT_PRESET}' preset is used. Outputs keep the input's size, EXIF orientation, "
        "ICC profile and alpha; the parameters are written into the file."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="a picture, or a folder of pictures")
    p.add_argument("-o", "--output", required=True, help="output picture (.png .jpg .webp .tif .bmp) or folder")
    p.add_argument("--format", choices=["png", "jpg", "webp", "tif", "bmp"], default="png",
                   help="format of the pictures written into an output folder, whatever the inputs' formats "
                        "(a .jpg input gives NAME.png unless this says jpg)")
    p.add_argument("--report", help="write a JSON report here")
    p.add_argument("--quality", type=number(int, 1, 100), default=95, help="JPEG/WebP quality (default 95)")
    add_dream_options(p, describe())
    p.set_defaults(func=run)
    return p


def _pictures_in(folder: pathlib.Path):
    from fastdream.imageio import READABLE

    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in READABLE)
    if not files:
        raise InputError(f"{folder}: no pictures in this folder")
    return files


def run(args) -> int:
    from fastdream.convert import resolve_device
    from fastdream.imageio import WRITERS, check_output_path

    src = pathlib.Path(args.input)
    dst = pathlib.Path(args.output)
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    if not 1 <= args.quality <= 100:
        raise FastdreamError(f"--quality must be 1..100, got {args.quality}")
    if src.is_dir():
        if dst.suffix.lower() in WRITERS:
            raise InputError(f"{dst}: the input is a folder, so the output must be a folder too")
        if not dst.parent.is_dir():
            raise InputError(f"{dst}: the folder {dst.parent} does not exist")
        jobs = [(f, dst / f"{f.stem}.{args.format}") for f in _pictures_in(src)]
        seen: dict = {}
        for f, o in jobs:
            if o.name in seen:
                raise InputError(f"{src}: {seen[o.name].name} and {f.name} would both be written to {o}; "
                                 "rename one of them")
            seen[o.name] = f
        dst.mkdir(exist_ok=True)
    else:
        check_output_path(dst)
        jobs = [(src, dst)]
    if args.report:
        rp = pathlib.Path(args.report)
        if not rp.parent.is_dir() and str(rp) != "-":
            raise InputError(f"{rp}: the folder {rp.parent} does not exist")
    device = resolve_device(args.device)
    reports, failed = [], []
    from fastdream.imageio import load_image

    for i, (inp, out) in enumerate(jobs):
        desc = inp.name if len(jobs) == 1 else f"{inp.name} ({i + 1}/{len(jobs)})"
        t0 = time.perf_counter()
        try:
            loaded = load_image(inp)
        except InputError as e:  # one unreadable picture of a folder: say so, dream the others
            if not src.is_dir():
                raise
            print(f"fastdream dream: error: {e}", file=sys.stderr, flush=True)
            failed.append({"input": str(inp), "error": str(e)})
            continue
        try:
            reports.append(dream_one(args, inp, out, device, desc, loaded, t0))
        except KeyboardInterrupt:
            if not reports:
                raise
            print(f"fastdream dream: interrupted; {len(reports)} of {len(jobs)} pictures were written to {dst}, "
                  f"{inp.name} and the rest were not", file=sys.stderr)
            return 130
    if args.report:
        from fastdream.report import write_report

        if src.is_dir():
            write_report(args.report, {"pictures": reports, "failed": failed})
        else:
            write_report(args.report, reports[0])
    return 2 if failed else 0


def dream_one(args, inp, out, device, desc, loaded, t0):
    from fastdream.api import dream_tensor
    from fastdream.engine.dream import Dreamer
    from fastdream.imageio import save_image
    from fastdream.report import dream_report

    x, meta = loaded
    x = x.to(device)
    H, W = x.shape[-2:]
    backbone, objective, cfg, params = dream_setup(args, (H, W), device)
    evaluator = Dreamer(backbone, objective, cfg)
    before = evaluator.evaluate(x)
    with Timer() as t, progress_bar(1, desc) as update:
        # the input is not needed after the dream (its objective is measured above): let the dream use it
        result, stats = dream_tensor(x, objective, backbone, cfg, max_size=args.max_size, progress=update,
                                     consume=True)
    del x
    after = evaluator.evaluate(result)
    extra = {}
    if args.faces:  # what the full detection cascade finds on the output, box by box
        from fastdream.engine.faces import face_report, found_faces
        from fastdream.objective_text import parse_face

        boxes = [parse_face(s, (H, W)).pixels((H, W)) for s in args.faces]
        extra["faces"] = face_report(result.cpu(), boxes)
        extra["faces_found"] = found_faces(result.cpu())
    save_image(result.cpu(), out, meta, params=params, quality=args.quality)
    return dream_report((W, H), result, device, time.perf_counter() - t0, t.seconds, before, after, stats, params,
                        input=str(inp), output=str(out), **extra)
