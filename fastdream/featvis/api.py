"""The Python API of feature visualization, inversion and fine-tuning; mirrors the command line.

>>> from fastdream.featvis import visualize, invert, finetune
>>> img = visualize("jellyfish", steps=128, seed=0)                    # a PIL image
>>> rebuilt = invert("photo.jpg", layer="block3")                      # same form as the input
>>> bb = finetune("textures/", "backbone.pt", epochs=5)                # a fine-tuned Backbone
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from fastdream.errors import FastdreamError

from fastdream.backbones import get_backbone  # noqa: E402,F401  (one cached loader for every command)


_backbone = get_backbone


def _device(device):
    from fastdream.convert import resolve_device

    return resolve_device(device)


def fit_size(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize ``x`` ``[1, 3, H, W]`` so its long side is ``size`` (antialiased); None keeps it."""
    if size is None:
        return x
    H, W = x.shape[-2:]
    s = size / max(H, W)
    if s == 1.0:
        return x
    hw = (max(16, round(H * s)), max(16, round(W * s)))
    return F.interpolate(x, size=hw, mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)


def _as_list(v) -> list:
    if v is None:
        return []
    if isinstance(v, (str, int)):
        return [v]
    return list(v)


def visualize(classes: str | int | Sequence[str | int] = (), *, channels: str | Sequence[str] = (),
              neurons: str | Sequence[str] = (), objective=None, backbone=None, size: int | tuple[int, int] = 224,
              steps: int = 256, variants: int = 1, diversity: float = 20.0, lr: float = 0.05, seed: int = 0,
              decay: float = 1.25, init: Any = None, prior: Any = "default", device: str = "cpu",
              progress: Callable[[int, int], None] | None = None, return_stats: bool = False):
    """A picture (or ``variants`` pictures) optimized from noise to excite a class, channel or neuron.

    ``classes``: names or indices (``"jellyfish"``, ``107``, ``"jellyfish*1"``); ``channels``:
    ``"LAYER:C[*W]"``; ``neurons``: ``"LAYER:C:Y:X[*W]"``; several add up with their weights. Or an
    ``objective`` from ``fastdream.engine.objectives``. ``backbone``: None (EfficientNet-Lite0), a
    checkpoint path (e.g. from :func:`finetune`, then classes are its class names) or a ``Backbone``.
    ``init``: a photo (path, PIL, numpy, tensor) to start from instead of noise (a fooling image); the
    result then comes back in the photo's form, else as PIL image(s). ``variants > 1`` returns a list,
    pushed apart by the ``diversity`` term. ``decay``: the spectrum's 1/f exponent (larger: bolder, more
    saturated structures; Lucid's is 1). ``return_stats=True`` also returns the figures (the
    report's ``probability``/``robust_probability`` or ``activation``/``robust_activation``).

    >>> img = visualize("jellyfish", steps=128, seed=0)
    >>> imgs = visualize(channels="block10:5", variants=4, size=128)
    """
    from fastdream.convert import to_tensor
    from fastdream.featvis.visualize import Target, VisualizeConfig, headline, measure, optimize
    from fastdream.objective_text import parse_targets
    from fastdream.imageio import tensor_to_pil

    dev = _device(device)
    bb = _backbone(backbone, dev)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    back = tensor_to_pil
    x0 = None
    if init is not None:
        x0, back = to_tensor(init)
        x0 = fit_size(x0, max(hw)).to(dev)
        hw = tuple(x0.shape[-2:])
    from fastdream.featvis.visualize import visualize_priors

    if isinstance(prior, str):
        if prior != "default":
            raise FastdreamError(f"prior must be an objective, 'default' or None, got {prior!r}")
        prior = visualize_priors(None, dev)
    cfg = VisualizeConfig(size=hw, steps=steps, lr=lr, variants=variants, diversity=diversity, seed=seed, prior=prior,
                          decay_power=decay)
    cfg.validate()
    if objective is not None:
        targets = [Target("objective", repr(objective), 1.0, objective)]
        if _as_list(classes) or _as_list(channels) or _as_list(neurons):
            targets += parse_targets(bb, hw, _as_list(classes), _as_list(channels), _as_list(neurons))
    else:
        targets = parse_targets(bb, hw, _as_list(classes), _as_list(channels), _as_list(neurons))
    images, stats = optimize(bb, targets, cfg, init=x0, progress=progress, device=dev)
    figs = measure(bb, targets, images)
    outs = [back(images[i:i + 1]) for i in range(images.shape[0])]
    result = outs[0] if variants == 1 else outs
    if return_stats:
        return result, {**headline(figs), "targets": figs, "seconds": stats["seconds"], "history": stats["history"]}
    return result


