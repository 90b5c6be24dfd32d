"""Is a filter trained on the teacher's pairs the mean of the teacher's dreams over its seeds? (docs/distill.md,
"The teacher's seed".) The teacher's dreams of the held-out photos with seeds 1-4, and their averages over
2 and 4 seeds, judged against the seed-0 teacher as the filter is (EfficientNet-Lite2 ratios), with the
energy of each change per band against the teacher's; and the teacher without jitter (--jitter 0), a
dream that is a function of the photo alone. Reads a `fastdream distill eval --save` folder:

    python docs/experiments/teacher_seeds.py build/eval/NAME --json docs/experiments/results/teacher_seeds.json
"""
import argparse
import dataclasses
import json
import pathlib
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from filter_gap import band_energy, load  # noqa: E402
from fastdream.distill.evaluate import teacher_from_params  # noqa: E402
from fastdream.distill.runtime import FilterRunner  # noqa: E402
from fastdream.engine.dream import dream_tensor  # noqa: E402
from fastdream.metrics import Judge  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("folder", type=pathlib.Path, help="a `fastdream distill eval --save` folder")
ap.add_argument("--model", default="default", help="the filter whose teacher is dreamed (its metadata)")
ap.add_argument("--json", type=pathlib.Path)
args = ap.parse_args()
torch.set_grad_enabled(False)
folder = args.folder
names = sorted(p.name[:-len("_teacher.png")] for p in folder.glob("*_teacher.png"))
params = FilterRunner(args.model).teacher
judge = Judge()
rows = {}; energy = {}
for n in names:
    x, t, f = (load(folder / f"{n}_{k}.png") for k in ("input", "teacher", "filter"))
    bb, obj, cfg, ms = teacher_from_params(params, x.shape[-2:])
    with torch.enable_grad():
        check, _ = dream_tensor(x, obj, bb, cfg, max_size=ms)
        seeds = [dream_tensor(x, obj, bb, dataclasses.replace(cfg, seed=s), max_size=ms)[0] for s in (1, 2, 3, 4)]
        nojit, _ = dream_tensor(x, obj, bb, dataclasses.replace(cfg, jitter=0), max_size=ms)
    cands = {"filter": f, "seed 1": seeds[0], "mean of seeds 1-2": sum(seeds[:2]) / 2,
             "mean of seeds 1-4": sum(seeds) / 4, "no jitter": nojit, "recomputed seed 0": check}
    for k, v in cands.items():
        d, g = judge.mimicry(v.clamp(0, 1), t, x)
        rows.setdefault(k, []).append((d, g))
        energy.setdefault(k, []).append(band_energy(v - x))
    energy.setdefault("teacher", []).append(band_energy(t - x))
    print(n, {k: [round(a, 3) for a in rows[k][-1]] for k in rows}, file=sys.stderr, flush=True)
out = {}
for k, v in rows.items():
    a = np.array(v); e = np.mean(energy[k], 0) / np.mean(energy["teacher"], 0)
    out[k] = {"lpips_ratio": round(float(a[:, 0].mean()), 4), "gram_ratio": round(float(a[:, 1].mean()), 4),
              "band_energy_vs_teacher": e.round(3).tolist()}
    print(f"{k:22s} LPIPS {a[:,0].mean():.3f}  Gram {a[:,1].mean():.3f}  bands {' '.join(f'{r:.2f}' for r in e)}")
if args.json:
    args.json.write_text(json.dumps({"folder": folder.name, "pictures": names, "summary": out}, indent=1))
