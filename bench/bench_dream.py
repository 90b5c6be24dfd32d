"""Dream benchmark: iterations per second of fastdream's dream loop against a plain eager loop of the
same objective, schedule and backbone, written the way existing DeepDream tools write it (NCHW float32,
torch.roll before and after, autograd, a chain of small torch ops for the update, F.interpolate + add for
the octaves).

    python bench/bench_dream.py [--sizes 512x512,1080x1920] [--octaves 2] [--steps 4] [--json PATH]

Both loops run side by side in one process with the same seed; the record also holds the max abs
difference between the two results (they differ only by float rounding and channels-last summation).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import torch
import torch.nn.functional as F


def eager_reference(backbone, img, layer, octaves, scale, steps, step_size, jitter, seed):
    """The loop as existing tools write it."""
    gen = torch.Generator().manual_seed(seed)
    H, W = img.shape[-2:]
    sizes = [(H, W)] + [(max(1, round(H / scale**i)), max(1, round(W / scale**i))) for i in range(1, octaves)]
    bases = [img] + [F.interpolate(img, size=s, mode="bilinear", align_corners=False, antialias=True) for s in sizes[1:]]
    detail = None
    for level in range(len(sizes) - 1, -1, -1):
        base = bases[level]
        x = base.clone() if detail is None else base + F.interpolate(detail, size=base.shape[-2:], mode="bilinear",
                                                                     align_corners=False)
        for _ in range(steps):
            dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen))
            torch.randint(0, 1 << 16, (2,), generator=gen)  # same random stream as fastdream (tile offsets)
            shifted = torch.roll(x, shifts=(dy, dx), dims=(2, 3)).requires_grad_(True)
            loss = backbone.forward_taps(shifted, [layer])[layer].square().mean()
            loss.backward()
            g = torch.roll(shifted.grad, shifts=(-dy, -dx), dims=(2, 3))
            g = g / (g.abs().mean() + 1e-8)
            x = (x + step_size * g).clamp(0.0, 1.0)
        detail = x - base
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="512x512,1080x1920", help="HxW list (height first)")
    ap.add_argument("--layer", default="block9")
    ap.add_argument("--octaves", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each loop (median), after a warm-up")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from fastdream.api import dream_tensor
    from fastdream.backbones import load_backbone
    from fastdream.bench.kernels import metadata
    from fastdream.engine.dream import DreamConfig
    from fastdream.engine.objectives import Layer

    bb = load_backbone()
    records = []
    print(f"{'size':>11} {'iters':>5} {'fastdream it/s':>15} {'eager it/s':>11} {'speedup':>8} {'max diff':>9}")
    for s in args.sizes.split(","):
        h, w = (int(v) for v in s.lower().split("x"))
        img = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
        img = F.avg_pool2d(F.pad(img, (2, 2, 2, 2), mode="reflect"), 5, 1)  # photo-like smoothness
        cfg = DreamConfig(octaves=args.octaves, steps=args.steps, step_size=0.012, jitter=32, seed=0,
                          min_octave_size=1, max_tile_pixels=max(h * w, 1))
        n_iter = args.octaves * args.steps
        # warm-up: one-time costs (weight layout caches, allocator) are paid by neither timed run
        warm = DreamConfig(**{**cfg.__dict__, "steps": 1, "octaves": 1})
        dream_tensor(img, Layer(args.layer), bb, warm)
        eager_reference(bb, img, args.layer, 1, cfg.octave_scale, 1, cfg.step_size, cfg.jitter, 0)
        ta, tb = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            a, _ = dream_tensor(img, Layer(args.layer), bb, cfg)
            ta.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = eager_reference(bb, img, args.layer, args.octaves, cfg.octave_scale, args.steps, cfg.step_size,
                                cfg.jitter, 0)
            tb.append(time.perf_counter() - t0)
        fa, fb = sorted(ta)[len(ta) // 2], sorted(tb)[len(tb) // 2]
        rec = {"bench": "dream", "device": "cpu", "height": h, "width": w, "layer": args.layer,
               "octaves": args.octaves, "steps": args.steps, "iterations": n_iter,
               "fastdream_it_per_s": round(n_iter / fa, 4), "reference_it_per_s": round(n_iter / fb, 4),
               "speedup": round(fb / fa, 3), "max_abs_diff": float((a - b).abs().max())}
        records.append(rec)
        print(f"{w:>5}x{h:<5} {n_iter:>5} {rec['fastdream_it_per_s']:>15.3f} {rec['reference_it_per_s']:>11.3f} "
              f"{rec['speedup']:>7.2f}x {rec['max_abs_diff']:>9.2e}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(records + [{"metadata": metadata()}], indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
