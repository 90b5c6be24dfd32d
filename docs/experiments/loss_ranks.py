"""Does the training loss prefer what the judge prefers? The loss terms of `distill train` (pixel L1,
feature and Gram terms with their default layers) on whole held-out pictures, for the candidates of
filter_gap.py: the input, the filter, the filter's large structures (blurred at sigma 2) alone, those
plus the fine detail of the teacher with seed 1 (which passes both fidelity targets), and the teacher
with seed 1; each against the teacher's dream (seed 0). If the candidate that passes the targets scores
a lower loss than the filter on every term, the loss is not what holds the filter back.

    python docs/experiments/loss_ranks.py build/eval/ft-crop288 --json docs/experiments/results/loss_ranks.json
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from filter_gap import blur, load  # noqa: E402

from fastdream.backbones import get_backbone  # noqa: E402
from fastdream.distill.config import TrainConfig  # noqa: E402
from fastdream.distill.losses import FeatureLoss  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=pathlib.Path, help="a `fastdream distill eval --save` folder with *_teacher_seed1.png")
    ap.add_argument("--json", type=pathlib.Path)
    a = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    d = TrainConfig()
    loss = FeatureLoss(get_backbone(None, "cpu"), d.feature_layers, margin=d.loss_margin,
                       style_layers=d.style_layers, precision="fp32")
    names = sorted(p.name[:-len("_teacher.png")] for p in a.folder.glob("*_teacher.png"))
    rows: dict[str, list] = {}
    for n in names:
        x, t, f, t1 = (load(a.folder / f"{n}_{k}.png") for k in ("input", "teacher", "filter", "teacher_seed1"))
        c, d1 = f - x, t1 - x
        cands = {"input": x, "filter": f, "filter large alone": x + blur(c, 2.0),
                 "filter large + seed-1 teacher fine": (x + blur(c, 2.0) + (d1 - blur(d1, 2.0))).clamp(0, 1),
                 "teacher seed 1": t1}
        for k, o in cands.items():
            terms = loss(o, t)
            rows.setdefault(k, []).append({"pixel": float(F.l1_loss(o, t)), "feature": float(terms["feature"]),
                                           "style": float(terms["style"])})
        print(n, file=sys.stderr)
    summary = {k: {m: round(float(np.mean([r[m] for r in v])), 4) for m in v[0]} for k, v in rows.items()}
    for k, v in summary.items():
        print(f"{k:36s} pixel {v['pixel']:.4f}  feature {v['feature']:.3f}  Gram {v['style']:.3f}")
    if a.json:
        a.json.write_text(json.dumps({"folder": str(a.folder), "pictures": len(names), "mean": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
