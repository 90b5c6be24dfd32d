"""Overlapping tiles for dreaming pictures of any size with bounded memory.

The engine cuts an image into same-size overlapping tiles (:func:`tile_layout`, :func:`extract_tiles`),
computes gradients a few tiles at a time, and blends them back (:func:`accumulate_tiles`). Blend weights
are separable linear ramps over the overlaps, normalized so that they sum to one at every pixel; since
the layout is a product grid, the normalizer is separable too and any subset of tiles can be
accumulated without seeing the others. References: :mod:`fastdream.reference.tiling`.

Both are ``torch.library`` custom ops (``torch.ops.fastdream.extract_tiles``,
``torch.ops.fastdream.accumulate_tiles_``) with fake implementations. ``extract_tiles`` has a backward
(each tile's gradient added back where the tile was cut); ``accumulate_tiles`` writes into ``out`` in place
(declared, so ``out``'s version counter moves) and has no backward: it refuses inputs that require grad.

>>> layout = tile_layout(1080, 1920, tile=512, overlap=64)
>>> out = torch.zeros_like(image)
>>> for start in range(0, len(layout), 4):
...     tiles = extract_tiles(image, layout, start, count=min(4, len(layout) - start))
...     accumulate_tiles(grad_of(tiles), layout, out, start)
"""
from __future__ import annotations

import math

from dataclasses import dataclass

import torch

from fastdream.ops._boundary import capsule, native, no_grad_inputs, require_tensor, stream_of, workspace

__all__ = ["TileLayout", "tile_layout", "auto_tile", "halo_tiles", "extract_tiles", "accumulate_tiles"]


@dataclass(frozen=True)
class TileLayout:
    """Where the tiles of a ``height x width`` picture lie.

    ``ys`` / ``xs``: tile starts along each axis (the layout is their product grid, tile ``n`` at
    ``(ys[n // len(xs)], xs[n % len(xs)])``); ``tile_h`` / ``tile_w``: the size of every tile (the
    requested tile clipped to the picture); ``overlap``: the blend ramp length; ``offset``: the offsets
    used, reduced modulo the stride.
    """

    ys: tuple
    xs: tuple
    tile_h: int
    tile_w: int
    height: int
    width: int
    overlap: int
    offset: tuple = (0, 0)

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def tile(self, n: int) -> tuple[int, int]:
        """Top-left corner ``(y, x)`` of tile ``n``."""
        if not 0 <= n < len(self):
            raise IndexError(f"tile {n} does not exist, the layout has {len(self)} tiles")
        return self.ys[n // len(self.xs)], self.xs[n % len(self.xs)]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _axis_starts(length: int, tile: int, overlap: int, offset: int) -> tuple[tuple, int]:
    """Tile starts along one axis and the reduced offset."""
    t = min(tile, length)
    if t == length:
        return (0,), 0
    stride = t - overlap
    o = offset % stride
    starts: list[int] = []
    k = 0
    while True:
        s = k * stride - o
        c = min(max(s, 0), length - t)
        if not starts or starts[-1] != c:
            starts.append(c)
        if s + t >= length:
            break
        k += 1
    return tuple(starts), o


def tile_layout(height: int, width: int, tile=512, overlap: int = 64, offset=(0, 0)) -> TileLayout:
    """Overlapping same-size tiles covering a ``height x width`` picture.

    ``tile``: an int or ``(th, tw)``; ``overlap``: an int with ``0 <= overlap < tile``; ``offset``:
    ``(oy, ox)`` shifts the grid (any ints, e.g. the jitter of the current step) so that seams move.
    Per axis of length L with tile T' = min(T, L) and stride S = T' - overlap, the starts are
    ``k*S - (o mod S)`` for k = 0, 1, ... until a tile reaches the end, each clamped to [0, L - T'].

    >>> layout = tile_layout(1080, 1920, tile=512, overlap=64)
    >>> len(layout), layout.ys, layout.xs
    (15, (0, 448, 568), (0, 448, 896, 1344, 1408))
    """
    for name, v in (("height", height), ("width", width), ("overlap", overlap)):
        if not _is_int(v):
            raise TypeError(f"{name}: expected an int, got {type(v).__name__} {v!r}")
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height} x {width}")
    if _is_int(tile):
        th = tw = tile
    elif isinstance(tile, (tuple, list)) and len(tile) == 2 and all(_is_int(v) for v in tile):
        th, tw = tile
    else:
        raise TypeError(f"tile: expected an int or a pair of ints (th, tw), got {tile!r}")
    if th < 1 or tw < 1:
        raise ValueError(f"tile: expected positive sizes, got {tile!r}")
    if not 0 <= overlap < min(th, tw):
        raise ValueError(f"overlap must be in [0, {min(th, tw)}) for tile {tile!r}, got {overlap}")
    if not (isinstance(offset, (tuple, list)) and len(offset) == 2 and all(_is_int(v) for v in offset)):
        raise TypeError(f"offset: expected a pair of ints (oy, ox), got {offset!r}")
    ys, oy = _axis_starts(height, th, overlap, offset[0])
    xs, ox = _axis_starts(width, tw, overlap, offset[1])
    return TileLayout(ys, xs, min(th, height), min(tw, width), height, width, overlap, (oy, ox))


