"""Class objectives in boxes, with the command's default settings, judged by EfficientNet-Lite2 inside
each box (docs/priors.md). Tuning cases (examples/) and held-out cases (a folder of
photos given as --photos, photos that tuning never saw) are listed below; run from the repository root:

    python docs/experiments/class_boxes.py --photos PATH/TO/images --set held-out --out results.json

Each case is one `fastdream dream` run (in a subprocess, as a user runs it) with `--class NAME@BOX`
for each box and nothing else (plus `--prior none` for the comparison rows), then Lite2's probability
and rank of the class in the box of the output, and the largest change outside the boxes.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]

# (photo, long side or None, [(class, "x0,y0,x1,y1" fractions)])
TUNE = [
    ("examples/astronaut.jpg", None, [("jellyfish", "0.5,0,1,0.5"), ("golden retriever", "0,0.55,0.5,1")]),
    ("examples/chelsea.jpg", None, [("goldfish", "0.6,0.05,0.95,0.55")]),
]
# A wider tuning set: training photos of the dream filters (bench/fetch_photos.py --out build/photos;
# none of them is a held-out photo below), other classes than the held-out cases'.
TUNE_WIDE = TUNE + [
    ("{train}/mate-Dune.jpg", 384, [("goldfish", "0.08,0.1,0.48,0.55"), ("pineapple", "0.55,0.4,0.95,0.95")]),
    ("{train}/gcompris-greatWallofChina.jpg", 384, [("balloon", "0.55,0.05,0.95,0.5")]),
    ("{train}/lomiri-aitzgorri_by_Aitzol_Berasategi.jpg", 384, [("red fox", "0.1,0.45,0.5,0.95")]),
    ("{train}/mate-Aqua.jpg", 384, [("tabby", "0.25,0.2,0.75,0.8")]),
    ("{train}/plasma-Path.jpg", 384, [("sports car", "0.3,0.5,0.75,0.95")]),
    ("{train}/gcompris-cow.jpg", 384, [("daisy", "0.6,0.05,0.95,0.45")]),
]
HELD_OUT = [
    ("{photos}/brick.png", 384, [("monarch", "0.1,0.1,0.5,0.5"), ("strawberry", "0.55,0.5,0.95,0.9")]),
    ("{photos}/grass.png", 384, [("tree frog", "0.3,0.2,0.8,0.7")]),
    ("{photos}/hubble_deep_field.jpg", 384, [("lemon", "0.5,0.1,0.9,0.5")]),
    ("{photos}/motorcycle_right.png", 384, [("school bus", "0.05,0.05,0.45,0.5")]),
]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", required=True, help="the folder of held-out photos (brick, grass, hubble_deep_field, motorcycle_right)")
    ap.add_argument("--set", choices=["tune", "tune-wide", "held-out"], default="held-out")
    ap.add_argument("--train-photos", default=str(REPO / "build/photos/train"),
                    help="the folder of training photos that tune-wide uses (bench/fetch_photos.py)")
    ap.add_argument("--extra", default="", help="extra flags for fastdream dream (e.g. '--prior none')")
    ap.add_argument("--out", help="JSON results")
    ap.add_argument("--save", help="folder for the pictures")
    args = ap.parse_args(argv)
    import torch
    import torch.nn.functional as F

    from fastdream.imageio import load_image, save_image
    from fastdream.metrics import Judge

    judge = Judge()
    cases = {"tune": TUNE, "tune-wide": TUNE_WIDE, "held-out": HELD_OUT}[args.set]
    rows = []
    tmp = pathlib.Path(tempfile.mkdtemp())
    if args.save:
        pathlib.Path(args.save).mkdir(parents=True, exist_ok=True)
    for photo, long, boxes in cases:
        src = pathlib.Path(photo.format(photos=args.photos, train=args.train_photos))
        if not src.is_absolute():
            src = REPO / src
        x, _ = load_image(src)
        if long:
            H, W = x.shape[-2:]
            s = long / max(H, W)
            x = F.interpolate(x, size=(round(H * s), round(W * s)), mode="bilinear", antialias=True).clamp(0, 1)
        inp = tmp / (src.stem + ".png")
        save_image(x, inp)
        x, _ = load_image(inp)  # the 8-bit picture the command reads
        out = (pathlib.Path(args.save) if args.save else tmp) / f"{src.stem}_boxes.png"
        cmd = [sys.executable, "-m", "fastdream.cli.main", "dream", str(inp), "-o", str(out)]
        for name, box in boxes:
            cmd += ["--class", f"{name}@{box}"]
        cmd += args.extra.split()
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(r.stderr)
        secs = time.time() - t0
        y, _ = load_image(out)
        H, W = y.shape[-2:]
        outside = torch.ones(H, W, dtype=torch.bool)
        for name, box in boxes:
            x0, y0, x1, y1 = (float(v) for v in box.split(","))
            px = (x0 * W, y0 * H, x1 * W, y1 * H)
            p, rank = judge.recognize(y, name, px)
            p0, rank0 = judge.recognize(x, name, px)
            outside[round(y0 * H):round(y1 * H), round(x0 * W):round(x1 * W)] = False
            rows.append({"photo": src.name, "size": [W, H], "class": name, "box": box, "p": round(p, 3),
                         "rank": rank, "p_before": round(p0, 4), "rank_before": rank0, "seconds": round(secs, 1)})
        diff = (y - x).abs().amax(1)[0]
        for row in rows[-len(boxes):]:
            row["max_change_outside"] = round(float(diff[outside].max()) if outside.any() else 0.0, 4)
        print(json.dumps(rows[-len(boxes):]), flush=True)
    top1 = sum(r["rank"] == 1 for r in rows)
    print(f"top-1 in {top1} of {len(rows)} boxes", flush=True)
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps({"set": args.set, "extra": args.extra, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
