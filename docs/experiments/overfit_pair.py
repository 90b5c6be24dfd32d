"""Can the filter's layout draw the teacher's fine detail at all? Overfit it to a few teacher pairs.

The shipped filter underfits (docs/distill.md: no closer to the teacher on its training photos), and its
change lacks the teacher's detail below 2 pixels. This probe separates what the layout can draw from
what training finds: starting from the shipped ``default`` filter, each output-stage variant is trained
on the same few whole pairs of a teacher without jitter (its dream is a function of the photo, so
there is one right answer) with the pixel loss alone, and the result is measured on those very pairs:
PSNR to the teacher, the energy of the change below sigma 0.7 against the teacher's, and how much of the
teacher's fine detail it reproduces in place (1 - |f - t|^2 / |t|^2 of the fine bands).

Variants (the encoder and decoder are the shipped filter's; only the output stage differs):

- ``resize``: the shipped stage (8 channels at 1/2, resized, 3x3 with the picture);
- ``phases``: the free phases stage (12 phase channels at 1/2, pixel-shuffled);
- ``fullres``: the shipped stage plus a full-resolution residual stage: 3x3 (picture, change, the 8
  resized channels -> C), ReLU, 3x3 (C -> 3), its last layer zero so it starts as the shipped filter;
- ``stem``: the shipped stage plus the backbone's own path back to the pixels: a 1x1 (w -> 32) at 1/2,
  then the stem's transposed stride-2 convolution (initialized from the stem's weights over the
  normalization's std, learnable), zero at first. A dream's per-step change at full resolution is
  exactly such a transposed stem convolution of a 32-channel map at 1/2.

    python docs/experiments/overfit_pair.py build/distill/nojit/pairs --pairs 1,2,3 --steps 300 \
        --variants resize,phases,fullres,stem --json docs/experiments/results/overfit_pair.json
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from filter_gap import blur  # noqa: E402

from fastdream.distill.dataset import list_pairs, load_pair  # noqa: E402
from fastdream.distill.export import generator_from_onnx  # noqa: E402
from fastdream.backbones.efficientnet_lite import conv_bn  # noqa: E402
from fastdream.distill.generator import DreamNetB, _resize_to  # noqa: E402


class FullRes(nn.Module):
    """The shipped generator plus a full-resolution residual stage on its output."""

    def __init__(self, base: DreamNetB, channels: int):
        super().__init__()
        self.base = base
        self.conv1 = nn.Conv2d(3 + 3 + 8, channels, 3, padding=1, padding_mode="replicate")
        self.conv2 = nn.Conv2d(channels, 3, 3, padding=1, padding_mode="replicate")
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self._y = None
        base.head.register_forward_hook(lambda m, i, o: setattr(self, "_y", o))

    def forward(self, x):
        o = self.base(x)
        h = torch.cat([x, o - x, _resize_to(self._y, x)], 1)
        return torch.clamp(o + self.conv2(F.relu(self.conv1(h))), 0, 1)


class StemPath(nn.Module):
    """The shipped generator plus the stem's transposed convolution from a learned 32-channel map at 1/2."""

    def __init__(self, base: DreamNetB):
        super().__init__()
        self.base = base
        w = base.head.in_channels
        self.to_grad = nn.Conv2d(w, 32, 1)
        nn.init.zeros_(self.to_grad.weight)
        nn.init.zeros_(self.to_grad.bias)
        stem = base.encoder._conv_stem.weight.detach()  # [32, 3, 3, 3]
        self.back = nn.Parameter(stem / base.std.view(1, 3, 1, 1) * 0.1)
        self._h = None
        base.head.register_forward_hook(lambda m, i, o: setattr(self, "_h", i[0]))

    def forward(self, x):
        o = self.base(x)
        g = self.to_grad(self._h)  # [B, 32, H/2, W/2]
        d = F.conv_transpose2d(g, self.back, stride=2, padding=1, output_padding=1)
        return torch.clamp(o + d[..., :x.shape[-2], :x.shape[-1]], 0, 1)


