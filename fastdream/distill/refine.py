"""A filter's output finished by a few steps of its own teacher at full size (``--refine K``).

The feed-forward filter draws the teacher's large structures where the teacher puts them, but not its
pixel-fine detail: measured on the held-out photos (docs/distill.md, "Which band is missing"), the
filter's change holds half the teacher's energy in the finest band and its detail below a 2-pixel scale
lies in other places; given the teacher's detail below 2 pixels, the filter's large structures are
nearly the teacher's dream in Lite2's distances. The teacher's last steps at full size are what draw that
detail, so ``Refiner`` runs K of them on the filter's output: the teacher's objective, step size, jitter,
gradient smoothing and precision from the filter's metadata (``fastdream.teacher``), one octave at the
picture's own size. Each step is a forward and backward pass of the backbone, so this is a quality mode
for pictures and offline video, not for live streams: two steps take 0.28–0.40 s at 640x480 on two CPU
cores (docs/distill.md, "Refining").
"""
from __future__ import annotations

import dataclasses

import torch

from fastdream.errors import FastdreamError, InputError

MAX_REFINE_STEPS = 100


def check_refine_steps(steps) -> int:
    """``steps`` as a whole number 0..MAX_REFINE_STEPS (0: no refining)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= MAX_REFINE_STEPS:
        raise FastdreamError(f"refine: expected a whole number of steps 0..{MAX_REFINE_STEPS}, got {steps!r}")
    return steps


class Refiner:
    """K steps of a filter's teacher at full size on the filter's output.

    ``teacher``: the filter's teacher parameters (``FilterRunner.teacher``, the ``fastdream.teacher``
    metadata); ``steps``: K (0: the picture is returned as it is).

    >>> from fastdream.distill.runtime import FilterRunner
    >>> runner = FilterRunner("default")
    >>> refine = Refiner(runner.teacher, 2)
    >>> out = refine(torch.from_numpy(runner.run_numpy(x.numpy())))   # x: [1, 3, H, W] in [0, 1]
    """

    def __init__(self, teacher: dict, steps: int, device="cpu"):
        self.steps = check_refine_steps(steps)
        if self.steps and not (teacher or {}).get("objective_spec"):
            raise InputError("--refine needs a fastdream filter whose metadata names its teacher (fastdream.teacher "
                             "with an objective_spec); this one has none")
        self.teacher = teacher
        self.device = device

    @classmethod
    def for_runner(cls, runner, steps: int, device="auto") -> "Refiner":
        """The refiner of a ``FilterRunner``'s teacher, with torch where the filter runs: ``device``
        (auto, cpu or cuda), the CPU when the runner fell back from CUDA."""
        from fastdream.convert import resolve_device

        return cls(runner.teacher, steps, device=resolve_device("cpu" if runner.fallback else device))

    def config(self, size):
        """(backbone, objective, DreamConfig) of the refining steps for a picture of ``size`` (H, W)."""
        from fastdream.distill.evaluate import teacher_from_params

        bb, obj, cfg, _ = teacher_from_params(self.teacher, size, device=self.device)
        return bb, obj, dataclasses.replace(cfg, octaves=1, steps=self.steps, recursions=0)

    def __call__(self, picture: torch.Tensor) -> torch.Tensor:
        """``picture`` ``[1, 3, H, W]`` in [0, 1] (the filter's output) -> the refined picture, same shape."""
        from fastdream.engine.dream import dream_tensor

        if not self.steps:
            return picture
        if picture.dim() != 4 or picture.shape[:2] != (1, 3):
            raise FastdreamError(f"refine: expected a picture [1, 3, H, W], got {tuple(picture.shape)}")
        bb, obj, cfg = self.config(tuple(picture.shape[-2:]))
        with torch.enable_grad():  # the backbone's gradient, also where the caller runs without (video frames)
            out, _ = dream_tensor(picture.detach().float().to(self.device), obj, bb, cfg)
        return out.detach().clamp(0, 1)


__all__ = ["Refiner", "check_refine_steps", "MAX_REFINE_STEPS"]
