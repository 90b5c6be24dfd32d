"""The one metrics module: colourfulness by hand, the Lite2 judge's distances and recognition."""
import math

import pytest
import torch

from fastdream.metrics import Judge, colourfulness, gram_matrix, psnr


def test_colourfulness_hand():
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0, 0, :] = 1.0  # two red pixels, two black ones
    r = torch.tensor([255.0, 255, 0, 0]).double()
    rg, yb = r, 0.5 * r
    want = math.sqrt(rg.var(unbiased=False) + yb.var(unbiased=False)) + 0.3 * math.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    assert colourfulness(x) == pytest.approx(float(want), rel=1e-12)
    assert colourfulness(torch.full((1, 3, 8, 8), 0.5)) == pytest.approx(0.0, abs=1e-9)


def test_psnr_identical_is_inf_and_gram_is_size_free():
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert psnr(x, x) == math.inf
    assert psnr(x, (x + 0.1).clamp(0, 1)) < 30
    f = torch.rand(1, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    tiled = f.repeat(1, 1, 2, 2)
    assert torch.allclose(gram_matrix(f), gram_matrix(tiled), atol=1e-6)


@pytest.fixture(scope="module")
def judge():
    return Judge()


def test_judge_distances(judge):
    from fastdream.convert import to_tensor

    x, _ = to_tensor("examples/chelsea.jpg")
    noisy = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert judge.distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert judge.gram_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert judge.distance(noisy, x) > 0.1
    # the source scored against a reference made from it is 1.0 by definition; the reference itself is 0
    d, g = judge.mimicry(x, noisy, x)
    assert (d, g) == (pytest.approx(1.0), pytest.approx(1.0))
    d, g = judge.mimicry(noisy, noisy, x)
    assert d == pytest.approx(0.0, abs=1e-9) and g == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="one size"):
        judge.distance(x, x[..., :100])


def test_judge_recognizes_the_cat(judge):
    from fastdream.convert import to_tensor

    x, _ = to_tensor("examples/chelsea.jpg")
    p, rank = judge.recognize(x, "Egyptian cat")
    assert rank <= 3 and p > 0.1
    p_box, _ = judge.recognize(x, "Egyptian cat", box=(100, 0, 451, 300))
    assert 0 < p_box <= 1
