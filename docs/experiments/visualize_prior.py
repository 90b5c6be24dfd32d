"""`fastdream visualize` with and without the prior, judged by EfficientNet-Lite2 (top-1 and probability
of the class) and by Hasler-Suesstrunk colourfulness (docs/priors.md). From the repository root:

    python docs/experiments/visualize_prior.py --classes "tabby,school bus,broccoli,monarch,castle" --out v.json
    python docs/experiments/visualize_prior.py --priors none,default --save DIR --sheet docs/img/visualize_prior.jpg

Each class is one `fastdream visualize --class NAME` run with the defaults (plus `--prior none` for
the comparison).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--classes", default="tabby,school bus,broccoli,monarch,castle")
    ap.add_argument("--priors", default="default,none", help="'default' and/or --prior values")
    ap.add_argument("--extra", default="", help="extra flags for fastdream visualize (e.g. '--steps 256')")
    ap.add_argument("--out")
    ap.add_argument("--save", help="folder for the pictures")
    ap.add_argument("--sheet", help="also write the pictures as one sheet here: a row per prior, a column per class")
    args = ap.parse_args(argv)
    from fastdream.imageio import load_image
    from fastdream.metrics import Judge, colourfulness

    judge = Judge()
    folder = pathlib.Path(args.save or tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for prior in args.priors.split(","):
        for name in args.classes.split(","):
            out = folder / f"vis_{name.replace(' ', '_')}_{prior}.png"
            cmd = [sys.executable, "-m", "fastdream.cli.main", "visualize", "--class", name, "-o", str(out)]
            if prior != "default":
                cmd += ["--prior", prior]
            cmd += args.extra.split()
            t0 = time.time()
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                raise SystemExit(r.stderr)
            x, _ = load_image(out)
            p, rank = judge.recognize(x, name)
            row = {"class": name, "prior": prior, "extra": args.extra, "p": round(p, 3), "rank": rank,
                   "colourfulness": round(colourfulness(x), 1), "seconds": round(time.time() - t0, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    for prior in args.priors.split(","):
        sel = [r for r in rows if r["prior"] == prior]
        print(prior, "top-1", sum(r["rank"] == 1 for r in sel), "of", len(sel), "mean colourfulness",
              round(sum(r["colourfulness"] for r in sel) / len(sel), 1), flush=True)
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(rows, indent=1))
    if args.sheet:
        from PIL import Image

        priors, names = args.priors.split(","), args.classes.split(",")
        tiles = [[Image.open(folder / f"vis_{n.replace(' ', '_')}_{p}.png").convert("RGB") for n in names] for p in priors]
        w, h = tiles[0][0].size
        sheet = Image.new("RGB", (w * len(names), h * len(priors)))
        for i, row in enumerate(tiles):
            for j, tile in enumerate(row):
                sheet.paste(tile, (j * w, i * h))
        sheet.save(args.sheet, quality=90)


if __name__ == "__main__":
    main()