def invert(image: Any, layer: str | Sequence[str] = "block3", *, backbone=None, size: int | None = 224,
           steps: int | None = None, seed: int = 0, tv_weight: float | None = None, alpha_weight: float | None = None,
           prior: Any = "default", device: str = "cpu", progress: Callable[[int, int], None] | None = None,
           return_stats: bool = False):
    """Rebuild ``image`` from one layer's activations, starting from noise (Mahendran & Vedaldi 2015).

    ``image``: path, PIL, numpy or tensor; resized so its long side is ``size`` (None: as it is).
    ``layer``: a tap name (``"stem"``, ``"block0"``.. ``"block15"``, ``"head"``, ``"logits"``), or a list
    of them: then a list of results comes back, one per layer. Results are in the input's form (PIL for
    a path). ``prior``: ``"default"`` (none beside the TV and alpha-norm priors), an objective of
    priors (``BNPrior(2e-6)``) for every layer, or None. ``return_stats=True`` also returns ``{"layers":
    [{"layer", "psnr", "ssim"}, ...]}`` measured against the (resized) input.

    >>> rebuilt = invert("photo.jpg", layer="block3")
    >>> outs, stats = invert("photo.jpg", layer=["stem", "block5", "logits"], return_stats=True)
    """
    from fastdream.convert import to_tensor
    from fastdream.featvis.invert import InvertConfig, invert_layers

    dev = _device(device)
    bb = _backbone(backbone, dev)
    x, back = to_tensor(image)
    x = fit_size(x, size).to(dev)
    layers = [layer] if isinstance(layer, str) else list(layer)
    cfg = InvertConfig(seed=seed)
    if steps is not None:
        cfg.steps = steps
    if tv_weight is not None:
        cfg.tv_weight = tv_weight
    if alpha_weight is not None:
        cfg.alpha_weight = alpha_weight
    from fastdream.featvis.invert import invert_prior

    if isinstance(prior, str):
        if prior != "default":
            raise FastdreamError(f"prior must be an objective, 'default' or None, got {prior!r}")
        per_layer = lambda name: invert_prior(bb, name, None, dev)  # noqa: E731
    else:
        per_layer = lambda name: prior  # noqa: E731
    results, rows = invert_layers(bb, x, layers, cfg, progress=progress, prior=per_layer)
    outs = [back(r) for r in results]
    out = outs[0] if isinstance(layer, str) else outs
    return (out, {"layers": rows}) if return_stats else out


def finetune(folder, output=None, *, train_blocks: int = 0, epochs: int = 10, size: int = 224,
             batch_size: int = 16, lr: float = 1e-3, val_fraction: float = 0.2, patience: int = 3,
             seed: int = 0, device: str = "cpu", progress: Callable[[str], None] | None = None,
             return_stats: bool = False):
    """Retrain the classifier head (and the last ``train_blocks`` blocks) of the default backbone on
    ``folder`` (one subfolder per class, named after it); save to ``output`` when given.

    Returns the fine-tuned :class:`~fastdream.backbones.Backbone` (frozen, eval mode; its
    ``class_names`` are the subfolder names), with ``return_stats=True`` also the training figures
    (``history`` per epoch, ``best_val_accuracy``, ``skipped`` unreadable files...).

    >>> bb = finetune("textures/", "backbone.pt", epochs=5)
    >>> visualize("brick", backbone="backbone.pt")
    """
    from fastdream.featvis.finetune import FinetuneConfig, finetune_folder

    cfg = FinetuneConfig(train_blocks=train_blocks, epochs=epochs, size=size, batch_size=batch_size, lr=lr,
                         val_fraction=val_fraction, patience=patience, seed=seed)
    bb, stats = finetune_folder(folder, cfg, output=output, device=_device(device), log=progress)
    return (bb, stats) if return_stats else bb
