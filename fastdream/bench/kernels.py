"""Kernel benchmark: every native op against its pure-torch reference.

    python bench/bench_kernels.py [--quick] [--sizes 512x512,1920x1080] [--device cpu|cuda|all]
                                  [--repeats N] [--json PATH]

Writes a list of records ``{op, variant, device, height, width, fastdream_ms, reference_ms, speedup,
fastdream_spread_ms, reference_spread_ms, best_baseline, best_ms, speedup_vs_best, baselines}`` plus one
metadata record (``{"metadata": {...}}``) and prints a table. ``reference`` is the obviously-right pure-torch
twin of ``fastdream/reference/``; ``baselines`` are the fast pure-torch versions a competent user would
write (``fastdream.bench.baselines``; with ``--compile`` also ``torch.compile``d ones), and ``best`` the
fastest of them. Each case is timed side by side: warm-up, then repeats cycling through every version,
synchronized on CUDA; median and spread (interquartile range) in milliseconds.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import platform
import statistics
import sys
import time

# Each module has cases(device, height, width) -> [{op, variant, fastdream, reference}, ...]
CASE_MODULES = ["fastdream.bench.cases_dream_step", "fastdream.bench.cases_resample", "fastdream.bench.cases_tiling"]
SIZES = {"full": [(512, 512), (1080, 1920), (2160, 3840)], "quick": [(1080, 1920)]}


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def metadata() -> dict:
    import torch

    import fastdream

    md = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "build_info": fastdream.build_info(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "precision_auto": fastdream.build_info()["precision_auto"],
    }
    if torch.cuda.is_available():
        md["gpu"] = torch.cuda.get_device_name(0)
    return md


def _sync(device):
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def time_side_by_side(fns, device, repeats: int, warmup: int = 2):
    """Median and IQR (ms) of each function, run in turn so that all see the same machine state."""
    for _ in range(warmup):
        for f in fns:
            f()
    _sync(device)
    times = [[] for _ in fns]
    for _ in range(repeats):
        for f, acc in zip(fns, times):
            _sync(device)
            t0 = time.perf_counter()
            f()
            _sync(device)
            acc.append((time.perf_counter() - t0) * 1e3)

    def summary(ts):
        q = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [ts[0]] * 3
        return statistics.median(ts), q[2] - q[0]

    return [summary(ts) for ts in times]


def run(sizes, devices, repeats, ops=None, printer=print, compile: bool = False):
    import torch

    torch.manual_seed(0)
    records = []
    for device in devices:
        for (h, w) in sizes:
            for modname in CASE_MODULES:
                mod = importlib.import_module(modname)
                for case in mod.cases(device, h, w, compile=compile):
                    if ops and case["op"] not in ops:
                        continue
                    n = repeats if h * w <= 1920 * 1080 else max(3, repeats // 2)
                    base = case.get("baselines", {})
                    res = time_side_by_side([case["fastdream"], case["reference"], *base.values()], device, n)
                    (fm, fs), (rm, rs) = res[0], res[1]
                    rec = {"op": case["op"], "variant": case["variant"], "device": device, "height": h, "width": w,
                           "fastdream_ms": round(fm, 3), "reference_ms": round(rm, 3),
                           "speedup": round(rm / fm, 2) if fm > 0 else None,
                           "fastdream_spread_ms": round(fs, 3), "reference_spread_ms": round(rs, 3)}
                    if base:
                        timed = {name: {"ms": round(m, 3), "spread_ms": round(sp, 3)}
                                 for name, (m, sp) in zip(base, res[2:])}
                        best = min(timed, key=lambda k: timed[k]["ms"])
                        rec.update(baselines=timed, best_baseline=best, best_ms=timed[best]["ms"],
                                   speedup_vs_best=round(timed[best]["ms"] / fm, 2) if fm > 0 else None)
                    records.append(rec)
                    vs_best = f"{rec['speedup_vs_best']:>8.2f}x" if base else f"{'-':>9}"
                    printer(f"{rec['op']:<22} {rec['variant'][:22]:<22} {device:<5} {w:>5}x{h:<5} "
                            f"{fm:>10.2f} {rm:>12.2f} {rec['speedup']:>8.2f}x {vs_best}")
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1920x1080 only")
    ap.add_argument("--sizes", help="comma-separated HxW list, e.g. 512x512,1080x1920 (height first)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "all"])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--op", action="append", help="only these ops")
    ap.add_argument("--json", help="write the records here")
    ap.add_argument("--compile", action="store_true",
                    help="also time torch.compile'd baselines (inductor; tens of seconds of compiling per case)")
    args = ap.parse_args(argv)
    import torch

    import fastdream

    if args.sizes:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    else:
        sizes = SIZES["quick" if args.quick else "full"]
    gpu = torch.cuda.is_available() and fastdream.has_cuda()
    devices = {"auto": ["cpu"] + (["cuda"] if gpu else []), "cpu": ["cpu"], "cuda": ["cuda"],
               "all": ["cpu", "cuda"]}[args.device]
    if "cuda" in devices and not gpu:
        print("no CUDA GPU visible (or CUDA not compiled): CUDA skipped", file=sys.stderr)
        devices = [d for d in devices if d != "cuda"]
    from fastdream.precision import describe

    auto = describe()
    print(f"precision auto: {auto['cpu']} on this CPU ({', '.join(auto['cpu_bf16_flags']) or 'no native bf16'})"
          + (f", {auto['cuda']} on CUDA" if "cuda" in auto else ""))
    print(f"{'op':<22} {'variant':<22} {'dev':<5} {'size':>11} {'fastdream ms':>10} {'reference ms':>12} "
          f"{'vs ref':>9} {'vs best':>9}")
    records = run(sizes, devices, args.repeats, args.op, compile=args.compile)
    if args.json:
        out = records + [{"metadata": metadata()}]
        pathlib.Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
