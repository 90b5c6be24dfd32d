"""Image resizing and the fused octave step, on the native kernels.

``resample`` matches ``torch.nn.functional.interpolate(..., align_corners=False)`` for ``bilinear`` and
``bicubic``, with or without ``antialias``; ``octave_upsample_add`` computes
``base + resample(detail, base.shape[-2:])`` in one pass over memory (the DeepDream octave step).
References: :mod:`fastdream.reference.resample`.

Both are ``torch.library`` custom ops (``torch.ops.fastdream.resample``,
``torch.ops.fastdream.octave_upsample_add_into``) with fake implementations, so ``torch.compile`` traces
through them. ``resample`` has a backward (ATen's adjoint of the same interpolation);
``octave_upsample_add`` has none and refuses inputs that require grad.
"""
from __future__ import annotations

import torch

from typing import Optional

from fastdream.ops._boundary import capsule, native, no_grad_inputs, require_tensor, stream_of, workspace

__all__ = ["resample", "octave_upsample_add"]

_MODES = {"bilinear": 0, "bicubic": 1}


def _mode(mode) -> int:
    if mode not in _MODES:
        raise ValueError(f"mode: expected one of {sorted(_MODES)}, got {mode!r}")
    return _MODES[mode]


def _size(size) -> tuple[int, int]:
    if isinstance(size, torch.Size):
        size = tuple(size)
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in size)
    ):
        raise TypeError(f"size: expected an int or a pair of ints (height, width), got {size!r}")
    h, w = size
    if h < 1 or w < 1:
        raise ValueError(f"size: expected positive sizes, got {tuple(size)}")
    return int(h), int(w)


def _image(x, name: str) -> torch.Tensor:
    require_tensor(x, name)
    if x.dtype != torch.float32:
        raise TypeError(f"{name}: expected a float32 tensor, got {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a 4-d tensor [B, C, H, W], got shape {list(x.shape)}")
    return x


def _run(x: torch.Tensor, out: torch.Tensor, base, mode: int, antialias: bool) -> None:
    _C = native()
    nbytes = _C.resample_workspace_bytes(
        x.shape[2], x.shape[3], out.shape[2], out.shape[3], mode, bool(antialias), x.is_cuda
    )
    ws = workspace(nbytes, x)
    _C.resample(
        capsule(x),
        capsule(out),
        None if base is None else capsule(base),
        mode,
        bool(antialias),
        capsule(ws),
        stream_of(x),
    )


# -- the torch.library ops ----------------------------------------------------------------------------


@torch.library.custom_op("fastdream::resample", mutates_args=())
def _resample_op(x: torch.Tensor, height: int, width: int, interpolation: int, antialias: bool) -> torch.Tensor:
    """``x [B, C, H, W]`` -> new ``[B, C, height, width]`` (arguments checked by :func:`resample`;
    ``interpolation``: a value of ``_MODES``; not named ``mode``, which torch's dispatch uses itself)."""
    x = x.contiguous()
    out = torch.empty((x.shape[0], x.shape[1], height, width), dtype=x.dtype, device=x.device)
    _run(x, out, None, interpolation, antialias)
    return out


@_resample_op.register_fake
def _(x, height, width, interpolation, antialias):
    return x.new_empty((x.shape[0], x.shape[1], height, width))


def _resample_setup(ctx, inputs, output):
    x, height, width, interpolation, antialias = inputs
    ctx.in_size, ctx.out_size, ctx.mode, ctx.antialias = list(x.shape), [height, width], interpolation, antialias


def _resample_backward(ctx, grad):
    # The adjoint of F.interpolate(x, size, mode, align_corners=False, antialias) (what the kernel computes)
    name = ("_upsample_" if ctx.antialias else "upsample_") + ("bicubic2d" if ctx.mode == _MODES["bicubic"] else
                                                              "bilinear2d") + ("_aa" if ctx.antialias else "")
    adjoint = getattr(torch.ops.aten, name + "_backward")
    return adjoint(grad, ctx.out_size, ctx.in_size, False, None, None), None, None, None, None


_resample_op.register_autograd(_resample_backward, setup_context=_resample_setup)


@torch.library.custom_op("fastdream::octave_upsample_add_into", mutates_args=("out",))
def _octave_upsample_add_op(detail: torch.Tensor, base: Optional[torch.Tensor], out: torch.Tensor,
                            interpolation: int) -> None:
    """``out = base + resample(detail)``; ``base=None``: in place, ``out`` is its own base."""
    _run(detail.contiguous(), out, out if base is None else base.contiguous(), interpolation, False)


@_octave_upsample_add_op.register_fake
def _(detail, base, out, interpolation):
    return None


# -- the public functions ---------------------------------------------------------------------------


def resample(x: torch.Tensor, size, mode: str = "bilinear", antialias: bool = False) -> torch.Tensor:
    """Resize ``x [B, C, H, W]`` (float32) to ``size = (H2, W2)`` -> new ``[B, C, H2, W2]``.

    Same result as ``F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=antialias)``
    (to float rounding). ``mode`` is ``"bilinear"`` or ``"bicubic"``; ``antialias=True`` low-pass
    filters when downscaling, as torch and PIL do.

    Differentiable: the gradient w.r.t. ``x`` is that of ``F.interpolate`` (ATen's adjoint).

    >>> small = resample(torch.rand(1, 3, 1080, 1920), (540, 960), antialias=True)
    """
    _image(x, "x")
    m = _mode(mode)
    h, w = _size(size)
    return _resample_op(x, h, w, m, bool(antialias))


def octave_upsample_add(
    detail: torch.Tensor, base: torch.Tensor, mode: str = "bilinear", out: torch.Tensor | None = None
) -> torch.Tensor:
    """``out = base + resample(detail, base.shape[-2:], mode)`` in one pass -> ``out [B, C, H, W]``.

    ``detail [B, C, h, w]`` is the detail the previous (smaller) octave added; ``base [B, C, H, W]`` is
    this octave's picture. ``out`` may be ``base`` itself (in place, then it must be contiguous) and must
    not overlap ``detail``; by default a new tensor is returned. No backward: with grad mode on, inputs
    that require grad are refused (ValueError).

    >>> img = octave_upsample_add(detail, base, out=base)   # base += upsample(detail)
    """
    _image(detail, "detail")
    _image(base, "base")
    m = _mode(mode)
    if detail.shape[:2] != base.shape[:2]:
        raise ValueError(
            f"detail and base must have the same batch and channel sizes, got {list(detail.shape)} and "
            f"{list(base.shape)}"
        )
    if detail.device != base.device:
        raise ValueError(f"detail and base must be on the same device, got {detail.device} and {base.device}")
    if out is None:
        out = torch.empty(base.shape, dtype=base.dtype, device=base.device)
    else:
        _image(out, "out")
        if out.shape != base.shape:
            raise ValueError(f"out: expected shape {list(base.shape)} (that of base), got {list(out.shape)}")
        if out.device != base.device:
            raise ValueError(f"out must be on base's device {base.device}, got {out.device}")
        if not out.is_contiguous():
            raise ValueError(f"out: expected a contiguous tensor, got strides {out.stride()}")
    no_grad_inputs("octave_upsample_add", detail=detail, base=base, out=out)
    _octave_upsample_add_op(detail, None if out is base else base, out, m)
    return out
