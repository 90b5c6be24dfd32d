"""Shared helpers for the Python side of the native ops: argument checks that need torch, DLPack
capsules, streams and workspaces. Python allocates every output and scratch buffer; C++ computes.

Every op is also a ``torch.library`` custom op (``torch.ops.fastdream.<op>``) with a fake (meta)
implementation, so ``torch.compile`` and CUDA graphs see it as one opaque call with known output shapes
instead of breaking the graph at a DLPack capsule. Ops that write in place declare it (``mutates_args``):
torch then bumps the written tensor's version counter, so autograd notices a tensor it saved for backward
being overwritten. Ops without a backward refuse inputs that require grad (see :func:`no_grad_inputs`)
rather than detaching them silently."""
from __future__ import annotations

import torch
import torch.utils.dlpack

from fastdream._native import native

__all__ = ["native", "capsule", "stream_of", "require_tensor", "workspace", "no_grad_inputs"]


def require_tensor(x, name: str) -> torch.Tensor:
    """Raise TypeError unless ``x`` is a torch tensor (fastdream.ops takes torch tensors)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    return x


def capsule(t: torch.Tensor):
    """A DLPack capsule of ``t`` (detached; no stream synchronization: the op runs on ``stream_of(t)``)."""
    if t.device.type not in ("cpu", "cuda"):
        raise ValueError(f"tensors on device {t.device.type!r} are not supported (cpu and cuda are)")
    return torch.utils.dlpack.to_dlpack(t.detach())


def stream_of(t: torch.Tensor) -> int:
    """The CUDA stream handle the kernel must run on (torch's current stream), 0 for CPU tensors."""
    if t.is_cuda:
        return int(torch.cuda.current_stream(t.device).cuda_stream)
    return 0


def workspace(nbytes: int, like: torch.Tensor) -> torch.Tensor:
    """A scratch buffer of ``nbytes`` bytes on ``like``'s device (uint8, at least one byte)."""
    return torch.empty(max(int(nbytes), 1), dtype=torch.uint8, device=like.device)


def no_grad_inputs(op: str, **tensors) -> None:
    """Raise ValueError if grad mode is on and one of ``tensors`` requires grad: ``op`` has no backward,
    and its result would silently not depend on that tensor. Under ``torch.no_grad()`` any tensor goes."""
    if not torch.is_grad_enabled():
        return
    for name, t in tensors.items():
        if t is not None and t.requires_grad:
            raise ValueError(f"{op}: {name} requires grad, but {op} has no backward (its result would not "
                             f"depend on {name} for autograd); pass {name}.detach(), or call it under "
                             "torch.no_grad()")
