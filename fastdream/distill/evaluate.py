"""How close a filter comes to its teacher, on held-out photos.

For each photo (resized to a long side of ``size``): the iterative teacher's dream and the filter's
output; the teacher's objective on the input, the teacher output and the filter output; then

- ``gain_fraction = (obj(filter) - obj(input)) / (obj(teacher) - obj(input))``: how much of the
  teacher's climb the filter reaches in one pass (1.0 = as far as the teacher);
- ``lpips_ratio`` and ``gram_ratio``: fidelity to the teacher's dream, judged by EfficientNet-Lite2 (a
  network no part of fastdream trains against; ``fastdream.metrics.Judge``): the LPIPS-style and Gram
  distances from the filter's output to the teacher's dream, each divided by the same distance from the
  untouched input (1.0: no closer to the dream than the photo itself; 0: the teacher's dream). These
  are the figures that tell a filter that dreams the photo from one that stamps its own pattern;
- ``psnr_db``: PSNR of the filter's output against the teacher's (``input_psnr_db``: of the input);
- ``teacher_seconds`` and ``filter_seconds`` (median of 3 runs): the time per picture of both.

With ``reference_seed``, a second teacher dream with another seed is judged the same way
(``reference_lpips_ratio``, ``reference_gram_ratio``): the scale a filter is measured against, since
the teacher itself does not repeat its dream from seed to seed.
"""
from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np
import torch
import torch.nn.functional as F

from fastdream.errors import InputError


def teacher_from_params(params: dict, size, backbone=None, device="cpu"):
    """``(backbone, objective, DreamConfig, max_size)`` of a teacher saved with a dataset or a filter."""
    from fastdream.backbones import get_backbone
    from fastdream.presets import make_config
    from fastdream.engine.dream import DreamConfig
    from fastdream.objective_text import build_objective

    if not params:
        raise InputError("the filter has no teacher in its metadata; pass --data DATASET (its teacher.json)")
    spec = params.get("objective_spec")
    if not spec:
        raise InputError("the teacher parameters hold no objective_spec (made by an older fastdream); pass --data")
    if spec.get("guide"):
        raise InputError("eval does not rebuild guide-image teachers (the guide pictures are not stored)")
    fields = {f.name for f in dataclasses.fields(DreamConfig)}
    over = {k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items() if k in fields}
    over["channels_last"] = False
    if params.get("max_size") and "finish_steps" not in params:  # made before max_size had a finish
        over["finish_steps"] = 0
    cfg, _ = make_config(params.get("preset"), **over)
    bb = get_backbone(backbone if backbone is not None else (None if params.get("backbone") in (None, "efficientnet-lite0")
                                                             else params.get("backbone")), device)
    obj = build_objective(bb, tuple(size), layers=spec.get("layers") or [], channels=spec.get("channels") or [],
                          neurons=spec.get("neurons") or [], classes=spec.get("classes") or [])
    if obj is None:
        raise InputError("the teacher parameters name no objective")
    return bb, obj, cfg, params.get("max_size")


def _resize_long(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    s = size / max(h, w)
    if s >= 1:
        return x
    y = F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear", antialias=True,
                      align_corners=False)
    return y.clamp(0, 1).mul(255).round().div(255)


def resize_and_crop(x: torch.Tensor, size) -> torch.Tensor:
    """``x`` resized (keeping its aspect) and centre-cropped to exactly ``size = (W, H)``, 8-bit rounded."""
    W, H = size
    h, w = x.shape[-2:]
    s = max(H / h, W / w)
    x = F.interpolate(x, size=(max(H, round(h * s)), max(W, round(w * s))), mode="bilinear", antialias=True,
                      align_corners=False)
    y0, x0 = (x.shape[-2] - H) // 2, (x.shape[-1] - W) // 2
    return x[..., y0:y0 + H, x0:x0 + W].clamp(0, 1).mul(255).round().div(255).contiguous()


