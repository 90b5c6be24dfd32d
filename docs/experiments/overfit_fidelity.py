"""Can the generator reach the fidelity targets on pictures it has memorized? Judges filters on the very
teacher pairs they were trained on, against those pairs' dreams (EfficientNet-Lite2 mimicry ratios, as
``fastdream distill eval`` gives them, but against the pair's own teacher dream instead of a new one).

A filter fine-tuned on a handful of pairs sees each of them hundreds of times. If even then its
outputs stay as far from the teacher's dreams as a filter's do on new photos, what holds it back is
what the layout can draw (its capacity), not the amount of data or of training; if it comes close,
more training (and data) is what is missing.

    python docs/experiments/overfit_fidelity.py build/distill/overfit8/pairs --pairs 1,2,3,4,5,6,7,8 \\
        --models default,build/distill/overfit8/ft-control.onnx --json docs/experiments/results/overfit_fidelity.json
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
import torch

from fastdream.distill.dataset import list_pairs, load_pair
from fastdream.distill.runtime import FilterRunner
from fastdream.metrics import Judge, psnr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", type=pathlib.Path, help="a dataset folder of teacher pairs")
    ap.add_argument("--pairs", dest="indices", default="", help="pair numbers, comma-separated (default: all)")
    ap.add_argument("--models", required=True, help="filters, comma-separated (paths or shipped names)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args(argv)
    found = list_pairs(args.pairs)
    wanted = [int(v) for v in args.indices.split(",") if v] or list(found)
    missing = [i for i in wanted if i not in found]
    if missing or not wanted:
        print(f"{args.pairs}: no pair(s) {missing or 'at all'}", file=sys.stderr)
        return 2
    torch.set_grad_enabled(False)
    judge = Judge()
    models = [m for m in args.models.split(",") if m]
    runners = {m: FilterRunner(m, device="cpu", threads=args.threads) for m in models}
    rows = {m: [] for m in models}
    for i in wanted:
        x, y = (t.float().div(255).unsqueeze(0) for t in load_pair(found[i]))
        for m, run in runners.items():
            f = run(x).clamp(0, 1)
            d, g = judge.mimicry(f, y, x)
            rows[m].append({"pair": i, "lpips_ratio": round(d, 4), "gram_ratio": round(g, 4),
                            "psnr_db": round(psnr(f, y), 3)})
        print(f"pair {i}: " + "; ".join(f"{m} {r[-1]['lpips_ratio']:.3f} / {r[-1]['gram_ratio']:.3f}"
                                       for m, r in rows.items()), file=sys.stderr)
    summary = {m: {k: float(np.mean([r[k] for r in v])) for k in ("lpips_ratio", "gram_ratio", "psnr_db")}
               | {"lpips_worst": max(r["lpips_ratio"] for r in v), "gram_worst": max(r["gram_ratio"] for r in v)}
               for m, v in rows.items()}
    for m, s in summary.items():
        print(f"{m:50s} LPIPS-style {s['lpips_ratio']:.3f} ({s['lpips_worst']:.3f})  Gram {s['gram_ratio']:.3f} "
              f"({s['gram_worst']:.3f})  PSNR {s['psnr_db']:.2f} dB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"pairs_folder": str(args.pairs), "pairs": wanted, "summary": summary,
                                         "per_pair": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
