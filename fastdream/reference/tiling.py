"""Pure-torch references for fastdream.ops.tiling: loops over tiles with slicing."""
from __future__ import annotations

import torch

__all__ = ["_tile_weights", "_extract_tiles", "_accumulate_tiles"]


def _ramp(start: int, tile: int, length: int, overlap: int) -> torch.Tensor:
    """``[tile]`` float64: min(1, (t+1)/(O+1), (T-t)/(O+1)), no ramp on a side at the image border."""
    t = torch.arange(tile, dtype=torch.float64)
    w = torch.ones(tile, dtype=torch.float64)
    if start > 0:
        w = torch.minimum(w, (t + 1) / (overlap + 1))
    if start + tile < length:
        w = torch.minimum(w, (tile - t) / (overlap + 1))
    return w


def _tile_weights(layout) -> torch.Tensor:
    """Unnormalized blend weights of every tile -> ``[len(layout), th, tw]`` float64."""
    ws = []
    for y in layout.ys:
        wy = _ramp(y, layout.tile_h, layout.height, layout.overlap)
        for x in layout.xs:
            wx = _ramp(x, layout.tile_w, layout.width, layout.overlap)
            ws.append(wy[:, None] * wx[None, :])
    return torch.stack(ws)


def _corners(layout):
    return [(y, x) for y in layout.ys for x in layout.xs]


def _extract_tiles(image: torch.Tensor, layout, start: int = 0, count=None) -> torch.Tensor:
    """Tiles ``start .. start+count-1`` of ``image [B, C, H, W]`` -> ``[count, B, C, th, tw]``."""
    n = len(layout)
    count = n - start if count is None else count
    h, w = layout.tile_h, layout.tile_w
    tiles = [image[..., y : y + h, x : x + w] for y, x in _corners(layout)[start : start + count]]
    if not tiles:
        return image.new_empty((0, *image.shape[:2], h, w))
    return torch.stack(tiles)


def _accumulate_tiles(tiles: torch.Tensor, layout, out: torch.Tensor, start: int = 0) -> torch.Tensor:
    """``out [B, C, H, W] += w_n * tile_n / sum_m w_m`` for the tiles given (``[n, B, C, th, tw]``)."""
    h, w = layout.tile_h, layout.tile_w
    weights = _tile_weights(layout)
    total = torch.zeros((layout.height, layout.width), dtype=torch.float64)
    for (y, x), wn in zip(_corners(layout), weights):
        total[y : y + h, x : x + w] += wn
    corners = _corners(layout)
    for k in range(tiles.shape[0]):
        y, x = corners[start + k]
        norm = (weights[start + k] / total[y : y + h, x : x + w]).to(out.dtype).to(out.device)
        out[..., y : y + h, x : x + w] += norm * tiles[k]
    return out