class VJPPath(nn.Module):
    """The shipped generator plus the backbone's own way back to the pixels: a learned map ``g`` at the
    output of the stem (``vjp0``, 32 channels at 1/2, from the decoder's 1/2 stage) or of block2
    (``vjp2``, 24 channels at 1/4, from its 1/4 stage), carried to the picture by the vector-Jacobian
    product of the stem (and blocks 0..2) at this very picture: ``J(x)^T g``, what one gradient step of a
    dream on those features would draw. Zero at first."""

    def __init__(self, base: DreamNetB, depth: int):
        super().__init__()
        self.base, self.depth = base, depth
        w = base.config.width
        cin, cout = (w, 32) if depth == 0 else (2 * w, base.encoder._blocks[2].spec.cout)
        self.to_grad = nn.Conv2d(cin, cout, 1)
        nn.init.zeros_(self.to_grad.weight)
        nn.init.zeros_(self.to_grad.bias)
        self._h = None
        tap = base.head if depth == 0 else base.fine2
        tap.register_forward_hook(lambda m, i, o: setattr(self, "_h", i[0] if depth == 0 else o))

    def early(self, x):
        enc = self.base.encoder
        h = enc._stem_act(conv_bn(enc._conv_stem, enc._bn0, (x - self.base.mean) / self.base.std))
        for block in list(enc._blocks)[:self.depth + 1 if self.depth else 0]:
            h = block(h)
        return h

    def forward(self, x):
        o = self.base(x)
        g = self.to_grad(self._h)
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            (d,) = torch.autograd.grad(self.early(xr), xr, grad_outputs=g, create_graph=self.training)
        return torch.clamp(o + 0.02 * d, 0, 1)


def build(variant: str, channels: int) -> nn.Module:
    base, _ = generator_from_onnx("default")
    base.train()  # no half-size tail built from constants: every weight of the output stage learns
    if variant == "resize":
        return base
    if variant == "phases":
        import dataclasses

        g = DreamNetB(dataclasses.replace(base.config, output="phases"), pretrained=True)
        return g.load_generator(base)
    if variant == "fullres":
        return FullRes(base, channels)
    if variant == "stem":
        return StemPath(base)
    if variant in ("vjp0", "vjp2"):
        return VJPPath(base, int(variant[-1]))
    raise SystemExit(f"unknown variant {variant!r}")


def fine(c: torch.Tensor) -> torch.Tensor:
    return c - blur(c, 0.7)


def measure(model, xs, ys) -> dict:
    model.eval()
    rows = []
    with torch.no_grad():
        for x, t in zip(xs, ys):
            f = model(x)
            cf, ct = fine(f - x), fine(t - x)
            rows.append({"psnr_db": float(10 * torch.log10(1 / F.mse_loss(f, t))),
                         "fine_energy_ratio": float(cf.pow(2).mean() / ct.pow(2).mean()),
                         "fine_explained": float(1 - (cf - ct).pow(2).mean() / ct.pow(2).mean())})
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pairs")
    ap.add_argument("--pairs", dest="which", default="1,2,3")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--variants", default="resize,phases,fullres,stem")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    pairs = list_pairs(a.pairs)
    xs, ys = [], []
    for i in (int(k) for k in a.which.split(",")):
        x, y = load_pair(pairs[i])
        h, w = (n - n % 32 for n in x.shape[-2:])
        xs.append(x[None, :, :h, :w].float() / 255)
        ys.append(y[None, :, :h, :w].float() / 255)
    results = {}
    for v in a.variants.split(","):
        torch.manual_seed(0)
        model = build(v, a.channels).train()
        before = measure(model, xs, ys)
        model.train()
        params = [p for n, p in model.named_parameters() if p.requires_grad and "encoder" not in n]
        opt = torch.optim.Adam(params, lr=a.lr, betas=(0.9, 0.99))
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for step in range(a.steps):
            k = int(rng.integers(len(xs)))
            x, y = xs[k], ys[k]
            oy = 32 * int(rng.integers((x.shape[-2] - a.crop) // 32 + 1))
            ox = 32 * int(rng.integers((x.shape[-1] - a.crop) // 32 + 1))
            xc, yc = x[..., oy:oy + a.crop, ox:ox + a.crop], y[..., oy:oy + a.crop, ox:ox + a.crop]
            loss = F.l1_loss(model(xc), yc)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (step + 1) % 50 == 0:
                print(f"{v}: step {step + 1}/{a.steps}, L1 {float(loss):.4f}, {time.perf_counter() - t0:.0f} s",
                      file=sys.stderr, flush=True)
        after = measure(model, xs, ys)
        model.train()
        results[v] = {"before": before, "after": after, "seconds": round(time.perf_counter() - t0, 1)}
        print(v, json.dumps(results[v]), flush=True)
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps({"pairs": a.pairs, "which": a.which, "steps": a.steps,
                                                    "lr": a.lr, "crop": a.crop, "channels": a.channels,
                                                    "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
