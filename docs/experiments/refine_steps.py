"""The refining steps measured (docs/distill.md, "Refining"): a filter's output finished by K of its
teacher's steps at full size, beside the teacher's own short schedules from the photo for about the same
time, and beside steps of shallower objectives. Every candidate is judged like a filter (EfficientNet-Lite2
mimicry ratios against the teacher's dream, and the teacher objective's gain) on the pictures that
``fastdream distill eval ... --save DIR`` wrote (``NAME_input.png``, ``NAME_teacher.png``):

    python docs/experiments/refine_steps.py build/eval/NAME --model default --json results.json

Times are the median over the photos of one timed run after a warm-up run (the CPU's threads: torch's).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import numpy as np
import torch

from fastdream.distill.evaluate import teacher_from_params
from fastdream.distill.refine import Refiner
from fastdream.distill.runtime import FilterRunner
from fastdream.engine.dream import Dreamer, dream_tensor
from fastdream.engine.objectives import Layer
from fastdream.imageio import load_image
from fastdream.metrics import Judge


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=pathlib.Path, help="a `fastdream distill eval --save` folder")
    ap.add_argument("--model", default="default", help="the filter (a shipped name or a file)")
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args(argv)
    names = sorted(p.name[:-len("_teacher.png")] for p in args.folder.glob("*_teacher.png"))
    if not names:
        print(f"{args.folder}: no *_teacher.png pictures (run fastdream distill eval --save there)", file=sys.stderr)
        return 2
    runner = FilterRunner(args.model)
    judge = Judge()
    rows: dict[str, list] = {}

    def timed(fn):
        fn()  # warm-up
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0

    for n in names:
        x = load_image(args.folder / f"{n}_input.png")[0]
        t = load_image(args.folder / f"{n}_teacher.png")[0]
        bb, obj, cfg, _ = teacher_from_params(runner.teacher, x.shape[-2:])
        ev = Dreamer(bb, obj, cfg)
        o_in, o_t = ev.evaluate(x), ev.evaluate(t)
        f = torch.from_numpy(runner.run_numpy(x.numpy()))
        cands = {"filter": lambda: f}
        for k in (1, 2, 3):
            cands[f"filter + {k} teacher steps"] = lambda k=k: Refiner(runner.teacher, k)(f)
        for octaves, steps in ((1, 2), (4, 1), (2, 2), (1, 4), (4, 2)):
            c = dataclasses.replace(cfg, octaves=octaves, steps=steps)
            cands[f"photo, teacher {octaves} octaves x {steps} steps"] = lambda c=c: dream_tensor(x, obj, bb, c)[0]
        for layer in ("block3", "block5", "block7"):
            c = dataclasses.replace(cfg, octaves=1, steps=2)
            cands[f"filter + 2 steps of {layer}"] = lambda c=c, layer=layer: dream_tensor(f, Layer(layer), bb, c)[0]
        for name, fn in cands.items():
            v, sec = timed(fn)
            d, g = judge.mimicry(v, t, x)
            rows.setdefault(name, []).append((d, g, (ev.evaluate(v) - o_in) / (o_t - o_in), sec))
        print(n, file=sys.stderr, flush=True)
    summary = {}
    for name, v in rows.items():
        a = np.array(v)
        summary[name] = {"lpips_ratio": float(a[:, 0].mean()), "lpips_ratio_worst": float(a[:, 0].max()),
                         "gram_ratio": float(a[:, 1].mean()), "gram_ratio_worst": float(a[:, 1].max()),
                         "gain_fraction": float(a[:, 2].mean()), "seconds_median": float(np.median(a[:, 3]))}
        s = summary[name]
        print(f"{name:40s} LPIPS-style {s['lpips_ratio']:.3f} ({s['lpips_ratio_worst']:.3f})  Gram {s['gram_ratio']:.3f} "
              f"({s['gram_ratio_worst']:.3f})  gain {s['gain_fraction']:.1%}  {s['seconds_median']:.3f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"folder": args.folder.name, "model": runner.path.name, "pictures": names,
                                         "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
