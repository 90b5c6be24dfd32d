"""What the judge's distances ask of a filter: the teacher's own dream, degraded in known ways, judged
like a filter's output (EfficientNet-Lite2 mimicry ratios against the teacher's dream, as
``fastdream distill eval`` gives them).

Reads the pictures ``fastdream distill eval ... --save DIR`` wrote (``NAME_input.png``,
``NAME_teacher.png``, ``NAME_filter.png``) and judges, for every photo:

- the filter's output (the eval's own figure, recomputed);
- the teacher's change scaled by 0.75 and 0.5 (a lighter dream with every structure in place);
- the teacher's dream blurred (Gaussian, sigma 1 and 2 pixels) and at half resolution (2x down with
  antialiasing, then up): its structures in place, its finest detail gone;
- the teacher's change shifted by 8 pixels (every structure drawn, each in a slightly wrong place);
- the filter's change plus the teacher's change blurred at sigma 4 (the filter given the teacher's
  large structures): how much of the gap is the large structures;
- the two bands swapped at sigma 2: the filter's change blurred at sigma 2 (its large structures) with
  the teacher's finer detail (its change less its own blur), and the other way round; the filter's
  large structures alone; and, where ``distill eval --reference-seed 1 --save`` left
  ``NAME_teacher_seed1.png``, the filter's large structures with the seed-1 teacher's fine detail (a
  dream's fine detail that is not this teacher's, drawn on the same photo);
- the energy of the filter's and the teacher's change per band (``--bands``): differences of Gaussians
  at sigma 0.7, 1, 2, 4, 8 and the rest.

Beside each: its 2-pixel grid (``fastdream.distill.losses.phase_grid``, mean, x 1e4), which a filter
whose output phases are free can draw where the teacher has none.

    python docs/experiments/filter_gap.py build/eval/NAME --json docs/experiments/results/filter_gap.json
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
import torch
import torch.nn.functional as F

from fastdream.distill.losses import phase_grid
from fastdream.imageio import load_image
from fastdream.metrics import Judge, gaussian_blur


def load(p: pathlib.Path) -> torch.Tensor:
    return load_image(p)[0]


blur = gaussian_blur  # separable, 3 sigma either side, edges mirrored


def variants(x, t, f, t1=None):
    d = t - x
    c = f - x
    split = {"filter large (sigma 2) + teacher fine": x + blur(c, 2.0) + (d - blur(d, 2.0)),
             "teacher large (sigma 2) + filter fine": x + blur(d, 2.0) + (c - blur(c, 2.0)),
             "filter large (sigma 2) alone": x + blur(c, 2.0)}
    if t1 is not None:
        d1 = t1 - x
        split["filter large (sigma 2) + seed-1 teacher fine"] = x + blur(c, 2.0) + (d1 - blur(d1, 2.0))
    half = F.interpolate(F.interpolate(t, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False),
                         size=t.shape[-2:], mode="bilinear", align_corners=False)
    shifted = x + torch.roll(d, shifts=(8, 8), dims=(-2, -1))
    return {
        "filter": f,
        "teacher change x0.75": x + 0.75 * d,
        "teacher change x0.5": x + 0.5 * d,
        "teacher blurred sigma 1": blur(t, 1.0),
        "teacher blurred sigma 2": blur(t, 2.0),
        "teacher at half resolution": half,
        "teacher change shifted 8 px": shifted,
        "filter + teacher change blurred sigma 4": f + blur(d, 4.0),
        **split,
    }


def band_energy(c: torch.Tensor) -> list[float]:
    """Mean squared value of ``c`` in bands: differences of Gaussians at sigma 0.7, 1, 2, 4, 8, and what is
    left below sigma 8."""
    out, prev = [], c
    for s in (0.7, 1.0, 2.0, 4.0, 8.0):
        b = blur(prev, s)
        out.append(float((prev - b).pow(2).mean()))
        prev = b
    return out + [float(prev.pow(2).mean())]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=pathlib.Path, help="a `fastdream distill eval --save` folder")
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args(argv)
    names = sorted(p.name[:-len("_teacher.png")] for p in args.folder.glob("*_teacher.png"))
    if not names:
        print(f"{args.folder}: no *_teacher.png pictures (run fastdream distill eval --save there)", file=sys.stderr)
        return 2
    torch.set_grad_enabled(False)
    judge = Judge()
    rows = {}
    energy = {"filter": [], "teacher": []}
    for n in names:
        x, t, f = (load(args.folder / f"{n}_{k}.png") for k in ("input", "teacher", "filter"))
        seed1 = args.folder / f"{n}_teacher_seed1.png"
        t1 = load(seed1) if seed1.exists() else None
        energy["filter"].append(band_energy(f - x))
        energy["teacher"].append(band_energy(t - x))
        for k, v in variants(x, t, f, t1).items():
            v = v.clamp(0, 1)
            d, g = judge.mimicry(v, t, x)
            rows.setdefault(k, []).append((d, g, float(phase_grid(v).mean()) * 1e4))
        rows.setdefault("teacher", []).append((0.0, 0.0, float(phase_grid(t).mean()) * 1e4))
        print(n, file=sys.stderr)
    summary = {k: {"lpips_ratio": float(np.mean([r[0] for r in v])), "gram_ratio": float(np.mean([r[1] for r in v])),
                   "grid": float(np.mean([r[2] for r in v]))} for k, v in rows.items()}
    for k, v in summary.items():
        print(f"{k:45s} LPIPS-style {v['lpips_ratio']:.3f}  Gram {v['gram_ratio']:.3f}  grid {v['grid']:.3f}")
    bands = {k: np.mean(v, 0).tolist() for k, v in energy.items()}
    bands["filter / teacher"] = (np.array(bands["filter"]) / np.array(bands["teacher"])).tolist()
    print("band energy (sigma <0.7, 0.7-1, 1-2, 2-4, 4-8, >8), filter / teacher:",
          " ".join(f"{r:.2f}" for r in bands["filter / teacher"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"folder": str(args.folder.name), "pictures": names, "summary": summary,
                                         "band_energy": bands,
                                         "per_picture": {k: [[round(c, 4) for c in r] for r in v]
                                                         for k, v in rows.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
