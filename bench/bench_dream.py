"""Dream benchmark: where the speed of a dream comes from, lever by lever, side by side in one run.

    python bench/bench_dream.py [--sizes 1080x1920,427x640] [--preset classic] [--repeats 1] [--json PATH]

Every loop dreams the same photo with the same objective, schedule and seed (a preset's: by default
``classic``: block9, 4 octaves x 10 steps, jitter 32, mean-abs normalization):

- ``peers``: the loop as public DeepDream tools write it (NCHW float32 eager; torch.roll before and after;
  autograd; the update as a chain of small torch ops: normalize, add, clamp; F.interpolate + add for the
  octaves; the whole picture at once), on the backbone as such tools run it (every BatchNorm its own op)
  with glibc's default malloc;
- ``peers_malloc``: ... with malloc keeping freed memory (lever: no page faults per step,
  ``fastdream.process``);
- ``peers_fold``: ... and BatchNorm folded into the convolutions (lever: the frozen backbone's BN folded);
- ``peers_cl``: ... and a channels-last input (lever: memory layout);
- ``peers_cl_bf16``: ... and the backbone under bf16 autocast (lever: precision, without the fused step);
- ``fused_fp32``: fastdream's engine, fp32, untiled (lever: the fused step and octave ops, against
  ``peers_cl``);
- ``fused``: fastdream's engine at ``--precision auto``, untiled;
- ``fp32``: ``fastdream dream --preset P --precision fp32`` as the command runs it (tiling by default);
- ``default``: ``fastdream dream --preset P`` as the command runs it (precision auto, tiling by default).

Results are compared by their objective (measured in fp32, no jitter) and by the LPIPS-style distance of
EfficientNet-Lite2 (a network no loop optimizes against; ``fastdream.metrics.Judge``), not by max abs
difference: dream trajectories are chaotic, rounding differences grow into different pictures of equal
quality. For scale, the fp32 dream with another seed is measured too: ``ratio_to_fp32`` of a loop is
d(loop, fp32) / d(photo, fp32); the other seed's ratio says how far two equally good dreams lie apart.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import fastdream

fastdream.configure_process()  # before torch, as the CLI does (fastdream.process)

import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[1]
LOOPS = ("peers", "peers_malloc", "peers_fold", "peers_cl", "peers_cl_bf16", "fused_fp32", "fused", "fp32",
         "default")


def chain_loop(backbone, img, layer, cfg, *, channels_last: bool, precision: str, fold: bool = True,
               malloc: bool = True):
    """The peers' loop: same schedule and random stream as fastdream's engine, written in plain torch."""
    from fastdream.backbones import efficientnet_lite
    from fastdream.process import keep_freed_memory

    keep_freed_memory(malloc)
    efficientnet_lite.FOLD_BATCHNORM = fold
    try:
        return _chain_loop(backbone, img, layer, cfg, channels_last=channels_last, precision=precision)
    finally:
        efficientnet_lite.FOLD_BATCHNORM = True
        keep_freed_memory(True)


def _chain_loop(backbone, img, layer, cfg, *, channels_last: bool, precision: str):
    from fastdream.engine.dream import octave_sizes

    gen = torch.Generator().manual_seed(cfg.seed)
    sizes = octave_sizes(*img.shape[-2:], cfg.octaves, cfg.octave_scale, cfg.min_octave_size)
    bases = [img] + [F.interpolate(img, size=s, mode="bilinear", align_corners=False, antialias=True) for s in sizes[1:]]
    detail = None
    j = cfg.jitter
    for level in range(len(sizes) - 1, -1, -1):
        base = bases[level]
        x = base.clone() if detail is None else base + F.interpolate(detail, size=base.shape[-2:], mode="bilinear",
                                                                     align_corners=False)
        for _ in range(cfg.steps):
            dy, dx = (int(v) for v in torch.randint(-j, j + 1, (2,), generator=gen))
            torch.randint(0, 1 << 16, (2,), generator=gen)  # fastdream draws tile offsets here: same stream
            shifted = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            if channels_last:
                shifted = shifted.contiguous(memory_format=torch.channels_last)
            shifted.requires_grad_(True)
            loss = backbone.forward_taps(shifted, [layer], precision)[layer].square().mean()
            loss.backward()
            g = torch.roll(shifted.grad, shifts=(-dy, -dx), dims=(2, 3))
            g = g / (g.abs().mean() + 1e-8)
            x = (x + cfg.step_size * g).clamp(0.0, 1.0).contiguous()
        detail = x - base
    return x


def photo(h: int, w: int) -> torch.Tensor:
    """examples/chelsea.jpg cropped to the aspect ratio and resized to h x w: a real photo at any size."""
    from fastdream.imageio import load_image

    x, _ = load_image(ROOT / "examples" / "chelsea.jpg")
    H, W = x.shape[-2:]
    if W / H > w / h:
        cw = round(H * w / h)
        x = x[..., :, (W - cw) // 2:(W - cw) // 2 + cw]
    else:
        ch = round(W * h / w)
        x = x[..., (H - ch) // 2:(H - ch) // 2 + ch, :]
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1080x1920,427x640", help="HxW list (height first)")
    ap.add_argument("--preset", default="classic")
    ap.add_argument("--loops", default=",".join(LOOPS), help=f"a subset of {', '.join(LOOPS)}")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs of each loop (median), after a warm-up")
    ap.add_argument("--no-judge", action="store_true", help="skip the Lite2 comparison")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from fastdream.api import dream_tensor, make_config
    from fastdream.backbones import load_backbone
    from fastdream.bench.kernels import metadata
    from fastdream.engine.dream import Dreamer
    from fastdream.engine.objectives import Layer
    from fastdream.precision import resolve_precision

    loops = [l for l in args.loops.split(",") if l]
    bad = [l for l in loops if l not in LOOPS]
    if bad:
        ap.error(f"unknown loop(s) {bad}; choose from {', '.join(LOOPS)}")
    bb = load_backbone()
    auto = resolve_precision("auto", "cpu")
    base_cfg, layers = make_config(args.preset)
    if len(layers) != 1:
        ap.error("the peers' loop takes presets of one layer")
    layer = layers[0]
    objective = Layer(layer)
    judge = None
    if not args.no_judge:
        from fastdream.metrics import Judge

        judge = Judge()
    records = []
    for s in args.sizes.split(","):
        h, w = (int(v) for v in s.lower().split("x"))
        img = photo(h, w)
        untiled = dict(max_tile_pixels=max(h * w, 1024 * 1024))

        def cfg(**kw):
            import dataclasses

            return dataclasses.replace(base_cfg, **kw)

        runs = {
            "peers": lambda: chain_loop(bb, img, layer, cfg(), channels_last=False, precision="fp32", fold=False,
                                        malloc=False),
            "peers_malloc": lambda: chain_loop(bb, img, layer, cfg(), channels_last=False, precision="fp32",
                                               fold=False),
            "peers_fold": lambda: chain_loop(bb, img, layer, cfg(), channels_last=False, precision="fp32"),
            "peers_cl": lambda: chain_loop(bb, img, layer, cfg(), channels_last=True, precision="fp32"),
            "peers_cl_bf16": lambda: chain_loop(bb, img, layer, cfg(), channels_last=True, precision="bf16"),
            "fused_fp32": lambda: dream_tensor(img, objective, bb, cfg(precision="fp32", **untiled))[0],
            "fused": lambda: dream_tensor(img, objective, bb, cfg(precision="auto", **untiled))[0],
            "fp32": lambda: dream_tensor(img, objective, bb, cfg(precision="fp32"))[0],
            "default": lambda: dream_tensor(img, objective, bb, cfg(precision="auto"))[0],
        }
        # warm-up: one-time costs (weight layout caches, allocator) are paid by no timed run
        small = photo(96, 128)
        for p in ("fp32", "bf16"):
            chain_loop(bb, small, layer, cfg(octaves=1, steps=1), channels_last=False, precision=p)
            chain_loop(bb, small, layer, cfg(octaves=1, steps=1), channels_last=True, precision=p)
        times = {l: [] for l in loops}
        outs = {}
        for _ in range(args.repeats):
            for l in loops:  # in turn, so that every loop sees the same machine state
                t0 = time.perf_counter()
                outs[l] = runs[l]()
                times[l].append(time.perf_counter() - t0)
                print(f"  {w}x{h} {l:<14} {times[l][-1]:8.2f} s", flush=True)
        n_iter = len(__import__("fastdream.engine.dream", fromlist=["octave_sizes"]).octave_sizes(
            h, w, base_cfg.octaves, base_cfg.octave_scale, base_cfg.min_octave_size)) * base_cfg.steps
        ev = Dreamer(bb, objective, cfg(precision="fp32"))
        before = ev.evaluate(img)
        rec = {"bench": "dream", "device": "cpu", "height": h, "width": w, "preset": args.preset, "layer": layer,
               "iterations": n_iter, "precision_auto": auto, "objective_input": round(before, 4), "loops": {}}
        for l in loops:
            sec = sorted(times[l])[len(times[l]) // 2]
            rec["loops"][l] = {"seconds": round(sec, 3), "it_per_s": round(n_iter / sec, 4),
                               "objective": round(ev.evaluate(outs[l]), 4)}
        if judge is not None and "fp32" in outs:
            other = dream_tensor(img, objective, bb, cfg(precision="fp32", seed=base_cfg.seed + 1))[0]
            d_in = judge.distance(img, outs["fp32"])
            rec["judge"] = {"distance_input_to_fp32": round(d_in, 4),
                            "ratio_other_seed_fp32": round(judge.distance(other, outs["fp32"]) / d_in, 4)}
            for l in loops:
                if l != "fp32":
                    rec["loops"][l]["ratio_to_fp32"] = round(judge.distance(outs[l], outs["fp32"]) / d_in, 4)
        sp = {}
        t = {l: rec["loops"][l]["seconds"] for l in loops}

        def ratio(a, b):
            if a in t and b in t:
                sp[f"{a}_vs_{b}"] = round(t[b] / t[a], 3)

        ratio("default", "fp32")        # target >= 1.6
        ratio("default", "peers")       # target >= 2.5
        ratio("peers_malloc", "peers")  # malloc keeping freed memory
        ratio("peers_fold", "peers_malloc")  # BatchNorm folded
        ratio("peers_cl", "peers_fold")  # channels-last
        ratio("peers_cl_bf16", "peers_cl")  # precision alone
        ratio("fused_fp32", "peers_cl")     # the fused step and octave ops
        ratio("fused", "fused_fp32")    # precision with the fused step
        ratio("fp32", "fused_fp32")     # tiling's cost (or gain) at fp32
        rec["speedups"] = sp
        records.append(rec)
        print(json.dumps(rec, indent=1), flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(records + [{"metadata": metadata()}], indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
