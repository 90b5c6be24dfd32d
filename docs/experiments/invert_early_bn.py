"""The BN prior on the first BatchNorm layers only, for `invert` from block10 (docs/priors.md, "What the
weights remember"). block10's activations fix what is particular to a photo; the early layers' statistics
(colour, contrast, edges) are what an inversion leaves open, so pulling only those towards the running
statistics might help where the whole prior did not. Run from the repo root:

    SEED=0 python docs/experiments/invert_early_bn.py 224 "[1,10];[9,10]" examples/chelsea.jpg \
        ../shared/images/astronaut.png build/photos/heldout/*.jpg > seed0.log

Arguments: the long side in pixels; variants ``[k, scale]`` separated by ``;`` (the BN prior on the first
``k`` BatchNorm layers, at ``scale`` times invert's default weight); photos. One JSON row per line per
photo and variant (plus the no-prior baseline), seed from ``$SEED``.
"""
import json
import os
import pathlib
import sys

import torch

from fastdream.backbones.base import Backbone


def main():
    torch.set_num_threads(1)
    from fastdream.backbones import get_backbone
    from fastdream.engine.compose import PriorSpec, make_priors
    from fastdream.featvis.api import fit_size
    from fastdream.featvis.invert import INVERT_PRIOR_WEIGHTS, InvertConfig, invert_layers
    from fastdream.imageio import load_image
    from fastdream.metrics import Judge

    seed = int(os.environ.get("SEED", 0))
    limit = {"n": None}
    every = Backbone.batchnorm_layers
    Backbone.batchnorm_layers = lambda self: every(self)[:limit["n"]] if limit["n"] else every(self)
    bb, judge = get_backbone(None, "cpu"), Judge()
    variants = [(None, 0.0)] + [tuple(json.loads(v)) for v in sys.argv[2].split(";")]
    for photo in sys.argv[3:]:
        x, _ = load_image(photo)
        x = fit_size(x, int(sys.argv[1]))
        for k, scale in variants:
            limit["n"] = k
            prior = make_priors([PriorSpec("bn", scale)], INVERT_PRIOR_WEIGHTS) if scale else None
            _, rs = invert_layers(bb, x, ["block10"], InvertConfig(steps=60, seed=seed), judge=judge,
                                  prior=lambda layer: prior)
            rs[0].update(seed=seed, k=k, scale=scale, photo=pathlib.Path(photo).name)
            print(json.dumps(rs[0]), flush=True)


if __name__ == "__main__":
    main()
