"""The Python API, mirroring the command line. Pictures go in and come out in the caller's form."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from fastdream.backbones import get_backbone  # noqa: F401  (re-exported: fastdream.get_backbone)
from fastdream.convert import resolve_device, to_tensor
from fastdream.engine.dream import dream_tensor  # noqa: F401  (re-exported)
from fastdream.engine.objectives import Objective
from fastdream.presets import make_config, preset_objective  # noqa: F401  (re-exported)


def dream(image: Any, objective: Objective | None = None, *, preset: str | None = None,
          layers: Sequence[str] | None = None, classes: Sequence[str | int] | None = None,
          backbone=None, class_backbones: Sequence[str] | None = None, device: str = "auto", max_size: int | None = None,
          progress: Callable[[int, int], None] | None = None, return_stats: bool = False, **config):
    """Dream a picture.

    ``image``: a path, PIL image, numpy array (``[H, W, 3]`` uint8/float) or tensor (``[3, H, W]`` or
    ``[1, 3, H, W]``); the result comes back in the same form (a PIL image for a path).
    ``objective``: an objective built from ``fastdream.objectives`` (``Layer``, ``Channel``, ``Neuron``,
    ``ClassLogit``, ``Guide``...), or ``layers=[...]`` / ``classes=[...]`` by name, or a ``preset``.
    ``config``: any ``DreamConfig`` field (octaves, steps, step_size, jitter, sigma, norm, tile, seed...).
    An objective (or ``layers``/``classes``) replaces the preset's objective; the preset's schedule still
    applies (the rule of the command line, ``fastdream.presets.OBJECTIVE_RULE``). ``class_backbones``:
    the networks beside the dream's own that also see ``classes`` in boxes, by name (the command line's
    ``--class-backbone``; None: its default, EfficientNet-Lite1 beside the default backbone; []: none).

    >>> import fastdream
    >>> out = fastdream.dream("photo.jpg", preset="classic", steps=8, seed=1)
    >>> out.save("dream.png")
    """
    from fastdream.objective_text import build_objective, class_backbone_names, load_class_backbones

    dev = resolve_device(device)
    boxed = any("@" in str(c) for c in (classes or []))  # classes in boxes
    if preset is None and objective is None and boxed:
        from fastdream.presets import OBJECTS_CONFIG

        config = {**OBJECTS_CONFIG, **config}  # classes in boxes: the objects schedule, as on the command line
    cfg, _ = make_config(preset, **config)
    bb = get_backbone(backbone, dev)
    x, back = to_tensor(image)
    x = x.to(dev)
    if objective is None:
        if class_backbones is not None and not class_backbones:
            class_backbones = ["none"]
        names = class_backbone_names(class_backbones, backbone if isinstance(backbone, (str, type(None))) else "") if boxed else []
        objective = build_objective(bb, tuple(x.shape[-2:]), layers=list(layers or []),
                                    classes=[str(c) for c in (classes or [])],
                                    class_backbones=load_class_backbones(names, dev))
    objective = preset_objective(preset, objective, bb, x.shape[-2:])
    result, stats = dream_tensor(x, objective, bb, cfg, max_size=max_size, progress=progress)
    out = back(result)
    return (out, stats) if return_stats else out


