"""fastdream.ops.tiling: layout coverage, and extract/accumulate against the pure-torch references."""

import pytest
import torch

from conftest import DEVICES
from fastdream._native import native
from fastdream.ops.tiling import TileLayout, accumulate_tiles, extract_tiles, tile_layout
from fastdream.reference.tiling import _accumulate_tiles, _extract_tiles, _tile_weights

# float32 tolerances (atol, rtol) for accumulate vs the reference; inputs are randn (|x| < ~5).
TOL_FLOAT32 = {
    # The kernel rounds the normalized weight once per axis and once for their product; the reference
    # normalizes the 2-d weight in float64 and rounds once. At most 4 tiles meet at a pixel: a few ulp of |x|.
    "accumulate": (2e-6, 2e-6),
    # Blending a picture's own tiles gives the picture back up to the same rounding (weights sum to 1
    # within 2 ulp).
    "round_trip": (2e-6, 2e-6),
    # Normalized weights summed over all tiles: per-axis sums are 1 to 1 ulp, the product to ~3 ulp of 1.
    "partition_of_unity": (1e-6, 0.0),
    # extract is a copy.
    "extract": (0.0, 0.0),
}

LAYOUT_CASES = [
    # (H, W, tile, overlap, offset)
    (1080, 1920, 512, 64, (0, 0)),
    (37, 53, (10, 16), 3, (-5, 1000)),
    (100, 100, 32, 0, (7, 7)),
    (64, 48, 600, 10, (3, -3)),  # tile larger than the picture: one tile
    (9, 200, (4, 50), 3, (10**12 + 3, -(10**12) - 5)),  # huge offsets
    (1, 1, 1, 0, (0, 0)),
    (5, 70, (5, 7), 4, (-1, -1)),
    (33, 17, (33, 4), 3, (0, 2)),  # stride 1 along x
]


def _randn(gen, *shape, device="cpu"):
    return torch.randn(*shape, generator=gen).to(device)


# ---- tile_layout -------------------------------------------------------------------------------------


def _check_axis(starts, length, tile, overlap):
    t = min(tile, length)
    assert len(starts) >= 1
    assert starts[0] == 0 and starts[-1] == length - t
    assert all(0 <= s <= length - t for s in starts)
    assert all(b > a for a, b in zip(starts, starts[1:]))  # strictly increasing, no duplicates
    # consecutive tiles overlap by at least `overlap` (so every seam has a full ramp) and cover [0, L)
    assert all(b <= a + t - overlap for a, b in zip(starts, starts[1:]))
    covered = torch.zeros(length, dtype=torch.bool)
    for s in starts:
        covered[s : s + t] = True
    assert bool(covered.all())


@pytest.mark.parametrize(
    "length,tile,overlap",
    [(L, T, O) for L in (1, 2, 7, 64, 100, 513) for T in (1, 3, 16, 64, 600) for O in (0, 1, 2, 15) if O < T],
)
@pytest.mark.parametrize("offset", [0, 1, -3, 17, 10**9 + 7, -(10**9)])
def test_tile_layout_covers_every_pixel(length, tile, overlap, offset):
    layout = tile_layout(length, 2 * length + 1, tile, overlap, (offset, -offset))
    assert layout.tile_h == min(tile, length) and layout.tile_w == min(tile, 2 * length + 1)
    _check_axis(layout.ys, length, tile, overlap)
    _check_axis(layout.xs, 2 * length + 1, tile, overlap)
    assert len(layout) == len(layout.ys) * len(layout.xs)
    # the native kernels derive the same starts in closed form
    ny, nx = native().tile_count(length, 2 * length + 1, layout.tile_h, layout.tile_w, overlap, *layout.offset)
    assert (ny, nx) == (len(layout.ys), len(layout.xs))


