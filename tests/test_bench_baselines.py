"""The benchmarks' fast pure-torch baselines compute what the references compute (else a ratio against
them would mean nothing)."""
import pytest
import torch

from fastdream.bench.baselines import BestDreamStep, CachedAccumulate
from fastdream.ops.tiling import tile_layout
from fastdream.reference.dream_step import _dream_step
from fastdream.reference.tiling import _accumulate_tiles


@pytest.mark.parametrize("kw", [
    dict(sigma=(0.5, 1.0, 2.0), kernel_size=9, norm="std", lower=(-2.1, -2.0, -1.8), upper=(2.2, 2.4, 2.6)),
    dict(sigma=None, norm="mean_abs"),
    dict(sigma=1.0, norm="mean_abs"),
    dict(sigma=0.8, norm="none", lower=0.1, upper=0.9),
])
def test_best_dream_step_matches_the_reference(kw):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 37, 53, generator=g)
    grad = torch.randn(1, 3, 37, 53, generator=g)
    want, _ = _dream_step(image, grad, step_size=0.02, shift=(5, -7), **kw)
    got = image.clone()
    BestDreamStep(3, step_size=0.02, shift=(5, -7), **kw)(got, grad)
    # 1e-5: separable passes sum the taps in another order than the 2-D kernel (fp32, <= 81 taps)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_cached_accumulate_matches_the_reference():
    g = torch.Generator().manual_seed(1)
    layout = tile_layout(70, 90, 32, 8)
    tiles = torch.randn(len(layout), 1, 3, layout.tile_h, layout.tile_w, generator=g)
    want = _accumulate_tiles(tiles, layout, torch.zeros(1, 3, 70, 90))
    got = CachedAccumulate(layout)(tiles, torch.zeros(1, 3, 70, 90))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
