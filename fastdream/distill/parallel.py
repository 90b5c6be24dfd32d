"""Data-parallel set-up of the distillation under ``torchrun``: the rank, the device of each rank and the
process group (NCCL between GPUs, gloo between CPU processes)."""
from __future__ import annotations

import dataclasses
import os

import torch

from fastdream.errors import FastdreamError


@dataclasses.dataclass(frozen=True)
class Placement:
    world: int          # processes in the run (1 without torchrun)
    rank: int           # this process (0 writes checkpoints and logs)
    device: torch.device


def placement(device: str = "auto") -> Placement:
    """Where this process trains: ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` from torchrun (1/0/0 without it);
    ``device`` auto | cpu | cuda: with CUDA, rank r trains on GPU ``LOCAL_RANK mod count``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if device not in ("auto", "cpu", "cuda"):
        raise FastdreamError(f"training device must be auto, cpu or cuda, got {device!r}")
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if device == "cuda" and not cuda:
        raise FastdreamError("--device cuda: no CUDA GPU is available to torch")
    dev = torch.device("cuda", local % torch.cuda.device_count()) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    return Placement(world, rank, dev)


def init_group(p: Placement) -> None:
    """Join the process group of a multi-process run (NCCL on GPUs, gloo on CPUs); nothing for one process."""
    if p.world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if p.device.type == "cuda" else "gloo")


def wrap(model: torch.nn.Module, p: Placement) -> torch.nn.Module:
    """``model`` under DistributedDataParallel in a multi-process run (gradients averaged over ranks)."""
    if p.world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[p.device.index] if p.device.type == "cuda" else None)


def barrier(p: Placement) -> None:
    if p.world > 1:
        torch.distributed.barrier()