def test_tile_layout_rule():
    layout = tile_layout(1080, 1920, tile=512, overlap=64)
    assert layout.ys == (0, 448, 568) and layout.xs == (0, 448, 896, 1344, 1408)
    assert len(layout) == 15 and layout.tile(0) == (0, 0) and layout.tile(6) == (448, 448)
    assert layout.tile(14) == (568, 1408)
    shifted = tile_layout(1080, 1920, 512, 64, offset=(100, -100))  # o = offset mod 448
    assert shifted.offset == (100, 348)
    assert shifted.ys == (0, 348, 568)
    assert shifted.xs == (0, 100, 548, 996, 1408)
    assert tile_layout(1080, 1920, 512, 64, offset=(548, -548)) == shifted  # offsets equal mod the stride
    single = tile_layout(300, 200, 512, 500)
    assert single.ys == (0,) and single.xs == (0,) and (single.tile_h, single.tile_w) == (300, 200)


@pytest.mark.parametrize("H,W,tile,overlap,offset", LAYOUT_CASES)
def test_tile_weights_sum_to_one(H, W, tile, overlap, offset):
    layout = tile_layout(H, W, tile, overlap, offset)
    w = _tile_weights(layout)
    assert w.shape == (len(layout), layout.tile_h, layout.tile_w) and bool((w > 0).all())
    total = torch.zeros(H, W, dtype=torch.float64)
    for n, wn in enumerate(w):
        y, x = layout.tile(n)
        total[y : y + layout.tile_h, x : x + layout.tile_w] += wn
    assert bool((total > 0).all())
    # the kernel's normalized weights: accumulate tiles of ones
    ones = torch.ones(len(layout), 1, 1, layout.tile_h, layout.tile_w)
    out = accumulate_tiles(ones, layout, torch.zeros(1, 1, H, W))
    atol, _ = TOL_FLOAT32["partition_of_unity"]
    assert float((out - 1).abs().max()) <= atol


def test_tile_weights_ramps():
    layout = tile_layout(10, 30, (10, 12), 3)  # xs = 0, 9, 18
    w = _tile_weights(layout)[1, 0]  # the middle tile: ramps on both sides
    expected = torch.tensor([0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25], dtype=torch.float64)
    torch.testing.assert_close(w, expected)
    assert torch.equal(_tile_weights(layout)[0, 0, :3], torch.ones(3, dtype=torch.float64))  # border side


