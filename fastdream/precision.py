"""Reduced precision for the backbone: which one ``auto`` picks on this machine, and the autocast for it.

Only the backbone's forward and backward pass run in reduced precision (``torch.autocast``); the tapped
activations come back as float32, so objectives, the fused step and the picture stay float32.

- ``auto``: on a CPU, bf16 where the processor computes it natively (AVX512-BF16 or AMX-BF16: oneDNN
  then runs the convolutions in bf16 at about twice the fp32 rate) and fp32 elsewhere (emulated bf16 is
  slower than fp32); on CUDA, bf16 where the GPU supports it, else fp16.
- ``fp32``, ``bf16``, ``fp16``: as named. fp16 needs CUDA (CPUs have no fast fp16 convolutions here);
  bf16 on a GPU needs one that has it (Ampere and newer).

>>> from fastdream.precision import resolve_precision, autocast
>>> p = resolve_precision("auto", "cpu")          # 'bf16' on an AVX512-BF16/AMX CPU, else 'fp32'
>>> with autocast(p, "cpu"):
...     ...
"""
from __future__ import annotations

import contextlib
import functools

import torch

from fastdream.errors import InputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The processor's feature flags (``/proc/cpuinfo``; empty where that file does not exist)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_native_bf16() -> bool:
    """Does this CPU compute bf16 natively (AVX512-BF16 or AMX-BF16)?"""
    flags = cpu_flags()
    if flags:
        return any(f in flags for f in NATIVE_BF16_FLAGS)
    return False


def fp32_strided_depthwise() -> bool:
    """Should strided depthwise convolutions run in fp32 inside CPU bf16 autocast (when gradients flow)?

    True on CPUs with AMX. There oneDNN (3.12, torch 2.13) runs the bf16 backward-data pass of a stride-2
    depthwise convolution with a generic strided kernel (``brgconv_strided:avx512_core_bf16``) that is 3.4-4x
    slower than its fp32 twin: measured on an Intel Xeon with AMX, channels-last, EfficientNet-Lite0's
    96-channel 3x3 stride-2 convolution on a 1080p picture: forward + backward 904 ms in bf16 against 264 ms
    in fp32; the three such convolutions before block9 took most of a bf16 forward+backward pass. Their
    forward passes alone stay bf16 (fast). ``FASTDREAM_DW_FP32=0|1`` overrides the choice.
    """
    import os

    env = os.environ.get("FASTDREAM_DW_FP32")
    if env in ("0", "1"):
        return env == "1"
    return "amx_bf16" in cpu_flags()


def _device(device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def available(device) -> list[str]:
    """The precisions that can run on ``device``."""
    dev = _device(device)
    if dev.type == "cuda":
        return ["fp32", "bf16", "fp16"] if torch.cuda.is_bf16_supported() else ["fp32", "fp16"]
    return ["fp32", "bf16"]


def resolve_precision(precision: str | None, device) -> str:
    """``fp32``, ``bf16`` or ``fp16``: what ``precision`` (``auto`` included) means on ``device``.
    Raises :class:`InputError` (one line naming what is available) for an unknown name, fp16 on a CPU,
    or bf16 on a GPU without it."""
    p = "auto" if precision is None else str(precision).strip().lower()
    dev = _device(device)
    ok = available(dev)
    where = "CUDA GPU" if dev.type == "cuda" else "CPU"
    if p not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose auto, {', '.join(ok)} (on this {where})")
    if p == "auto":
        if dev.type == "cuda":
            return "bf16" if "bf16" in ok else "fp16"
        return "bf16" if cpu_native_bf16() else "fp32"
    if p not in ok:
        why = "fp16 needs a CUDA GPU" if dev.type != "cuda" else "this GPU has no bf16"
        raise InputError(f"precision {p}: {why}; on this {where} choose auto, {', '.join(ok)}")
    return p


def autocast(precision: str, device):
    """A context in which the backbone runs at ``precision`` (a resolved one; ``fp32``: no autocast)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in DTYPES:
        raise InputError(f"autocast needs a resolved precision (fp32, bf16, fp16), got {precision!r}")
    return torch.autocast(device_type=_device(device).type, dtype=DTYPES[precision])


def describe() -> dict:
    """What ``auto`` picks here, and why (for ``build_info()`` and ``fastdream bench``)."""
    flags = cpu_flags()
    out = {"cpu": resolve_precision("auto", "cpu"),
           "cpu_bf16_flags": [f for f in NATIVE_BF16_FLAGS if f in flags]}
    if torch.cuda.is_available():
        out["cuda"] = resolve_precision("auto", "cuda")
    return out
