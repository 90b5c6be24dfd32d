"""Shared helpers for the Python side of the native ops: argument checks that need torch, DLPack
capsules, streams and workspaces. Python allocates every output and scratch buffer; C++ computes."""
from __future__ import annotations

import torch
import torch.utils.dlpack

from fastdream._native import native

__all__ = ["native", "capsule", "stream_of", "require_tensor", "workspace"]


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
