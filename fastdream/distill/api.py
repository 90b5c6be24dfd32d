"""The distillation workflow in Python: render teacher pairs, train, export, filter.

>>> from fastdream.distill import api
>>> api.dataset("photos/", "pairs/", count=256, preset="classic")          # iterative teacher, slow
>>> api.train("pairs/", "filter.pt", steps=2000)                            # the generator
>>> api.export("filter.pt", "filter.onnx")                                  # checked with ONNX Runtime
>>> out = api.apply_filter("photo.jpg", model="filter.onnx", strength=0.8)  # a PIL image, in milliseconds
>>> out.save("dreamed.jpg")
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

from fastdream.distill.dataset import CropRecipe
from fastdream.distill.runtime import FilterRunner
from fastdream.distill.config import TrainConfig


def dataset(images, output, *, count: int = 256, size: int = 192, preset: str | None = None,
            layers: Sequence[str] = (), channels: Sequence[str] = (), neurons: Sequence[str] = (),
            classes: Sequence[str] = (), seed: int = 0, resume: bool = False, shard=None, device: str = "auto",
            backbone=None, max_size: int | None = None, progress=None, **config) -> dict:
    """Render ``count`` teacher pairs from the photos in ``images`` into the folder ``output``.

    The teacher is a preset (default ``classic``) or objective strings as on the command line
    (``layers=["block9"]``, ``classes=["jellyfish"]``...); ``config`` overrides any ``DreamConfig`` field
    (steps, octaves...). ``shard=(k, n)`` renders the indices ``i % n == k``. Returns a summary.
    """
    from fastdream.backbones import get_backbone
    from fastdream.presets import make_config
    from fastdream.convert import resolve_device
    from fastdream.distill.dataset import dream_teacher, render_dataset
    from fastdream.objective_text import build_objective
    from fastdream.presets import DEFAULT_PRESET

    dev = resolve_device(device)
    cfg, preset_layers = make_config(preset, seed=seed, **config)
    bb = get_backbone(backbone, dev)
    named = bool(layers or channels or neurons or classes)
    spec = {"layers": list(layers) if named else preset_layers, "channels": list(channels),
            "neurons": list(neurons), "classes": list(classes), "guide": []}
    obj = build_objective(bb, (size, size), layers=spec["layers"], channels=spec["channels"],
                          neurons=spec["neurons"], classes=spec["classes"])
    params = {"preset": preset or DEFAULT_PRESET, "objective": repr(obj),
              **{k: v for k, v in dataclasses.asdict(cfg).items() if k != "seed"}, "max_size": max_size,
              "backbone": backbone if isinstance(backbone, str) else "efficientnet-lite0", "seed": seed,
              "objective_spec": spec}
    recipe = CropRecipe(size=size, seed=seed)
    return render_dataset(images, output, count, dream_teacher(bb, obj, cfg, max_size), params, recipe,
                          resume=resume, shard=shard, progress=progress)


def train(data, output, *, resume: bool = False, progress=None, **settings) -> dict:
    """Train a generator on the pairs in ``data``; ``settings`` are ``TrainConfig`` fields (steps, batch,
    crop, lr, width, blocks, pixel_weight, feature_weight, adversarial_weight, seed...); ``progress(done,
    total)`` is called after every step."""
    from fastdream.distill.train import train as _train

    return _train(data, output, TrainConfig(**settings), resume=resume, progress=progress)


def export(checkpoint, output, **kwargs) -> dict:
    """Export a checkpoint to ONNX (checked with ONNX Runtime against torch); returns a summary."""
    from fastdream.distill.export import export_onnx

    return export_onnx(checkpoint, output, **kwargs)


def quantize(model, output, photos, **kwargs) -> dict:
    """A float ONNX filter (a path or a shipped name) in 8 bits, calibrated on ``photos`` (a folder);
    ``size=(W, H)``, ``count``: see :func:`fastdream.distill.quantize.quantize_filter`."""
    from fastdream.distill.quantize import quantize_filter

    return quantize_filter(model, output, photos, **kwargs)


@functools.lru_cache(maxsize=4)
def _cached_runner(model, device, threads):
    return FilterRunner(model, device=device, threads=threads)


def load_filter(model=None, device: str = "auto", threads: int | None = None, strength: float = 1.0) -> FilterRunner:
    """A :class:`FilterRunner` (``runner(tensor [1, 3, H, W]) -> tensor``); ``model=None``: the shipped filter."""
    return FilterRunner(model, device=device, threads=threads, strength=strength)


def apply_filter(image: Any, model=None, *, strength: float = 1.0, repeat: int = 1, device: str = "auto",
                 threads: int | None = None, refine: int = 0):
    """Dream ``image`` with a filter in one pass (or ``repeat`` passes). ``image``: a path, PIL image,
    numpy array (``[H, W, 3]``) or tensor (``[3, H, W]`` / ``[1, 3, H, W]``); the result comes back in the
    same form (a PIL image for a path). ``refine``: finish with that many steps of the filter's teacher at
    full size (``fastdream.distill.refine``; the command line's ``--refine``)."""
    from fastdream.convert import to_tensor
    from fastdream.errors import FastdreamError

    if not isinstance(repeat, int) or repeat < 1:
        raise FastdreamError(f"repeat must be a whole number >= 1, got {repeat!r}")
    runner = _cached_runner(None if model is None else str(model), device, threads)
    x, back = to_tensor(image)
    a = x.detach().cpu().float().numpy()
    runner.strength = 1.0
    from fastdream.distill.refine import Refiner, check_refine_steps

    check_refine_steps(refine)
    for _ in range(repeat):
        y = runner.run_numpy(a)
        a = y
    import numpy as np
    import torch

    if refine:
        a = Refiner.for_runner(runner, refine, device)(torch.from_numpy(a)).cpu().numpy()

    x0 = x.detach().cpu().float().numpy()
    out = np.clip(x0 + float(strength) * (a - x0), 0, 1).astype(np.float32)
    return back(torch.from_numpy(out).to(x.device))
