"""The optimisation at one scale: L-BFGS on the pixels or on a Laplacian pyramid of them, or Adam.

Every optimizer sees the loss through one function, ``evaluate(x) -> (loss, gradient)`` of a picture
``x [1, 3, h, w]`` (the tiled evaluation of :class:`fastdream.stylize.transfer.StyleTransfer`), and counts
evaluations, not steps: ``iters`` evaluations at most, whatever the optimizer.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from fastdream import ops
from fastdream.stylize.config import StyleConfig

Evaluate = Callable[[torch.Tensor], "tuple[float, torch.Tensor]"]
Progress = Callable[[int, int], None] | None


def pyramid_levels(cfg: StyleConfig, x: torch.Tensor) -> int:
    """Pyramid levels for L-BFGS on a picture ``x`` (1: plain pixels): up to ``cfg.pyramid``, the coarsest
    at least 32 pixels on the short side."""
    h, w = x.shape[-2:]
    k = 1
    while k < cfg.pyramid and min(h, w) / 2 ** k >= 32:
        k += 1
    return k


def _history(numel: int) -> int:
    return 20 if numel <= 3 * 1024 * 1024 else 8


def optimize(cfg: StyleConfig, x: torch.Tensor, iters: int, evaluate: Evaluate, progress: Progress = None,
             done: int = 0, total: int = 0) -> tuple[torch.Tensor, int]:
    """Up to ``iters`` evaluations of ``cfg.optimizer`` from ``x [1, 3, h, w]`` -> (picture in [0, 1],
    evaluations). ``progress(done + n, total)`` after each evaluation."""
    if iters == 0:
        return x, 0
    if cfg.optimizer == "lbfgs" and pyramid_levels(cfg, x) > 1:
        return optimize_pyramid(cfg, x.detach(), iters, evaluate, progress, done, total)
    x = x.detach().clone().requires_grad_(True)
    count = [0]

    def closure():
        loss, g = evaluate(x.detach())
        x.grad = g
        count[0] += 1
        if progress is not None:
            progress(done + min(count[0], iters), total)
        return torch.tensor(loss)

    if cfg.optimizer == "adam":
        opt = torch.optim.Adam([x], lr=cfg.lr)
        for _ in range(iters):
            opt.step(closure)
            with torch.no_grad():
                x.clamp_(0, 1)
    else:
        opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, max_eval=2, history_size=_history(x.numel()),
                                tolerance_grad=0.0, tolerance_change=0.0)
        while count[0] < iters:
            opt.step(closure)
            with torch.no_grad():
                x.clamp_(0, 1)
    return x.detach(), count[0]


def optimize_pyramid(cfg: StyleConfig, x: torch.Tensor, iters: int, evaluate: Evaluate, progress: Progress = None,
                     done: int = 0, total: int = 0) -> tuple[torch.Tensor, int]:
    """L-BFGS on a Laplacian-pyramid parameterization: ``x = z_0 + sum_k up(z_k)`` with ``z_k`` at
    1/2^k the size. The same loss, but broad changes move many pixels in one coordinate, so they
    need far fewer steps on a large picture (plain pixel descent corrects low frequencies slowly)."""
    h, w = x.shape[-2:]
    k = pyramid_levels(cfg, x)
    zs = [x.clone()] + [torch.zeros((1, 3, math.ceil(h / 2 ** i), math.ceil(w / 2 ** i)), device=x.device)
                        for i in range(1, k)]

    def synth(z):
        out = z[0]
        for zi in z[1:]:
            out = out + ops.resample(zi, (h, w), mode="bilinear")   # differentiable: the gradient goes down
        return out

    count = [0]
    params = [z.requires_grad_(True) for z in zs]

    def closure():
        with torch.enable_grad():
            z = [p.detach().requires_grad_(True) for p in params]
            xs = synth(z)
        loss, g = evaluate(xs.detach())
        grads = torch.autograd.grad(xs, z, grad_outputs=g)
        for p, gz in zip(params, grads):
            p.grad = gz
        count[0] += 1
        if progress is not None:
            progress(done + min(count[0], iters), total)
        return torch.tensor(loss)

    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=1, max_eval=2, history_size=_history(sum(z.numel() for z in zs)),
                            tolerance_grad=0.0, tolerance_change=0.0)
    while count[0] < iters:
        opt.step(closure)
        with torch.no_grad():  # keep the picture in [0, 1]: the finest level takes the correction
            xs = synth([p.detach() for p in params])
            params[0].add_(xs.clamp(0, 1) - xs)
    with torch.no_grad():
        return synth([p.detach() for p in params]).clamp_(0, 1), count[0]