def auto_tile(height: int, width: int, max_pixels: int, overlap: int = 64) -> tuple[int, int]:
    """The tile ``(th, tw)`` of at most ``max_pixels`` pixels that covers a ``height x width`` picture with
    the fewest pixels computed, on average over the grid offsets a dream draws at every step.

    A square tile of ``sqrt(max_pixels)`` can waste half the work: at 1920x1080 with 1024x1024 tiles the
    grid needs 2x2 to 3x3 tiles (4.2-9.4 million pixels for a 2.1 million pixel picture); 1080-high tiles
    need 3 or 4 along the width (2.2-2.9 million). Returns ``(height, width)`` when the picture fits.
    """
    for name, v in (("height", height), ("width", width), ("max_pixels", max_pixels), ("overlap", overlap)):
        if not _is_int(v) or v < (0 if name == "overlap" else 1):
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    if height * width <= max_pixels:
        return height, width
    # neither side below half the square tile's: deep features need context, and a thin tile is mostly border
    side = max(2 * overlap + 1, 32, int(math.sqrt(max_pixels)) // 2)
    if side * side > max_pixels:
        raise ValueError(f"max_pixels {max_pixels} is too small for tiles with overlap {overlap}")

    def mean_count(length: int, t: int) -> float:
        s = t - overlap
        if t >= length:
            return 1.0
        offs = sorted({(k * s) // 8 for k in range(8)})
        return sum(len(_axis_starts(length, t, overlap, o)[0]) for o in offs) / len(offs)

    best = None
    for th in sorted({min(height, v) for v in range(side, height + 16, 16)}):
        tw = min(width, max_pixels // th)
        if tw < side:
            continue
        cost = mean_count(height, th) * mean_count(width, tw) * th * tw
        if best is None or cost < best[0] - 1e-9:
            best = (cost, th, tw)
    return best[1], best[2]


def halo_tiles(height: int, width: int, tile, halo: int, align: int = 32) -> list[tuple[tuple, tuple]]:
    """The tiles of :func:`tile_layout` ``(tile, overlap 0)`` as a partition with context, for computations
    that must see every pixel exactly once (sums over positions, such as Gram matrices) yet need context
    around each tile: ``[(core, crop), ...]`` with boxes ``(y0, y1, x0, x1)``.

    The cores partition the picture: where two tiles of the layout abut, the core boundary is theirs;
    where they overlap (the last tile of an axis is clamped to the border), it is the middle of the
    overlap. Boundaries are rounded to multiples of ``align`` (feature maps at strides up to ``align``
    then cut at the same places in every tile). Each crop is its core grown by ``halo`` pixels on every
    side, clipped to the picture.

    >>> halo_tiles(112, 160, tile=96, halo=32)[0]
    ((0, 64, 0, 64), (0, 96, 0, 96))
    """
    if not _is_int(halo) or halo < 0:
        raise ValueError(f"halo: expected an int >= 0, got {halo!r}")
    if not _is_int(align) or align < 1:
        raise ValueError(f"align: expected a positive int, got {align!r}")
    layout = tile_layout(height, width, tile, 0)

    def cores(starts, t, length):
        cuts = [0]
        for s0, s1 in zip(starts[:-1], starts[1:]):
            mid = (s1 + s0 + t) / 2                       # middle of the overlap [s1, s0 + t), or s1 itself
            cut = int(round(mid / align)) * align
            if cuts[-1] < cut < length:
                cuts.append(cut)
        return list(zip(cuts, cuts[1:] + [length]))

    ys = cores(layout.ys, layout.tile_h, height)
    xs = cores(layout.xs, layout.tile_w, width)
    return [((y0, y1, x0, x1), (max(0, y0 - halo), min(height, y1 + halo), max(0, x0 - halo), min(width, x1 + halo)))
            for y0, y1 in ys for x0, x1 in xs]


def _check_layout(layout) -> TileLayout:
    if not isinstance(layout, TileLayout):
        raise TypeError(f"layout: expected a TileLayout (from tile_layout()), got {type(layout).__name__}")
    again = tile_layout(layout.height, layout.width, (layout.tile_h, layout.tile_w), layout.overlap, layout.offset)
    if again != layout:
        raise ValueError(f"layout: not one that tile_layout() makes: {layout}")
    return layout


def _check_range(name: str, v, lo: int, hi: int) -> int:
    if not _is_int(v):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__} {v!r}")
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


def _check_float(t, name: str, ndim: int, shape_doc: str) -> torch.Tensor:
    require_tensor(t, name)
    if t.dtype != torch.float32:
        raise TypeError(f"{name}: expected a float32 tensor, got {t.dtype}")
    if t.dim() != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d tensor {shape_doc}, got shape {list(t.shape)}")
    return t


def _layout_args(layout: TileLayout) -> tuple:
    return (layout.tile_h, layout.tile_w, layout.overlap, layout.offset[0], layout.offset[1])


# -- the torch.library ops ----------------------------------------------------------------------------
# The layout travels as plain ints (tile size, overlap, offset); the height and width are the image's.


def _corners(height: int, width: int, th: int, tw: int, overlap: int, oy: int, ox: int, start: int, count: int):
    layout = tile_layout(height, width, (th, tw), overlap, (oy, ox))
    return [layout.tile(n) for n in range(start, start + count)]


@torch.library.custom_op("fastdream::extract_tiles", mutates_args=())
def _extract_tiles_op(image: torch.Tensor, tile_h: int, tile_w: int, overlap: int, offset_y: int, offset_x: int,
                      start: int, count: int) -> torch.Tensor:
    """Tiles ``start .. start+count-1`` of ``image [B, C, H, W]`` -> new ``[count, B, C, tile_h, tile_w]``."""
    image = image.contiguous()
    B, C = image.shape[:2]
    tiles = torch.empty((count, B, C, tile_h, tile_w), dtype=image.dtype, device=image.device)
    if tiles.numel():
        native().extract_tiles(capsule(image), capsule(tiles), tile_h, tile_w, overlap, offset_y, offset_x, start,
                               stream_of(image))
    return tiles


@_extract_tiles_op.register_fake
def _(image, tile_h, tile_w, overlap, offset_y, offset_x, start, count):
    return image.new_empty((count, image.shape[0], image.shape[1], tile_h, tile_w))


def _extract_tiles_setup(ctx, inputs, output):
    image, *args = inputs
    ctx.shape, ctx.args = tuple(image.shape), args


def _extract_tiles_backward(ctx, grad):
    """The adjoint of cutting tiles: every tile's gradient added into the picture where it was cut."""
    B, C, H, W = ctx.shape
    th, tw = ctx.args[0], ctx.args[1]
    out = grad.new_zeros((B, C, H, W))
    # the corners are a Python function of the sizes: traced with symbolic sizes, they specialize on them
    for k, (y, x) in enumerate(_corners(int(H), int(W), *(int(a) for a in ctx.args))):
        out[..., y:y + th, x:x + tw] += grad[k]
    return (out, *([None] * len(ctx.args)))


_extract_tiles_op.register_autograd(_extract_tiles_backward, setup_context=_extract_tiles_setup)


@torch.library.custom_op("fastdream::accumulate_tiles_", mutates_args=("out",))
def _accumulate_tiles_op(tiles: torch.Tensor, out: torch.Tensor, tile_h: int, tile_w: int, overlap: int,
                         offset_y: int, offset_x: int, start: int) -> None:
    """``out [B, C, H, W] += normalized blend weight * tile`` for tiles ``start ..``, in place."""
    tiles = tiles.contiguous()
    H, W = out.shape[-2:]
    args = (tile_h, tile_w, overlap, offset_y, offset_x)
    _C = native()
    ws = workspace(_C.tiling_workspace_bytes(H, W, *args), out)
    _C.accumulate_tiles(capsule(tiles), capsule(out), *args, start, capsule(ws), stream_of(out))


@_accumulate_tiles_op.register_fake
def _(tiles, out, tile_h, tile_w, overlap, offset_y, offset_x, start):
    return None


# -- the public functions ---------------------------------------------------------------------------


def extract_tiles(image: torch.Tensor, layout: TileLayout, start: int = 0, count: int | None = None) -> torch.Tensor:
    """Copy tiles ``start .. start+count-1`` of ``image [B, C, H, W]`` -> ``[count, B, C, th, tw]``.

    ``count`` defaults to all remaining tiles. Differentiable w.r.t. ``image`` (the gradient of each tile
    goes back to the pixels it was cut from; overlaps add up).
    """
    _check_float(image, "image", 4, "[B, C, H, W]")
    _check_layout(layout)
    if tuple(image.shape[-2:]) != (layout.height, layout.width):
        raise ValueError(
            f"image is {list(image.shape)} but the layout is for {layout.height} x {layout.width} pictures"
        )
    n = len(layout)
    _check_range("start", start, 0, n)
    count = n - start if count is None else _check_range("count", count, 0, n - start)
    return _extract_tiles_op(image, *_layout_args(layout), start, count)


def accumulate_tiles(tiles: torch.Tensor, layout: TileLayout, out: torch.Tensor, start: int = 0) -> torch.Tensor:
    """Add tiles ``start .. start+len(tiles)-1`` (``tiles [n, B, C, th, tw]``), weighted by the normalized
    blend weights, into ``out [B, C, H, W]`` in place; returns ``out``.

    After every tile of the layout has been accumulated into a zeroed ``out``, ``out`` is the blend
    ``sum_n w_n * tile_n / sum_n w_n``; batches may come in any grouping and give the same bits.
    ``out`` must be contiguous and must not overlap ``tiles``. No backward: with grad mode on, ``tiles``
    and ``out`` must not require grad (ValueError).
    """
    _check_float(tiles, "tiles", 5, "[n, B, C, th, tw]")
    _check_float(out, "out", 4, "[B, C, H, W]")
    _check_layout(layout)
    if tuple(out.shape[-2:]) != (layout.height, layout.width):
        raise ValueError(f"out is {list(out.shape)} but the layout is for {layout.height} x {layout.width} pictures")
    if tiles.device != out.device:
        raise ValueError(f"tiles and out must be on the same device, got {tiles.device} and {out.device}")
    if not out.is_contiguous():
        raise ValueError(f"out: expected a contiguous tensor, got strides {out.stride()}")
    expected = (out.shape[0], out.shape[1], layout.tile_h, layout.tile_w)
    if tuple(tiles.shape[1:]) != expected:
        raise ValueError(f"tiles: expected shape [n, {', '.join(map(str, expected))}], got {list(tiles.shape)}")
    n = len(layout)
    _check_range("start", start, 0, n)
    if start + tiles.shape[0] > n:
        raise ValueError(
            f"tiles {start} .. {start + tiles.shape[0] - 1} do not exist, the layout has {n} tiles"
        )
    no_grad_inputs("accumulate_tiles", tiles=tiles, out=out)
    if tiles.shape[0] == 0 or out.numel() == 0:
        return out
    _accumulate_tiles_op(tiles, out, *_layout_args(layout), start)
    return out
