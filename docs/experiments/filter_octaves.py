"""Can a shipped dream filter draw the teacher's large structures if it is run like the teacher's octaves,
without retraining? Judged as `fastdream distill eval` judges (docs/distill.md): EfficientNet-Lite2
LPIPS-style and Gram ratios to the teacher's dream at 640x480, and the fraction of the teacher's gain.
From the repository root:

    python docs/experiments/filter_octaves.py build/photos/heldout --out results.json

Ways of running the filter f on a photo x (down/up: bilinear, antialiased down):

- plain: f(x), what `fastdream filter` does;
- twice: f(f(x));
- octave S: the filter on the photo scaled by S, its change scaled back up and added, then f again
  (the teacher dreams a small octave first, then the full size);
- octave-only 0.5: only the change the filter makes at half size, scaled up and added.
"""
from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("photos", help="a folder of held-out photos")
    ap.add_argument("--model", default="default", help="a filter (.onnx) or a shipped filter's name")
    ap.add_argument("--out", help="JSON results")
    args = ap.parse_args(argv)
    from fastdream.distill.dataset import list_photos
    from fastdream.distill.evaluate import resize_and_crop, teacher_from_params
    from fastdream.distill.runtime import FilterRunner
    from fastdream.engine.dream import Dreamer, dream_tensor
    from fastdream.imageio import load_image
    from fastdream.metrics import Judge

    runner, judge = FilterRunner(args.model), Judge()

    def f(x):
        return torch.from_numpy(runner.run_numpy(x.numpy().astype(np.float32)))

    def down(x, s):
        return F.interpolate(x, scale_factor=s, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)

    def up(d, like):
        return F.interpolate(d, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def octave(x, s):
        xs = down(x, s)
        return f((x + up(f(xs) - xs, x)).clamp(0, 1))

    def octave_only(x, s):
        xs = down(x, s)
        return (x + up(f(xs) - xs, x)).clamp(0, 1)

    ways = {"plain": f, "twice": lambda x: f(f(x)), "octave 0.5": lambda x: octave(x, 0.5),
            "octave 0.7": lambda x: octave(x, 0.7), "octave-only 0.5": lambda x: octave_only(x, 0.5)}
    rows = {k: [] for k in ways}
    for path in list_photos(args.photos):
        x, _ = load_image(path)
        x = resize_and_crop(x, (640, 480))
        bb, obj, cfg, max_size = teacher_from_params(runner.teacher, x.shape[-2:])
        teach, _ = dream_tensor(x, obj, bb, cfg, max_size=max_size)
        ev = Dreamer(bb, obj, cfg)
        o_in, o_t = ev.evaluate(x), ev.evaluate(teach)
        for k, way in ways.items():
            y = way(x)
            lp, gr = judge.mimicry(y, teach, x)
            rows[k].append({"photo": path.name, "lpips_ratio": lp, "gram_ratio": gr,
                            "gain_fraction": (ev.evaluate(y) - o_in) / (o_t - o_in)})
        print(path.name, {k: [round(v, 3) for v in list(rows[k][-1].values())[1:]] for k in ways}, flush=True)
    summary = {}
    for k, r in rows.items():
        a = {m: [row[m] for row in r] for m in ("lpips_ratio", "gram_ratio", "gain_fraction")}
        summary[k] = {"lpips_ratio": float(np.mean(a["lpips_ratio"])), "lpips_ratio_worst": float(max(a["lpips_ratio"])),
                      "gram_ratio": float(np.mean(a["gram_ratio"])), "gram_ratio_worst": float(max(a["gram_ratio"])),
                      "gain_fraction": float(np.mean(a["gain_fraction"]))}
        print(k, {m: round(v, 3) for m, v in summary[k].items()}, flush=True)
    if args.out:
        model = pathlib.Path(runner.path).resolve()
        repo = pathlib.Path(__file__).resolve().parents[2]
        shown = str(model.relative_to(repo)) if model.is_relative_to(repo) else model.name  # no machine's paths
        pathlib.Path(args.out).write_text(json.dumps({"model": shown, "summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