def evaluate_filter(images, model=None, data=None, size=320, save=None, progress=False, runner=None,
                    judge=True, reference_seed: int | None = None, refine: int = 0) -> dict:
    """Compare a filter with its iterative teacher on the photos in ``images`` (see the module doc).
    ``size``: a long side (int), or ``(W, H)`` to resize and centre-crop every photo to exactly that.
    ``refine``: judge the filter's output finished by that many of the teacher's steps at full size
    (``fastdream.distill.refine``); ``filter_seconds`` then includes them."""
    from fastdream.metrics import Judge, psnr
    from fastdream.engine.dream import dream_tensor
    from fastdream.distill.dataset import list_photos, read_teacher
    from fastdream.distill.runtime import FilterRunner
    from fastdream.engine.dream import Dreamer
    from fastdream.imageio import load_image, save_image

    files = list_photos(images)
    runner = runner or FilterRunner(model)
    params = read_teacher(data)["teacher"] if data else runner.teacher
    if save is not None:
        save = pathlib.Path(save)
        if not save.parent.is_dir():
            raise InputError(f"{save}: the folder {save.parent} does not exist")
        save.mkdir(exist_ok=True)
    judge = Judge() if judge is True else (judge or None)
    from fastdream.distill.refine import Refiner

    refiner = Refiner(params, refine)
    rows = []
    for f in files:
        x, _ = load_image(f)
        x = resize_and_crop(x, size) if isinstance(size, (tuple, list)) else _resize_long(x, size)
        bb, obj, cfg, max_size = teacher_from_params(params, x.shape[-2:])
        ev = Dreamer(bb, obj, cfg)
        t0 = time.perf_counter()
        teach, _ = dream_tensor(x, obj, bb, cfg, max_size=max_size)
        t_teacher = time.perf_counter() - t0
        xs = x.numpy()
        runner.run_numpy(xs)  # warm-up
        ts = []
        for _ in range(3 if not refine else 1):
            t0 = time.perf_counter()
            y = refiner(torch.from_numpy(runner.run_numpy(xs)))
            ts.append(time.perf_counter() - t0)
        filt = y
        o_in, o_t, o_f = ev.evaluate(x), ev.evaluate(teach), ev.evaluate(filt)
        gain = o_t - o_in
        row = {"name": f.name, "size": [int(x.shape[-1]), int(x.shape[-2])], "objective_input": o_in,
               "objective_teacher": o_t, "objective_filter": o_f,
               "gain_fraction": (o_f - o_in) / gain if gain != 0 else float("nan"),
               "psnr_db": psnr(filt, teach), "input_psnr_db": psnr(x, teach),
               "teacher_seconds": t_teacher, "filter_seconds": float(np.median(ts))}
        if judge is not None:
            row["lpips_ratio"], row["gram_ratio"] = judge.mimicry(filt, teach, x)
        ref = None
        if reference_seed is not None and judge is not None:
            ref, _ = dream_tensor(x, obj, bb, dataclasses.replace(cfg, seed=reference_seed), max_size=max_size)
            row["reference_lpips_ratio"], row["reference_gram_ratio"] = judge.mimicry(ref, teach, x)
        rows.append(row)
        if progress:
            import sys

            print(f"{f.name}: done", file=sys.stderr, flush=True)
        if save is not None:
            stem = f.stem
            save_image(x, save / f"{stem}_input.png")
            save_image(teach, save / f"{stem}_teacher.png")
            save_image(filt, save / f"{stem}_filter.png")
            if ref is not None:
                save_image(ref, save / f"{stem}_teacher_seed{reference_seed}.png")
    mean = lambda k: float(np.mean([r[k] for r in rows]))  # noqa: E731
    judged = {}
    for k in ("lpips_ratio", "gram_ratio", "reference_lpips_ratio", "reference_gram_ratio"):
        if rows and k in rows[0]:
            judged[k] = mean(k)
            judged[k + "_worst"] = float(max(r[k] for r in rows))
    summary = {"pictures": len(rows), **judged, "gain_fraction": mean("gain_fraction"), "psnr_db": mean("psnr_db"),
               "input_psnr_db": mean("input_psnr_db"), "teacher_seconds": mean("teacher_seconds"),
               "filter_seconds": mean("filter_seconds"),
               "speedup": mean("teacher_seconds") / max(1e-9, mean("filter_seconds")),
               "provider": runner.provider, "size": list(size) if isinstance(size, (tuple, list)) else size,
               "judge": "efficientnet-lite2" if judge is not None else None, "refine": refine}
    return {"model": str(runner.path), "teacher": params, "pictures": rows, "summary": summary}
