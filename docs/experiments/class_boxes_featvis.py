"""A probe, not a feature: a class in a box drawn by `visualize`'s optimizer (Fourier parameterization,
Adam, the BN prior) started from the box's pixels at about 224x224, scaled back and pasted with a
feathered edge (8 % of the box's short side); judged by EfficientNet-Lite2 in the box, on the wide
tuning set of class_boxes.py (docs/priors.md). From the repository root:

    python docs/experiments/class_boxes_featvis.py STEPS LR TAG [DECAY] [OUT_DIR]
    python docs/experiments/class_boxes_featvis.py 256 0.05 decay125 1.25 OUT
"""
import sys, json, pathlib, time, torch, torch.nn.functional as F
REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "docs/experiments"))
from class_boxes import TUNE_WIDE
from fastdream.featvis.api import get_backbone
from fastdream.featvis.visualize import VisualizeConfig, optimize, visualize_priors
from fastdream.objective_text import parse_targets
from fastdream.imageio import load_image, save_image
from fastdream.metrics import Judge
steps = int(sys.argv[1]); lr = float(sys.argv[2]); tag = sys.argv[3]
out_dir = pathlib.Path(sys.argv[5] if len(sys.argv) > 5 else "."); out_dir.mkdir(parents=True, exist_ok=True)
judge = Judge(); bb = get_backbone(None, "cpu"); rows = []
for photo, long, boxes in TUNE_WIDE:
    src = pathlib.Path(photo.format(train=str(REPO / "build/photos/train")))
    if not src.is_absolute(): src = REPO / src
    x, _ = load_image(src)
    if long:
        H, W = x.shape[-2:]; s = long / max(H, W)
        x = F.interpolate(x, size=(round(H*s), round(W*s)), mode="bilinear", antialias=True).clamp(0, 1)
    x = x.mul(255).round().div(255); y = x.clone(); H, W = x.shape[-2:]
    t0 = time.time()
    for name, box in boxes:
        x0, y0, x1, y1 = (float(v) for v in box.split(","))
        r0, r1, c0, c1 = round(y0*H), round(y1*H), round(x0*W), round(x1*W)
        crop = y[..., r0:r1, c0:c1]
        s = 224 / (crop.shape[-2] * crop.shape[-1]) ** 0.5
        hw = (round(crop.shape[-2]*s), round(crop.shape[-1]*s))
        init = F.interpolate(crop, size=hw, mode="bicubic", antialias=True).clamp(0, 1)
        tg = parse_targets(bb, hw, [name])
        cfg = VisualizeConfig(size=hw, steps=steps, lr=lr, prior=visualize_priors(None), decay_power=float(sys.argv[4]) if len(sys.argv) > 4 else 1.25)
        img, _ = optimize(bb, tg, cfg, init=init)
        back = F.interpolate(img, size=crop.shape[-2:], mode="bicubic", antialias=True).clamp(0, 1)
        # feathered paste (8% of the short side)
        h, w = crop.shape[-2:]; f = max(1, round(0.08 * min(h, w)))
        ry = torch.clamp(torch.minimum(torch.arange(h), torch.arange(h).flip(0)).float() / f, max=1)
        rx = torch.clamp(torch.minimum(torch.arange(w), torch.arange(w).flip(0)).float() / f, max=1)
        m = (ry[:, None] * rx[None, :])
        y[..., r0:r1, c0:c1] = crop * (1 - m) + back * m
    y = y.mul(255).round().div(255)
    save_image(y, out_dir / f"box_{tag}_{src.stem}.png")
    for name, box in boxes:
        x0, y0, x1, y1 = (float(v) for v in box.split(","))
        p, rank = judge.recognize(y, name, (x0*W, y0*H, x1*W, y1*H))
        rows.append({"photo": src.name, "class": name, "p": round(p, 3), "rank": rank, "seconds": round(time.time()-t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
print(tag, "top-1", sum(r["rank"] == 1 for r in rows), "of", len(rows))
json.dump(rows, open(out_dir / f"box_{tag}.json", "w"))
