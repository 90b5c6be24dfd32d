"""Faces in boxes on photos without faces (docs/priors.md): one `fastdream dream PHOTO --face B1 --face B2`
run per photo with the defaults; the report's full-cascade check (detected, IoU, score) per box; and,
where the installed OpenCV has it (OpenCV 4.x ships `cv2.data.haarcascades`; 5.x dropped the cascade
classifier), whether OpenCV's frontal-face Haar cascade finds each box too. From the repository root:

    python docs/experiments/faces.py --photos PATH/TO/images --out faces.json
    python docs/experiments/faces.py --haar-only faces.json     # with a Python that has OpenCV 4
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

CASES = [("brick.png", 384, ["0.12,0.15,0.42,0.5", "0.58,0.45,0.88,0.8"]),
         ("grass.png", 384, ["0.1,0.1,0.4,0.45", "0.55,0.5,0.9,0.9"])]


def haar(picture_path: str, boxes_px):
    """For each box: the best IoU of a Haar-cascade face with it (None: no cascade in this OpenCV)."""
    import cv2
    import numpy as np

    if not hasattr(cv2, "CascadeClassifier"):
        return None
    casc = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    grey = cv2.cvtColor(cv2.imread(picture_path), cv2.COLOR_BGR2GRAY)
    found = casc.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=3, minSize=(20, 20))
    out = []
    for bx0, by0, bx1, by1 in boxes_px:
        best = 0.0
        for x, y, w, h in (found if len(found) else []):
            ix = max(0.0, min(bx1, x + w) - max(bx0, x))
            iy = max(0.0, min(by1, y + h) - max(by0, y))
            inter = ix * iy
            best = max(best, inter / ((bx1 - bx0) * (by1 - by0) + w * h - inter))
        out.append({"haar_iou": round(float(best), 3), "haar_found": bool(best >= 0.5)})
    return {"rows": out, "haar_faces": np.asarray(found).tolist()}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", required=True, help="the folder of held-out photos (brick, grass, hubble_deep_field, motorcycle_right)")
    ap.add_argument("--out")
    ap.add_argument("--save", help="folder for the pictures")
    ap.add_argument("--extra", default="")
    ap.add_argument("--haar-only", help="add the Haar check to a results file")
    args = ap.parse_args(argv)
    if args.haar_only:
        res = json.loads(pathlib.Path(args.haar_only).read_text())
        for case in res["cases"]:
            h = haar(case["output"], [f["box"] for f in case["faces"]])
            case["haar"] = h
            print(case["photo"], h, flush=True)
        pathlib.Path(args.haar_only).write_text(json.dumps(res, indent=1))
        return
    import torch.nn.functional as F

    from fastdream.imageio import load_image, save_image

    folder = pathlib.Path(args.save or tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, long, boxes in CASES:
        x, _ = load_image(pathlib.Path(args.photos) / name)
        H, W = x.shape[-2:]
        s = long / max(H, W)
        x = F.interpolate(x, size=(round(H * s), round(W * s)), mode="bilinear", antialias=True).clamp(0, 1)
        inp = folder / f"{pathlib.Path(name).stem}_in.png"
        save_image(x, inp)
        out, rep = folder / f"{pathlib.Path(name).stem}_faces.png", folder / f"{pathlib.Path(name).stem}_faces.json"
        cmd = [sys.executable, "-m", "fastdream.cli.main", "dream", str(inp), "-o", str(out), "--report", str(rep)]
        for b in boxes:
            cmd += ["--face", b]
        cmd += args.extra.split()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(r.stderr)
        report = json.loads(rep.read_text())
        case = {"photo": name, "output": str(out), "faces": report["faces"], "faces_found": report["faces_found"],
                "seconds": report["seconds"], "haar": haar(str(out), [f["box"] for f in report["faces"]])}
        print(json.dumps(case), flush=True)
        cases.append(case)
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps({"cases": cases}, indent=1))


if __name__ == "__main__":
    main()
