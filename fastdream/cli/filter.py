"""fastdream filter INPUT -o OUTPUT: run a distilled dream filter (ONNX Runtime) on a picture or a folder."""
from __future__ import annotations

import pathlib
import sys
import time

from fastdream.cli.common import number
from fastdream.errors import FastdreamError, InputError


def add_parser(sub):
    p = sub.add_parser("filter", help="dream a picture in milliseconds with a distilled filter (ONNX)",
                       description="Run a dream filter with ONNX Runtime on a picture or every picture in a folder. "
                                   "Without --model the filter shipped with fastdream is used. Very large pictures "
                                   "are filtered in overlapping tiles. Videos and streams: `fastdream video --filter`.")
    p.add_argument("input", help="a picture, or a folder of pictures")
    p.add_argument("-o", "--output", required=True, help="output picture (.png .jpg .webp .tif .bmp) or folder")
    p.add_argument("--model", help="filter .onnx, or the name of a shipped filter (default: the shipped default, in "
                                   "8 bits ('default-int8') when ONNX Runtime runs on the CPU, else 'default')")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (CUDA needs onnxruntime-gpu and a GPU)")
    p.add_argument("--strength", type=number(float, 0, 100), default=1.0,
                   help="mix with the original (after all --repeat passes): 0 = the input, 1 = the filter (default), "
                        ">1 exaggerates")
    p.add_argument("--repeat", type=number(int, 1, 100), default=1,
                   help="apply the filter N times (each pass dreams further)")
    p.add_argument("--refine", type=number(int, 0, 100), default=0, metavar="K",
                   help="finish the filter's output with K steps of its teacher at full size (the teacher's pixel-fine "
                        "detail; each step is a pass of the backbone, about 0.14 s at 640x480 on two CPU cores; "
                        "default 0)")
    p.add_argument("--threads", type=number(int, 1, 1024), help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--max-pixels", type=number(int, 1024, 1 << 31), default=2048 * 2048,
                   help="pictures above this many pixels are filtered in tiles (default 2048*2048)")
    p.add_argument("--tile", type=number(int, 64, 1 << 16), default=1024, help="tile size (default 1024)")
    p.add_argument("--quality", type=number(int, 1, 100), default=95, help="JPEG/WebP quality (default 95)")
    p.add_argument("--report", help="write a JSON report here")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    import numpy as np
    import torch

    from fastdream.distill.runtime import FilterRunner
    from fastdream.imageio import READABLE, WRITERS, check_output_path, load_image, save_image
    from fastdream.report import peak_rss_mb, write_report

    t0 = time.perf_counter()
    src, dst = pathlib.Path(args.input), pathlib.Path(args.output)
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    if src.is_dir():
        if dst.suffix.lower() in WRITERS:
            raise InputError(f"{dst}: the input is a folder, so the output must be a folder too")
        if not dst.parent.is_dir():
            raise InputError(f"{dst}: the folder {dst.parent} does not exist")
        files = sorted(f for f in src.iterdir() if f.is_file() and f.suffix.lower() in READABLE)
        if not files:
            raise InputError(f"{src}: no pictures in this folder")
        jobs = [(f, dst / (f.stem + ".png")) for f in files]
    else:
        check_output_path(dst)
        jobs = [(src, dst)]
    if args.report and str(args.report) != "-" and not pathlib.Path(args.report).parent.is_dir():
        raise InputError(f"{args.report}: the folder {pathlib.Path(args.report).parent} does not exist")
    runner = FilterRunner(args.model, device=args.device, strength=1.0, threads=args.threads,
                          max_pixels=args.max_pixels, tile=args.tile, tile_overlap=min(64, args.tile // 4))
    refiner = None
    if args.refine:
        from fastdream.distill.refine import Refiner

        refiner = Refiner.for_runner(runner, args.refine, args.device)
    if runner.fallback:
        print(f"fastdream filter: {runner.fallback}", file=sys.stderr)
    if not runner.is_fastdream:
        print(f"fastdream filter: {runner.path.name} has no fastdream metadata; running it as a picture filter "
              "(float32 [N, 3, H, W] in [0, 1] assumed)", file=sys.stderr)
    refine_ms = []
    # load and filter everything first, then write: an error leaves no partial output
    results, times = [], []
    for inp, out in jobs:
        x, meta = load_image(inp)
        x0 = a = x.numpy()
        if args.strength != 0:
            for _ in range(args.repeat):
                a = runner.run_numpy(a)
                times.append(runner.last_ms)
            if not np.isfinite(a).all():
                raise FastdreamError(f"{runner.path}: the model returned NaN or infinite values for {inp}")
            if refiner is not None:
                t1 = time.perf_counter()
                a = refiner(torch.from_numpy(a)).cpu().numpy()
                refine_ms.append(1000 * (time.perf_counter() - t1))
            if args.strength != 1:  # mix the result of all passes with the original
                a = np.clip(x0 + np.float32(args.strength) * (a - x0), 0, 1)
        results.append((inp, out, a, meta, x.shape))
    if src.is_dir():
        dst.mkdir(exist_ok=True)
    params = {"model": str(runner.path), "strength": args.strength, "repeat": args.repeat, "refine": args.refine,
              "teacher": runner.teacher.get("preset") or runner.teacher.get("objective")}
    for inp, out, a, meta, shape in results:
        save_image(torch.from_numpy(a), out, meta, params=params, quality=args.quality)
    if args.report:
        write_report(args.report, {
            "inputs": [str(j[0]) for j in jobs], "outputs": [str(j[1]) for j in jobs],
            "sizes": [[int(r[4][-1]), int(r[4][-2])] for r in results],
            "model": str(runner.path), "precision": runner.precision, "fastdream_filter": runner.is_fastdream,
            "provider": runner.provider,
            "fallback": runner.fallback, "ms_per_frame": round(float(np.median(times)), 3) if times else None,
            "ms_per_frame_all": [round(t, 3) for t in times], "seconds": round(time.perf_counter() - t0, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1), "params": runner.params, "strength": args.strength,
            "repeat": args.repeat, "refine": args.refine,
            "refine_ms": round(float(np.median(refine_ms)), 1) if refine_ms else None, "teacher": runner.teacher})
    return 0
