"""Benchmark cases for ``dream_step``: fastdream's fused op vs the pure-torch reference chain.

``cases(device, height, width, compile=False)`` returns dicts ``{"op", "variant", "fastdream",
"reference", "baselines"}``; each callable runs one step on pre-made seeded inputs (the fused op updates
its own image copy in place, repeatedly; the reference returns a new image each time). ``baselines`` are
the fast pure-torch versions (``fastdream.bench.baselines.BestDreamStep``: separable passes, in place;
with ``compile=True`` also its ``torch.compile``d twin).
"""
from __future__ import annotations

import torch

from fastdream.bench.baselines import BestDreamStep
from fastdream.ops.dream_step import dream_step
from fastdream.reference.dream_step import _dream_step

VARIANTS = {
    # three 9x9 Gaussians averaged (a cascade), std normalization, per-channel bounds
    "cascade3_k9_std": dict(sigma=(0.5, 1.0, 2.0), kernel_size=9, norm="std",
                            lower=(-2.1, -2.0, -1.8), upper=(2.2, 2.4, 2.6)),
    "plain_mean_abs": dict(sigma=None, norm="mean_abs"),
    "blur1_mean_abs": dict(sigma=1.0, norm="mean_abs"),
}


def _inputs(device: str, height: int, width: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, height, width, generator=g).to(device)
    grad = torch.randn(1, 3, height, width, generator=g).to(device)
    return image, grad


def cases(device: str, height: int, width: int, compile: bool = False) -> list[dict]:
    out = []
    for variant, kw in VARIANTS.items():
        image, grad = _inputs(device, height, width)
        fd_image = image.clone()
        args = dict(step_size=0.01, shift=(13, -29), **kw)

        def fastdream_fn(fd_image=fd_image, grad=grad, args=args):
            dream_step(fd_image, grad, **args)

        def reference_fn(image=image, grad=grad, args=args):
            _dream_step(image, grad, **args)

        baselines = {}
        for name, comp in (("torch separable", False), ("torch separable, compiled", True)):
            if comp and not compile:
                continue
            best = BestDreamStep(3, device=device, compile=comp, **args)
            best_image = image.clone()
            baselines[name] = lambda best=best, best_image=best_image, grad=grad: best(best_image, grad)
        out.append({"op": "dream_step", "variant": variant, "fastdream": fastdream_fn, "reference": reference_fn,
                    "baselines": baselines})
    return out


if __name__ == "__main__":  # quick medians: python bench/cases_dream_step.py [H W]
    import statistics
    import sys
    import time

    h, w = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) > 2 else (1080, 1920)
    for case in cases("cpu", h, w):
        res = {}
        for side in ("fastdream", "reference"):
            fn = case[side]
            for _ in range(3):
                fn()
            ts = []
            for _ in range(15):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            res[side] = statistics.median(ts) * 1e3
        print(f"{case['variant']:18s} fastdream {res['fastdream']:7.2f} ms  reference {res['reference']:7.2f} ms  "
              f"x{res['reference'] / res['fastdream']:.1f}")
