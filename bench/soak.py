"""Soak test (not in CI): many dreams and many filtered frames in one process; memory must stay flat.

    python bench/soak.py [--dreams 200] [--frames 2000] [--size 96x64] [--steps 2] [--json PATH]

Part 1 dreams ``--dreams`` different pictures with the Python API (``fastdream.dream``), each a new
crop of the test photo with its own seed. Part 2 streams ``--frames`` frames through a dream filter: the
ONNX filter runtime from ``fastdream.distill`` when this installation has it (a small generator exported
to ONNX on the spot), otherwise a torch stand-in of the same shape (a few convolutions). The resident
set size (RSS, from /proc/self/statm) is recorded every ``--every`` items.

Verdict: for each part, growth = (RSS at the end - RSS after the warm-up items) / RSS after the warm-up,
and the part passes when growth <= ``--max-growth`` (default 5%). Exit code 0 when both pass, 1 if not.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import platform
import sys

import fastdream

fastdream.configure_process()  # before torch, as the CLI does (fastdream.process)
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def verdict(series, warmup, max_growth):
    """series: [(item, rss_mb)], the first entry at or after ``warmup`` items is the baseline."""
    base = next((r for i, r in series if i >= warmup), series[0][1])
    end = series[-1][1]
    growth = (end - base) / base * 100
    return {"rss_start_mb": round(series[0][1], 1), "rss_baseline_mb": round(base, 1),
            "rss_end_mb": round(end, 1), "rss_peak_mb": round(max(r for _, r in series), 1),
            "growth_percent": round(growth, 2), "pass": growth <= max_growth}


def soak_dreams(n, size, steps, every, log):
    import numpy as np
    from PIL import Image

    import fastdream

    W, H = size
    photo = Image.open(REPO / "tests" / "data" / "chelsea_224.jpg").convert("RGB")
    series = [(0, rss_mb())]
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        x0, y0 = (i * 7) % (photo.width - 64), (i * 5) % (photo.height - 48)
        crop = photo.crop((x0, y0, x0 + 64 + (i % 5) * 8, y0 + 48 + (i % 3) * 8)).resize((W, H))
        out = fastdream.dream(np.asarray(crop), octaves=1, steps=steps, seed=i, device="cpu")
        assert out.shape == (H, W, 3)
        if i % every == 0:
            gc.collect()
            series.append((i, rss_mb()))
            log(f"dream {i}/{n}: rss {series[-1][1]:.1f} MB, {(time.perf_counter() - t0) / i:.3f} s/picture")
    return series, time.perf_counter() - t0


class TorchStandIn:
    """A feed-forward filter of the distilled generator's shape: [1, 3, H, W] -> [1, 3, H, W] in [0, 1]."""

    name = "torch-stand-in"

    def __init__(self):
        import torch

        torch.manual_seed(0)
        c = 16
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, c, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(c, c, 3, padding=1, stride=2), torch.nn.ReLU(),
            torch.nn.Upsample(scale_factor=2, mode="bilinear"),
            torch.nn.Conv2d(c, 3, 3, padding=1), torch.nn.Sigmoid()).eval()

    def __call__(self, frame):
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0).float().div_(255)
            return self.net(x)[0].mul(255).byte().permute(1, 2, 0).numpy()


def make_filter(workdir, size):
    """The shipped distilled filter through the ONNX Runtime wrapper when available, else a torch stand-in."""
    try:
        from fastdream.distill.runtime import FilterRunner
    except ImportError:
        return TorchStandIn(), "torch stand-in (fastdream.distill not in this installation)"
    return FilterRunner(), "the shipped filter through fastdream.distill.runtime.FilterRunner (onnxruntime)"


def _apply(filt, frame):
    """Frames are uint8 [H, W, 3]; the filter runner takes float tensors [1, 3, H, W] in [0, 1]."""
    import numpy as np

    if isinstance(filt, TorchStandIn):
        return filt(frame)
    import torch

    x = torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0).float().div_(255)
    out = filt(x)
    return out[0].mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy() if isinstance(out, torch.Tensor) \
        else np.asarray(out)


def soak_filter(n, size, every, workdir, log):
    import numpy as np

    W, H = size
    filt, what = make_filter(workdir, size)
    log(f"filter: {what}")
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (H + 64, W + 64, 3), dtype=np.uint8)
    series = [(0, rss_mb())]
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        dx, dy = i % 64, (i // 64) % 64
        frame = np.ascontiguousarray(base[dy:dy + H, dx:dx + W])
        out = _apply(filt, frame)
        assert out is not None
        if i % every == 0:
            series.append((i, rss_mb()))
            if i % (every * 20) == 0:
                log(f"frame {i}/{n}: rss {series[-1][1]:.1f} MB, {(time.perf_counter() - t0) / i * 1000:.2f} ms/frame")
    return series, time.perf_counter() - t0, what


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dreams", type=int, default=200)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--size", default="96x64", help="WxH of the pictures and frames")
    ap.add_argument("--steps", type=int, default=2, help="dream steps per picture (one octave)")
    ap.add_argument("--every", type=int, default=10, help="record RSS every N items")
    ap.add_argument("--warmup", type=int, default=20, help="growth is measured from this item on")
    ap.add_argument("--max-growth", type=float, default=5.0, help="percent")
    ap.add_argument("--json", help="write the series and the verdict here")
    args = ap.parse_args(argv)
    W, H = (int(v) for v in args.size.lower().split("x"))

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    import tempfile

    import torch

    result = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                          "platform": platform.platform()},
              "params": {k: v for k, v in vars(args).items() if k != "json"}}
    if args.dreams:
        series, secs = soak_dreams(args.dreams, (W, H), args.steps, args.every, log)
        result["dreams"] = {"series": series, "seconds": round(secs, 1), **verdict(series, args.warmup,
                                                                                   args.max_growth)}
    if args.frames:
        with tempfile.TemporaryDirectory() as d:
            series, secs, what = soak_filter(args.frames, (W, H), args.every, d, log)
        result["filter"] = {"runtime": what, "series": series, "seconds": round(secs, 1),
                            **verdict(series, args.warmup, args.max_growth)}
    parts = [k for k in ("dreams", "filter") if k in result]
    result["pass"] = all(result[k]["pass"] for k in parts)
    for k in parts:
        r = result[k]
        print(f"{k}: rss start {r['rss_start_mb']} MB, after warm-up {r['rss_baseline_mb']} MB, end "
              f"{r['rss_end_mb']} MB, growth {r['growth_percent']}% -> {'pass' if r['pass'] else 'FAIL'} "
              f"({r['seconds']} s)")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