# ---- extract / accumulate ----------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("H,W,tile,overlap,offset", LAYOUT_CASES)
@pytest.mark.parametrize("bc", [(1, 1), (2, 3)])
def test_extract_tiles_matches_reference(gen, device, H, W, tile, overlap, offset, bc):
    layout = tile_layout(H, W, tile, overlap, offset)
    image = _randn(gen, *bc, H, W, device=device)
    tiles = extract_tiles(image, layout)
    assert tiles.shape == (len(layout), *bc, layout.tile_h, layout.tile_w)
    assert torch.equal(tiles.cpu(), _extract_tiles(image.cpu(), layout))
    n = len(layout)
    for start, count in [(0, 1), (n - 1, 1), (n // 2, n - n // 2), (n, 0), (n // 3, None)]:
        part = extract_tiles(image, layout, start, count)
        assert torch.equal(part.cpu(), _extract_tiles(image.cpu(), layout, start, count))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("H,W,tile,overlap,offset", LAYOUT_CASES)
@pytest.mark.parametrize("bc", [(1, 1), (2, 3)])
def test_accumulate_tiles_matches_reference(gen, device, H, W, tile, overlap, offset, bc):
    layout = tile_layout(H, W, tile, overlap, offset)
    tiles = _randn(gen, len(layout), *bc, layout.tile_h, layout.tile_w, device=device)
    start_out = _randn(gen, *bc, H, W, device=device)  # accumulate onto something, not zeros
    out = accumulate_tiles(tiles, layout, start_out.clone())
    expected = _accumulate_tiles(tiles.cpu(), layout, start_out.cpu().clone())
    atol, rtol = TOL_FLOAT32["accumulate"]
    torch.testing.assert_close(out.cpu(), expected, atol=atol, rtol=rtol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("H,W,tile,overlap,offset", LAYOUT_CASES)
def test_accumulate_tiles_in_chunks_equals_all_at_once(gen, device, H, W, tile, overlap, offset):
    layout = tile_layout(H, W, tile, overlap, offset)
    n = len(layout)
    tiles = _randn(gen, n, 2, 3, layout.tile_h, layout.tile_w, device=device)
    whole = accumulate_tiles(tiles, layout, torch.zeros(2, 3, H, W, device=device))
    for chunk in sorted({1, 2, 3, len(layout.xs) + 1, max(1, n // 2)}):
        out = torch.zeros(2, 3, H, W, device=device)
        for start in range(0, n, chunk):
            accumulate_tiles(tiles[start : start + chunk], layout, out, start)
        assert torch.equal(out, whole), f"chunk {chunk}"
    # and in a shuffled order of chunks, compared with the reference (addition order differs: tolerance)
    out = torch.zeros(2, 3, H, W, device=device)
    starts = list(range(0, n, 2))
    for start in reversed(starts):
        accumulate_tiles(tiles[start : start + 2], layout, out, start)
    atol, rtol = TOL_FLOAT32["accumulate"]
    torch.testing.assert_close(out, whole, atol=atol, rtol=rtol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("H,W,tile,overlap,offset", LAYOUT_CASES)
def test_extract_accumulate_round_trip(gen, device, H, W, tile, overlap, offset):
    layout = tile_layout(H, W, tile, overlap, offset)
    image = _randn(gen, 2, 3, H, W, device=device)
    out = accumulate_tiles(extract_tiles(image, layout), layout, torch.zeros_like(image))
    if len(layout) == 1:
        assert torch.equal(out, image)  # one tile covering the picture: exact
    else:
        atol, rtol = TOL_FLOAT32["round_trip"]
        torch.testing.assert_close(out, image, atol=atol, rtol=rtol)


@pytest.mark.parametrize("device", DEVICES)
def test_accumulate_tiles_is_deterministic(gen, device):
    layout = tile_layout(300, 257, 64, 20, (5, 9))
    tiles = _randn(gen, len(layout), 1, 3, 64, 64, device=device)
    a = accumulate_tiles(tiles, layout, torch.zeros(1, 3, 300, 257, device=device))
    b = accumulate_tiles(tiles, layout, torch.zeros(1, 3, 300, 257, device=device))
    assert torch.equal(a, b)


def test_extract_tiles_noncontiguous_image(gen):
    layout = tile_layout(40, 30, 16, 4)
    image = _randn(gen, 1, 3, 30, 40).transpose(2, 3)
    assert torch.equal(extract_tiles(image, layout), _extract_tiles(image, layout))


# ---- bad inputs --------------------------------------------------------------------------------------


def test_tile_layout_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"overlap must be in \[0, 16\) for tile 16, got 16"):
        tile_layout(100, 100, 16, 16)
    with pytest.raises(ValueError, match=r"overlap must be in \[0, 8\) for tile \(8, 32\), got -1"):
        tile_layout(100, 100, (8, 32), -1)
    with pytest.raises(ValueError, match=r"tile: expected positive sizes, got 0"):
        tile_layout(100, 100, 0, 0)
    with pytest.raises(TypeError, match=r"tile: expected an int or a pair of ints \(th, tw\), got 16.0"):
        tile_layout(100, 100, 16.0, 2)
    with pytest.raises(ValueError, match="height and width must be positive, got 0 x 100"):
        tile_layout(0, 100, 16, 2)
    with pytest.raises(TypeError, match="height: expected an int, got bool True"):
        tile_layout(True, 100, 16, 2)
    with pytest.raises(TypeError, match=r"offset: expected a pair of ints \(oy, ox\), got 3"):
        tile_layout(100, 100, 16, 2, offset=3)


def test_extract_tiles_rejects_bad_inputs(gen):
    layout = tile_layout(40, 30, 16, 4)
    image = _randn(gen, 1, 3, 40, 30)
    with pytest.raises(ValueError, match=r"image is \[1, 3, 40, 31\] but the layout is for 40 x 30 pictures"):
        extract_tiles(_randn(gen, 1, 3, 40, 31), layout)
    with pytest.raises(TypeError, match="image: expected a float32 tensor, got torch.float64"):
        extract_tiles(image.double(), layout)
    with pytest.raises(ValueError, match=r"image: expected a 4-d tensor \[B, C, H, W\], got shape \[3, 40, 30\]"):
        extract_tiles(image[0], layout)
    with pytest.raises(ValueError, match=rf"start must be in \[0, {len(layout)}\], got -1"):
        extract_tiles(image, layout, start=-1)
    with pytest.raises(ValueError, match=rf"count must be in \[0, {len(layout) - 2}\], got {len(layout)}"):
        extract_tiles(image, layout, start=2, count=len(layout))
    with pytest.raises(TypeError, match="layout: expected a TileLayout \\(from tile_layout\\(\\)\\), got tuple"):
        extract_tiles(image, (0, 16))
    forged = TileLayout((0, 3), layout.xs, 16, 16, 40, 30, 4, (0, 0))
    with pytest.raises(ValueError, match="layout: not one that tile_layout\\(\\) makes"):
        extract_tiles(image, forged)


def test_accumulate_tiles_rejects_bad_inputs(gen):
    layout = tile_layout(40, 30, 16, 4)
    n = len(layout)
    tiles = _randn(gen, n, 1, 3, 16, 16)
    out = torch.zeros(1, 3, 40, 30)
    with pytest.raises(ValueError, match=r"tiles: expected shape \[n, 1, 3, 16, 16\], got \[.*, 1, 3, 16, 15\]"):
        accumulate_tiles(tiles[..., :15], layout, out)
    with pytest.raises(ValueError, match=r"tiles: expected shape \[n, 1, 3, 16, 16\], got \[.*, 1, 2, 16, 16\]"):
        accumulate_tiles(tiles[:, :, :2], layout, out)
    with pytest.raises(ValueError, match=rf"tiles 2 .. {n + 1} do not exist, the layout has {n} tiles"):
        accumulate_tiles(tiles, layout, out, start=2)
    with pytest.raises(ValueError, match="out: expected a contiguous tensor"):
        accumulate_tiles(tiles, layout, torch.zeros(1, 3, 30, 40).transpose(2, 3))
    with pytest.raises(TypeError, match="tiles: expected a float32 tensor, got torch.float16"):
        accumulate_tiles(tiles.half(), layout, out)
    with pytest.raises(ValueError, match=r"tiles: expected a 5-d tensor \[n, B, C, th, tw\], got shape \[.*, 3, 16, 16\]"):
        accumulate_tiles(tiles[:, 0], layout, out)
    with pytest.raises(ValueError, match=r"out is \[1, 3, 40, 29\] but the layout is for 40 x 30 pictures"):
        accumulate_tiles(tiles, layout, torch.zeros(1, 3, 40, 29))
    with pytest.raises(TypeError, match="start: expected an int, got float 1.0"):
        accumulate_tiles(tiles[:1], layout, out, start=1.0)
    # out sharing memory with tiles: refused by the native boundary
    buf = torch.randn(tiles.numel() + 100, generator=gen)
    shared_tiles = buf[: tiles.numel()].view_as(tiles)
    shared_out = buf[100 : 100 + out.numel()].view_as(out)
    with pytest.raises(ValueError, match="tiles and out share memory; pass separate tensors"):
        accumulate_tiles(shared_tiles, layout, shared_out)


def test_native_tiling_checks_its_arguments(gen):
    _C = native()
    image = _randn(gen, 1, 3, 40, 30)
    tiles = torch.empty(2, 1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"tiling: tile height must be in \[1, 40\] \(the image height\), got 41"):
        _C.extract_tiles(image, tiles, 41, 16, 4, 0, 0, 0, 0)
    with pytest.raises(ValueError, match=r"tiling: overlap must be smaller than the tile height \(16\), got 16"):
        _C.extract_tiles(image, tiles, 16, 16, 16, 0, 0, 0, 0)
    with pytest.raises(ValueError, match=r"extract_tiles: tiles 8 .. 9 do not exist, the layout has 9 tiles"):
        _C.extract_tiles(image, tiles, 16, 16, 4, 0, 0, 8, 0)
    with pytest.raises(ValueError, match=r"extract_tiles: start must be in \[0, 9\] \(the layout has 9 tiles\), got -3"):
        _C.extract_tiles(image, tiles, 16, 16, 4, 0, 0, -3, 0)
    with pytest.raises(ValueError, match=r"extract_tiles: tiles must be \[n, 1, 3, 16, 16\] for image \[1, 3, 40, 30\]"):
        _C.extract_tiles(image, torch.empty(2, 1, 3, 16, 8), 16, 16, 4, 0, 0, 0, 0)
    with pytest.raises(ValueError, match=r"image: expected a contiguous tensor"):
        _C.extract_tiles(image.transpose(2, 3).contiguous().transpose(2, 3), tiles, 16, 16, 4, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="workspace: workspace of 1 bytes is too small"):
        _C.accumulate_tiles(tiles, image.clone(), 16, 16, 4, 0, 0, 0, torch.empty(1, dtype=torch.uint8), 0)
    with pytest.raises(TypeError, match="tiles: expected float32, got int32 tensor"):
        _C.accumulate_tiles(tiles.int(), image.clone(), 16, 16, 4, 0, 0, 0, torch.empty(1, dtype=torch.uint8), 0)


def test_auto_tile_covers_with_less_work_than_a_square_tile():
    from fastdream.ops import auto_tile

    assert auto_tile(900, 1000, 1024 * 1024) == (900, 1000)  # fits: no tiling
    for (h, w) in [(1080, 1920), (2160, 3840), (1025, 1025), (600, 2000), (4320, 7680)]:
        th, tw = auto_tile(h, w, 1024 * 1024, 64)
        assert th * tw <= 1024 * 1024 and min(th, tw) >= 512
        offs = [(o, 2 * o) for o in range(0, 1000, 97)]
        work = sum(len(tile_layout(h, w, (th, tw), 64, o)) for o in offs) * th * tw
        square = sum(len(tile_layout(h, w, 1024, 64, o)) for o in offs) * 1024 * 1024
        assert work <= 1.05 * square, (h, w, th, tw)  # chosen on 8 offsets per axis: an estimate
    th, tw = auto_tile(1080, 1920, 1024 * 1024, 64)
    assert th * tw * 3 < 0.6 * 6 * 1024 * 1024  # 1080p: 3 strips instead of 4-6 squares
    with pytest.raises(ValueError, match="too small"):
        auto_tile(1000, 1000, 2000, 64)


@pytest.mark.parametrize("H,W,tile,halo", [(112, 160, 96, 32), (1000, 50, 300, 64), (37, 300, 64, 0), (64, 64, 64, 16),
                                           (200, 131, (70, 90), 8)])
def test_halo_tiles_partition_with_context(H, W, tile, halo):
    """The cores of ops.halo_tiles cover every pixel exactly once, on the 32-pixel grid inside the picture,
    one core per tile of tile_layout(tile, overlap 0); each crop is its core plus the halo, clipped."""
    from fastdream.ops import halo_tiles

    tiles = halo_tiles(H, W, tile, halo)
    seen = torch.zeros(H, W, dtype=torch.int32)
    for (y0, y1, x0, x1), crop in tiles:
        seen[y0:y1, x0:x1] += 1
        assert all(v % 32 == 0 for v in (y0, x0)) and y1 in (H,) + tuple(range(0, H, 32)) and x1 % 32 in (0, W % 32)
        assert crop == (max(0, y0 - halo), min(H, y1 + halo), max(0, x0 - halo), min(W, x1 + halo))
    assert bool((seen == 1).all())
    assert len(tiles) <= len(tile_layout(H, W, tile, 0))
    assert halo_tiles(112, 160, 96, 32)[0] == ((0, 64, 0, 64), (0, 96, 0, 96))
