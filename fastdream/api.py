"""The Python API, mirroring the command line. Pictures go in and come out in the caller's form."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import torch

from fastdream.convert import resolve_device, to_tensor
from fastdream.engine.dream import DreamConfig, Dreamer
from fastdream.engine.objectives import Objective
from fastdream.errors import FastdreamError


from fastdream.backbones import get_backbone  # noqa: E402,F401  (re-exported: fastdream.get_backbone)


def make_config(preset: str | None = None, **overrides) -> tuple[DreamConfig, list[str]]:
    """A DreamConfig from a preset (default ``classic``) and overrides; also the preset's layers."""
    from fastdream.presets import DEFAULT_PRESET, get_preset

    p = get_preset(preset or DEFAULT_PRESET)
    fields = {f.name for f in dataclasses.fields(DreamConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise FastdreamError(f"unknown dream option(s): {', '.join(unknown)}")
    cfg = DreamConfig(**{**p["config"], **{k: v for k, v in overrides.items() if v is not None}})
    cfg.validate()
    return cfg, list(p["layers"])


def preset_objective(preset: str | None, objective: Objective | None, backbone, size) -> Objective:
    """The objective that runs, by the one rule of ``fastdream.presets.OBJECTIVE_RULE``: an explicit
    objective replaces the preset's; without one, the preset's (default ``classic``) layers."""
    from fastdream.engine.spec import build_objective
    from fastdream.presets import DEFAULT_PRESET, get_preset

    if objective is not None:
        return objective
    return build_objective(backbone, tuple(size), layers=list(get_preset(preset or DEFAULT_PRESET)["layers"]))


def dream(image: Any, objective: Objective | None = None, *, preset: str | None = None,
          layers: Sequence[str] | None = None, classes: Sequence[str | int] | None = None,
          backbone=None, device: str = "auto", max_size: int | None = None,
          progress: Callable[[int, int], None] | None = None, return_stats: bool = False, **config):
    """Dream a picture.

    ``image``: a path, PIL image, numpy array (``[H, W, 3]`` uint8/float) or tensor (``[3, H, W]`` or
    ``[1, 3, H, W]``); the result comes back in the same form (a PIL image for a path).
    ``objective``: an objective built from ``fastdream.objectives`` (``Layer``, ``Channel``, ``Neuron``,
    ``ClassLogit``, ``Guide``...), or ``layers=[...]`` / ``classes=[...]`` by name, or a ``preset``.
    ``config``: any ``DreamConfig`` field (octaves, steps, step_size, jitter, sigma, norm, tile, seed...).
    An objective (or ``layers``/``classes``) replaces the preset's objective; the preset's schedule still
    applies (the rule of the command line, ``fastdream.presets.OBJECTIVE_RULE``).

    >>> import fastdream
    >>> out = fastdream.dream("photo.jpg", preset="classic", steps=8, seed=1)
    >>> out.save("dream.png")
    """
    from fastdream.engine.spec import build_objective

    dev = resolve_device(device)
    if preset is None and objective is None and any("@" in str(c) for c in (classes or [])):
        from fastdream.presets import OBJECTS_CONFIG

        config = {**OBJECTS_CONFIG, **config}  # classes in boxes: the objects schedule, as on the command line
    cfg, _ = make_config(preset, **config)
    bb = get_backbone(backbone, dev)
    x, back = to_tensor(image)
    x = x.to(dev)
    if objective is None:
        objective = build_objective(bb, tuple(x.shape[-2:]), layers=list(layers or []),
                                    classes=[str(c) for c in (classes or [])])
    objective = preset_objective(preset, objective, bb, x.shape[-2:])
    result, stats = dream_tensor(x, objective, bb, cfg, max_size=max_size, progress=progress)
    out = back(result)
    return (out, stats) if return_stats else out


def dream_tensor(x: torch.Tensor, objective: Objective, backbone, cfg: DreamConfig, max_size: int | None = None,
                 progress=None, on_octave=None, consume: bool = False):
    """Dream ``x`` ``[1, 3, H, W]``. With ``max_size`` the dream runs with the longest side at most
    ``max_size``, its detail is added back onto the full-size picture (the output keeps the size), and
    ``cfg.finish_steps`` steps at full size (default: half the steps per octave) finish it there: the
    added detail alone is the small dream's structures enlarged, which the network at full size hardly
    sees (chelsea at 902x600, --max-size 160: objective 19.5 -> 17.8 in 0.5 s without the finish, 43.1
    in 1.8 s with 5 steps; the full-size dream reaches 85.4 in 5.0 s)."""
    from fastdream import ops

    dreamer = Dreamer(backbone, objective, cfg)
    H, W = x.shape[-2:]
    if max_size is not None and max(H, W) > max_size:
        s = max_size / max(H, W)
        small = ops.resample(x, (max(1, round(H * s)), max(1, round(W * s))), mode="bilinear", antialias=True)
        finish = (cfg.steps + 1) // 2 if cfg.finish_steps is None else cfg.finish_steps
        seen = {"total": 0}

        def small_progress(done, total):
            seen["total"] = total
            if progress is not None:
                progress(done, total + finish)

        out_small, stats = dreamer.run(small, progress=small_progress, on_octave=on_octave)
        detail = out_small.sub_(small)
        out = ops.octave_upsample_add(detail, x, mode="bicubic").clamp_(0, 1)
        del detail, out_small
        if finish > 0:
            fcfg = dataclasses.replace(cfg, octaves=1, steps=finish, recursions=0, init="image",
                                       seed=None if cfg.seed is None else cfg.seed + 1)
            done0 = seen["total"]
            out, fstats = Dreamer(backbone, objective, fcfg).run(
                out, progress=None if progress is None else (lambda d, t: progress(done0 + d, done0 + t)),
                consume=True)
            stats.steps_done += fstats.steps_done
            stats.skipped_steps += fstats.skipped_steps
            stats.octave_sizes = [[int(H), int(W)], *stats.octave_sizes]
            if on_octave is not None:
                on_octave(len(stats.octave_sizes) - 1, out)
        return out, stats
    return dreamer.run(x, progress=progress, on_octave=on_octave, consume=consume)
