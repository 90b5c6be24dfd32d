"""``dream_step``: one fused DeepDream update (un-jitter, smooth, normalize, step, clamp), in place.

A ``torch.library`` custom op, ``torch.ops.fastdream.dream_step_``, declared as writing ``image``: torch
bumps ``image``'s version counter (autograd then refuses to back-propagate through a value it saved
before the step) and ``torch.compile`` sees one opaque call with a fake implementation. It has no
backward: with grad mode on, ``image`` and ``grad`` must not require grad (ValueError).
"""
from __future__ import annotations

import operator
from typing import Sequence

import torch

from fastdream.ops._boundary import capsule, native, no_grad_inputs, require_tensor, stream_of, workspace

__all__ = ["dream_step", "dream_step_workspace_bytes", "dream_step_grad_dtypes"]

_NORMS = ("mean_abs", "std", "none")


def _float_list(x, name: str) -> list[float]:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().reshape(-1).tolist()
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return [float(x)]
    try:
        return [float(v) for v in x]
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected a float or a sequence of floats, got {x!r}") from e


def _sigma_list(sigma) -> list[float]:
    if sigma is None:
        return []
    if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        return [] if sigma == 0 else [float(sigma)]
    out = _float_list(sigma, "sigma")
    if not out:
        raise ValueError("sigma: expected None, a float or a non-empty sequence of floats, got an empty sequence")
    return out


def _kernel_size(kernel_size) -> int:
    if kernel_size is None:
        return 0
    try:
        k = operator.index(kernel_size)
    except TypeError as e:
        raise TypeError(f"kernel_size: expected an odd int >= 1 or None, got {kernel_size!r}") from e
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel_size must be an odd integer >= 1 (or None), got {k}")
    return k


def dream_step_workspace_bytes(image: torch.Tensor, sigma=None, kernel_size=None) -> int:
    """Scratch bytes ``dream_step`` needs for ``image`` ([B, C, H, W]) and this blur."""
    B, C, H, W = image.shape
    return int(native().dream_step_workspace_bytes(image.is_cuda, B, C, H, W, _sigma_list(sigma),
                                                   _kernel_size(kernel_size)))


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def dream_step_grad_dtypes(device: str = "cpu") -> tuple[torch.dtype, ...]:
    """The dtypes ``grad`` may have on ``device`` (``"cpu"`` or ``"cuda"``), from the binding's own checks."""
    return tuple(_DTYPES[n] for n in native().dream_step_grad_dtypes(torch.device(device).type == "cuda"))


@torch.library.custom_op("fastdream::dream_step_", mutates_args=("image",))
def _dream_step_op(image: torch.Tensor, grad: torch.Tensor, step_size: float, sigmas: list[float], kernel_size: int,
                   norm: str, lower: list[float], upper: list[float], shift_y: int, shift_x: int,
                   eps: float) -> torch.Tensor:
    """The fused step on ``image [B, C, H, W]`` in place -> ``norms [B]`` (arguments checked by dream_step)."""
    B, C, H, W = image.shape
    norms = torch.empty(B, dtype=torch.float32, device=image.device)
    ws_bytes = native().dream_step_workspace_bytes(image.is_cuda, B, C, max(H, 1), max(W, 1), sigmas, kernel_size) \
        if 1 <= C <= 4 else 1
    ws = workspace(ws_bytes, image)
    native().dream_step(capsule(image), capsule(grad), capsule(norms), capsule(ws), stream_of(image),
                        step_size, sigmas, kernel_size, norm, lower, upper, shift_y, shift_x, eps)
    return norms


@_dream_step_op.register_fake
def _(image, grad, step_size, sigmas, kernel_size, norm, lower, upper, shift_y, shift_x, eps):
    return image.new_empty((image.shape[0],), dtype=torch.float32)


def dream_step(
    image: torch.Tensor,
    grad: torch.Tensor,
    *,
    step_size: float,
    sigma: float | Sequence[float] | None = None,
    kernel_size: int | None = None,
    norm: str = "mean_abs",
    lower: float | Sequence[float] = 0.0,
    upper: float | Sequence[float] = 1.0,
    shift: tuple[int, int] = (0, 0),
    eps: float = 1e-8,
) -> torch.Tensor:
    """One DeepDream gradient-ascent step, fused and in place on ``image``.

    Args:
        image: ``[B, C, H, W]`` float32, contiguous, C in 1..4. Updated in place.
        grad: ``[B, C, H, W]`` gradient of the objective w.r.t. the jittered image
            ``torch.roll(image, shifts=shift, dims=(2, 3))``; float32 (CPU), or float32/float16/bfloat16
            (CUDA). Un-rolled by index arithmetic, never copied.
        step_size: multiplies the normalized gradient.
        sigma: ``None``/0 (no smoothing), a float (one Gaussian blur), or up to 4 floats (the average
            of the blurs: a cascade). Reflect borders; radius ``ceil(3 sigma)`` unless ``kernel_size``.
        kernel_size: odd size used for every sigma, or None.
        norm: ``"mean_abs"`` (g / (mean|g| + eps)), ``"std"`` (g / (std(g) + eps), population std) or
            ``"none"``; per image over (C, H, W) of the smoothed gradient. (``"laplacian"`` is rejected:
            it does not fit the fused pass structure.)
        lower, upper: clamp bounds, floats or sequences of C floats.
        shift: the ``(dy, dx)`` jitter the gradient was taken at (any ints).
        eps: added to the normalizer.

    Returns:
        ``norms``: ``[B]`` float32 on ``image``'s device, the normalizer used per image (1.0 for
        ``"none"``), NaN where image b's gradient held NaN/inf: that image is then left unchanged.

    Example:
        >>> img = torch.rand(1, 3, 64, 64); g = torch.randn(1, 3, 64, 64)
        >>> norms = dream_step(img, g, step_size=0.01, sigma=1.0, shift=(3, -5))
    """
    require_tensor(image, "image")
    require_tensor(grad, "grad")
    if not isinstance(norm, str):
        raise TypeError(f"norm: expected a str ('mean_abs', 'std' or 'none'), got {type(norm).__name__}")
    if image.dim() != 4:
        raise ValueError(f"image: expected a 4-d tensor [B, C, H, W], got shape {list(image.shape)}")
    try:
        dy, dx = (operator.index(v) for v in shift)
    except (TypeError, ValueError) as e:
        raise TypeError(f"shift: expected two ints (dy, dx), got {shift!r}") from e
    B, C, H, W = image.shape
    if H >= 1 and W >= 1:
        dy, dx = dy % H, dx % W  # Python ints of any size; the kernel sees [0, H) x [0, W)
    else:
        dy = dx = 0  # the binding refuses the empty image itself, naming its shape
    sigmas = _sigma_list(sigma)
    ks = _kernel_size(kernel_size)
    no_grad_inputs("dream_step", image=image, grad=grad)
    return _dream_step_op(image, grad, float(step_size), sigmas, ks, norm, _float_list(lower, "lower"),
                          _float_list(upper, "upper"), dy, dx, float(eps))
