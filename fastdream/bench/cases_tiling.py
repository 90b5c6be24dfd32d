"""Benchmark cases for fastdream.ops.tiling: fastdream vs the pure-torch reference (loops with slicing).

``cases(device, height, width)`` returns dicts ``{"op", "variant", "fastdream", "reference"}``; each
callable runs one iteration on inputs made once here (seeded).
"""
from __future__ import annotations

import torch

from fastdream.bench.baselines import CachedAccumulate
from fastdream.ops.tiling import accumulate_tiles, extract_tiles, tile_layout
from fastdream.reference.tiling import _accumulate_tiles, _extract_tiles

TILE = 512
OVERLAP = 64


def cases(device: str, height: int, width: int, compile: bool = False) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    layout = tile_layout(height, width, TILE, OVERLAP)
    image = torch.rand(1, 3, height, width, generator=gen).to(device)  # [1, 3, H, W]
    tiles = torch.randn(len(layout), 1, 3, layout.tile_h, layout.tile_w, generator=gen).to(device)
    out = torch.zeros_like(image)  # accumulated into again and again: only the time matters here
    out_ref = torch.zeros_like(image)
    out_best = torch.zeros_like(image)
    cached = CachedAccumulate(layout, device)
    desc = f"tile {TILE} overlap {OVERLAP}, {len(layout)} tiles, {height}x{width}"
    return [
        {
            "op": "accumulate_tiles",
            "variant": f"all tiles, {desc}",
            "fastdream": lambda: accumulate_tiles(tiles, layout, out),
            "reference": lambda: _accumulate_tiles(tiles, layout, out_ref),
            "baselines": {"torch, cached weights": lambda: cached(tiles, out_best)},
        },
        {
            "op": "extract_tiles",
            "variant": f"all tiles, {desc}",
            "fastdream": lambda: extract_tiles(image, layout),
            "reference": lambda: _extract_tiles(image, layout),
        },
    ]
