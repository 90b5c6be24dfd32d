"""Benchmark cases for fastdream.ops.resample: fastdream vs the pure-torch reference.

``cases(device, height, width)`` returns dicts ``{"op", "variant", "fastdream", "reference"}``; each
callable runs one iteration on inputs made once here (seeded). The harness warms up, synchronizes and
times them.
"""
from __future__ import annotations

import torch

from fastdream.ops.resample import octave_upsample_add, resample
from fastdream.reference.resample import _octave_upsample_add, _resample

# DeepDream's usual octave scale: the previous octave is ~0.6x this one.
OCTAVE_SCALE = 0.6


def _image(gen: torch.Generator, device: str, h: int, w: int) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=gen).to(device)  # [1, 3, h, w]


def cases(device: str, height: int, width: int, compile: bool = False) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    small = (max(1, round(height * OCTAVE_SCALE)), max(1, round(width * OCTAVE_SCALE)))
    half = (max(1, height // 2), max(1, width // 2))
    full = (height, width)
    detail = _image(gen, device, *small)
    image = _image(gen, device, *full)
    base = _image(gen, device, *full)
    return [
        {
            "op": "resample",
            "variant": f"bilinear up {small[0]}x{small[1]} -> {height}x{width}",
            "fastdream": lambda: resample(detail, full, "bilinear"),
            "reference": lambda: _resample(detail, full, "bilinear"),
        },
        {
            "op": "resample",
            "variant": f"bicubic up {small[0]}x{small[1]} -> {height}x{width}",
            "fastdream": lambda: resample(detail, full, "bicubic"),
            "reference": lambda: _resample(detail, full, "bicubic"),
        },
        {
            "op": "resample",
            "variant": f"bilinear antialias down {height}x{width} -> {half[0]}x{half[1]}",
            "fastdream": lambda: resample(image, half, "bilinear", antialias=True),
            "reference": lambda: _resample(image, half, "bilinear", antialias=True),
        },
        {
            "op": "octave_upsample_add",
            "variant": f"bilinear {small[0]}x{small[1]} -> {height}x{width}",
            # both sides allocate their result (the engine passes out=base to skip that)
            "fastdream": lambda: octave_upsample_add(detail, base, "bilinear"),
            "reference": lambda: _octave_upsample_add(detail, base, "bilinear"),
        },
    ]
