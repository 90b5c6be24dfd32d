"""Benchmark a dream filter (ONNX Runtime) against its iterative teacher at one size.

    python bench/bench_filter.py                        # shipped filter, 640x480, 2 threads
    python bench/bench_filter.py --json bench/results/filter.json --teacher-runs 1

The input is a real photo (examples/chelsea.jpg, resized to the size): the teacher's dream of noise
is not typical. The filter: warm-up runs, then ``--runs`` timed runs (median, min, p90). The teacher:
``--teacher-runs`` full dreams with the filter's teacher parameters (from its metadata). On a shared
machine the absolute times move with the load (the 1-minute load average is recorded); the
teacher/filter ratio, measured in the same conditions, moves less.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys

import fastdream

fastdream.configure_process()  # before torch, as the CLI does (fastdream.process)
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def photo(size, path=REPO / "examples" / "chelsea.jpg"):
    """The benchmark input: ``[1, 3, H, W]`` float32, a photo resized (and cropped) to ``size`` (W, H)."""
    import torch.nn.functional as F

    from fastdream.imageio import load_image

    x, _ = load_image(path)
    W, H = size
    h, w = x.shape[-2:]
    s = max(H / h, W / w)
    x = F.interpolate(x, size=(max(H, round(h * s)), max(W, round(w * s))), mode="bilinear", antialias=True,
                      align_corners=False)
    y0, x0 = (x.shape[-2] - H) // 2, (x.shape[-1] - W) // 2
    return x[..., y0:y0 + H, x0:x0 + W].clamp(0, 1).contiguous()


def machine():
    import onnxruntime as ort
    import torch

    return {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0], "onnxruntime": ort.__version__, "torch": torch.__version__,
            "providers": ort.get_available_providers()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="filter .onnx (default: the shipped filter)")
    p.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=[640, 480])
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--teacher-runs", type=int, default=1, help="iterative teacher dreams to time (0: skip)")
    p.add_argument("--teacher-threads", type=int, help="torch threads for the teacher (default: torch's)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from fastdream.distill.runtime import FilterRunner

    x = photo(tuple(args.size))
    runner = FilterRunner(args.model, device=args.device, threads=args.threads)
    a = x.numpy()
    load_before = os.getloadavg()[0]
    for _ in range(args.warmup):
        runner.run_numpy(a)
    ms = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        runner.run_numpy(a)
        ms.append(1000 * (time.perf_counter() - t0))
    res = {"bench": "filter", "size": args.size, "model": runner.path.name, "provider": runner.provider,
           "threads": args.threads, "params": runner.params, "runs": args.runs,
           "ms_median": statistics.median(ms), "ms_min": min(ms), "ms_p90": float(np.percentile(ms, 90)),
           "ms_spread": statistics.pstdev(ms), "machine": {**machine(), "load_average_1min_before": load_before}}
    print(f"filter {args.size[0]}x{args.size[1]}: median {res['ms_median']:.1f} ms, min {res['ms_min']:.1f} ms "
          f"({runner.provider}, {args.threads} threads, load {load_before:.1f})")
    if args.teacher_runs > 0:
        from fastdream.api import dream_tensor
        from fastdream.distill.evaluate import teacher_from_params

        if args.teacher_threads:
            torch.set_num_threads(args.teacher_threads)
        bb, obj, cfg, max_size = teacher_from_params(runner.teacher, (args.size[1], args.size[0]))
        secs = []
        for _ in range(args.teacher_runs):
            t0 = time.perf_counter()
            dream_tensor(x, obj, bb, cfg, max_size=max_size)
            secs.append(time.perf_counter() - t0)
        # the filter again, right after, so that both see similar load
        ms2 = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            runner.run_numpy(a)
            ms2.append(1000 * (time.perf_counter() - t0))
        filt = statistics.median(ms + ms2)
        res.update(teacher_seconds=statistics.median(secs), teacher_runs=args.teacher_runs,
                   teacher_threads=torch.get_num_threads(), ms_median_all=filt,
                   speedup=1000 * statistics.median(secs) / filt, load_average_1min_after=os.getloadavg()[0])
        print(f"teacher: {res['teacher_seconds']:.2f} s per picture; filter is {res['speedup']:.0f}x faster")
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
