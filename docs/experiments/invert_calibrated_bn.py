"""The BN prior calibrated for one picture, for `invert` from block10 (docs/priors.md, "What the weights
remember"). A BatchNorm layer's running variance is the variance over a batch of photos: the variance
within one photo plus the spread of the photos' means. DeepInversion pulls the statistics of a batch
towards it; pulled towards it, one picture's variance is asked for more contrast than a photo has. This
probe measures, on a folder of calibration photos (the dream filters' training photos, none of them an
inverted photo), each BatchNorm input's per-photo channel means and variances, and pulls the inversion's
statistics towards their averages over the photos instead:

- ``calibrated``: ||mean - E[mean]|| + ||var - E[var]|| (the prior's form, targets of one photo);
- ``standardized``: the same with each channel's difference divided by its spread over the photos
  (a diagonal Gaussian's distance), times the spreads' root-mean-square size per layer, so that both
  forms are of one magnitude.

Run from the repo root (one JSON row per line per photo and variant, the no-prior row included):

    SEED=0 python docs/experiments/invert_calibrated_bn.py 224 build/photos/train "calibrated:1;standardized:1" \
        examples/chelsea.jpg ../shared/images/astronaut.png build/photos/heldout/*.jpg > seed0.log
"""
import json
import os
import pathlib
import sys

import torch

import fastdream.backbones.base as base


def calibrate(bb, folder: pathlib.Path, size: int):
    """Per BatchNorm layer: the mean over the photos of each channel's per-photo mean and variance, and
    their standard deviations."""
    from fastdream.featvis.api import fit_size
    from fastdream.imageio import load_image

    layers = bb.batchnorm_layers()
    seen: dict[int, list] = {id(m): [] for m in layers}
    hooks = [m.register_forward_pre_hook(lambda m, inp: seen[id(m)].append(
        (inp[0].float().mean((2, 3))[0], inp[0].float().var((2, 3), unbiased=False)[0]))) for m in layers]
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    with torch.no_grad():
        for p in photos:
            x, _ = load_image(p)
            bb(fit_size(x, size))
    for h in hooks:
        h.remove()
    out = {}
    for m in layers:
        means = torch.stack([s[0] for s in seen[id(m)]])
        vars_ = torch.stack([s[1] for s in seen[id(m)]])
        out[id(m.running_mean)] = (means.mean(0), vars_.mean(0), means.std(0) + 1e-6, vars_.std(0) + 1e-6)
    return out, len(photos)


def main():
    torch.set_num_threads(1)
    from fastdream.backbones import get_backbone
    from fastdream.engine.compose import PriorSpec, make_priors
    from fastdream.featvis.api import fit_size
    from fastdream.featvis.invert import INVERT_PRIOR_WEIGHTS, InvertConfig, invert_layers
    from fastdream.imageio import load_image
    from fastdream.metrics import Judge

    seed = int(os.environ.get("SEED", 0))
    size = int(sys.argv[1])
    bb, judge = get_backbone(None, "cpu"), Judge()
    table, n = calibrate(bb, pathlib.Path(sys.argv[2]), size)
    original = base.bn_statistic
    mode = {"v": None}
    scale_std = {}

    def statistic(x, running_mean, running_var):
        if mode["v"] is None:
            return original(x, running_mean, running_var)
        m, v, sm, sv = table[id(running_mean)]
        x = x.float()
        mean = x.mean(dim=(2, 3))
        var = (x - mean[:, :, None, None]).square().mean(dim=(2, 3))
        if mode["v"] == "calibrated":
            return torch.linalg.vector_norm(mean - m, dim=1) + torch.linalg.vector_norm(var - v, dim=1)
        k = scale_std[id(running_mean)]
        return k * (torch.linalg.vector_norm((mean - m) / sm, dim=1) + torch.linalg.vector_norm((var - v) / sv, dim=1))

    # the standardized form's scale per layer: the calibrated form's value over its own, at the targets' spread
    for key, (m, v, sm, sv) in table.items():
        scale_std[key] = float((sm.norm() + sv.norm()) / (2 * (sm.numel() ** 0.5)))
    base.bn_statistic = statistic
    variants = [(None, 0.0)] + [(v.split(":")[0], float(v.split(":")[1])) for v in sys.argv[3].split(";")]
    print(json.dumps({"calibration_photos": n, "size": size, "seed": seed}), flush=True)
    for photo in sys.argv[4:]:
        x, _ = load_image(photo)
        x = fit_size(x, size)
        for v, scale in variants:
            mode["v"] = v
            prior = make_priors([PriorSpec("bn", scale)], INVERT_PRIOR_WEIGHTS) if scale else None
            _, rs = invert_layers(bb, x, ["block10"], InvertConfig(steps=100, seed=seed), judge=judge,
                                  prior=lambda layer: prior)
            rs[0].update(seed=seed, variant=v or "none", scale=scale, photo=pathlib.Path(photo).name)
            print(json.dumps(rs[0]), flush=True)


if __name__ == "__main__":
    main()
