"""fastdream.ops.resample against the pure-torch reference (F.interpolate) on seeded random inputs."""
import pytest
import torch

from fastdream._native import native
from fastdream.ops.resample import octave_upsample_add, resample
from fastdream.reference.resample import _octave_upsample_add, _resample
from conftest import DEVICES

# float32 tolerances (atol, rtol) per (mode, antialias); inputs are randn, |x| < ~5 (ulp(4) = 4.8e-7).
TOL_FLOAT32 = {
    # Same indices and weights as ATen (its fused multiply-add for the source index included); only the
    # association of the 4-term sum differs (vertical then horizontal pass): a few ulp of |x|.
    ("bilinear", False): (2e-6, 1e-6),
    # Weights bit-identical to ATen's; the two separable passes run in the opposite order.
    ("bilinear", True): (2e-6, 1e-6),
    # 16 terms with weights up to 1.1 of both signs: cancellation lets rounding reach ~10 ulp of |x|
    # (observed 5e-6 at 1920x1080).
    ("bicubic", False): (1e-5, 1e-5),
    # Normalized Keys weights over windows of up to hundreds of taps (large downscales): same bound.
    ("bicubic", True): (1e-5, 1e-5),
}

# (h, w) -> (H2, W2): odd, 1x1 in and out, tiny, large factors up and down, mixed up/down per axis.
SIZES = [
    ((7, 9), (13, 5)),
    ((1, 1), (1, 1)),
    ((1, 1), (5, 4)),
    ((5, 4), (1, 1)),
    ((2, 3), (37, 61)),
    ((97, 64), (3, 5)),
    ((33, 17), (33, 17)),
    ((16, 40), (31, 9)),
    ((3, 2), (2, 3)),
]
MODES = ["bilinear", "bicubic"]


def _randn(gen, *shape, device="cpu"):
    return torch.randn(*shape, generator=gen).to(device)


def _close(actual, expected, mode, antialias):
    atol, rtol = TOL_FLOAT32[(mode, antialias)]
    torch.testing.assert_close(actual.cpu(), expected.cpu(), atol=atol, rtol=rtol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("src,dst", SIZES)
@pytest.mark.parametrize("bc", [(1, 1), (2, 3)])
def test_resample_matches_reference(gen, device, mode, antialias, src, dst, bc):
    x = _randn(gen, *bc, *src, device=device)
    out = resample(x, dst, mode=mode, antialias=antialias)
    assert out.shape == (*bc, *dst) and out.dtype == torch.float32 and out.device == x.device
    _close(out, _resample(x.cpu(), dst, mode, antialias), mode, antialias)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("src,dst", [((648, 1152), (1080, 1920)), ((1080, 1920), (540, 960))])
def test_resample_full_hd(gen, device, mode, antialias, src, dst):
    x = torch.rand(1, 3, *src, generator=gen).to(device)
    _close(resample(x, dst, mode, antialias), _resample(x.cpu(), dst, mode, antialias), mode, antialias)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", MODES)
def test_resample_noncontiguous_input(gen, device, mode):
    x = _randn(gen, 2, 3, 19, 23, device=device).transpose(2, 3)  # [2, 3, 23, 19], not contiguous
    assert not x.is_contiguous()
    _close(resample(x, (11, 40), mode), _resample(x.cpu(), (11, 40), mode), mode, False)
    x = _randn(gen, 4, 3, 20, 20, device=device)[::2, :, 1:-1:2]  # strided view
    _close(resample(x, (17, 31), mode), _resample(x.cpu(), (17, 31), mode), mode, False)


def test_resample_int_size_and_torch_size(gen):
    x = _randn(gen, 1, 3, 10, 12)
    assert resample(x, 7).shape == (1, 3, 7, 7)
    assert resample(x, torch.Size([5, 6])).shape == (1, 3, 5, 6)


def test_resample_is_deterministic(gen):
    x = _randn(gen, 2, 3, 123, 77)
    a = resample(x, (300, 200), "bicubic")
    b = resample(x, (300, 200), "bicubic")
    assert torch.equal(a, b)


def test_resample_fewer_threads_than_workspace(gen):
    x = _randn(gen, 2, 3, 50, 60)
    expected = resample(x, (90, 70))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # shares the OpenMP runtime: the kernel runs on one thread
        assert torch.equal(resample(x, (90, 70)), expected)
    finally:
        torch.set_num_threads(before)


# ---- octave_upsample_add ------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("small,big", [((7, 9), (13, 15)), ((1, 1), (4, 5)), ((60, 80), (100, 133)), ((9, 9), (9, 9)), ((20, 10), (11, 17))])
@pytest.mark.parametrize("bc", [(1, 1), (2, 3)])
def test_octave_upsample_add_matches_reference(gen, device, mode, small, big, bc):
    detail = _randn(gen, *bc, *small, device=device)
    base = _randn(gen, *bc, *big, device=device)
    expected = _octave_upsample_add(detail.cpu(), base.cpu(), mode)
    base_before = base.clone()
    out = octave_upsample_add(detail, base, mode)
    assert out.data_ptr() != base.data_ptr()
    assert torch.equal(base, base_before)  # base untouched
    _close(out, expected, mode, False)
    # Given out, and in place (out is base).
    given = torch.empty_like(base)
    assert octave_upsample_add(detail, base, mode, out=given) is given
    _close(given, expected, mode, False)
    assert octave_upsample_add(detail, base, mode, out=base) is base
    _close(base, expected, mode, False)


@pytest.mark.parametrize("device", DEVICES)
def test_octave_upsample_add_trajectory(gen, device):
    """An octave pyramid replayed: each step re-injects the previous octave's detail, compared every step."""
    sizes = [(27, 48), (45, 80), (75, 133), (125, 222)]
    b = _randn(gen, 1, 3, *sizes[0], device=device)
    ref = b.cpu().clone()
    for prev, cur in zip(sizes, sizes[1:]):
        base = _randn(gen, 1, 3, *cur, device=device)
        detail = b - resample(base, prev)  # what this octave would have added at the previous size
        ref_detail = ref - _resample(base.cpu(), prev)
        b = octave_upsample_add(detail, base.clone(), out=None)
        ref = _octave_upsample_add(ref_detail, base.cpu())
        # error does not compound beyond the per-step bound (the dream step itself is not part of this)
        _close(b, ref, "bilinear", False)


def test_octave_upsample_add_noncontiguous_detail_and_base(gen):
    detail = _randn(gen, 1, 3, 9, 7).transpose(2, 3)
    base = _randn(gen, 1, 3, 20, 30).transpose(2, 3)
    _close(octave_upsample_add(detail, base), _octave_upsample_add(detail, base), "bilinear", False)


# ---- bad inputs: raised, never a crash ---------------------------------------------------------------


def test_resample_rejects_bad_inputs(gen):
    x = _randn(gen, 1, 3, 8, 8)
    with pytest.raises(TypeError, match="x: expected a torch.Tensor, got list"):
        resample([1.0], (4, 4))
    with pytest.raises(TypeError, match="x: expected a float32 tensor, got torch.float64"):
        resample(x.double(), (4, 4))
    with pytest.raises(ValueError, match=r"x: expected a 4-d tensor \[B, C, H, W\], got shape \[3, 8, 8\]"):
        resample(x[0], (4, 4))
    with pytest.raises(ValueError, match=r"mode: expected one of \['bicubic', 'bilinear'\], got 'nearest'"):
        resample(x, (4, 4), mode="nearest")
    with pytest.raises(ValueError, match=r"size: expected positive sizes, got \(0, 4\)"):
        resample(x, (0, 4))
    with pytest.raises(TypeError, match=r"size: expected an int or a pair of ints \(height, width\), got \(4.5, 4\)"):
        resample(x, (4.5, 4))
    with pytest.raises(TypeError, match="size: expected an int or a pair of ints"):
        resample(x, (4, 4, 4))
    with pytest.raises(ValueError, match=r"x: expected a 4-d tensor \[B, C, H, W\], got shape \[1, 1, 3, 8, 8\]"):
        resample(x[None], (4, 4))


def test_octave_upsample_add_rejects_bad_inputs(gen):
    detail = _randn(gen, 1, 3, 8, 8)
    base = _randn(gen, 1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"detail and base must have the same batch and channel sizes, got \[1, 3, 8, 8\] and \[1, 1, 16, 16\]"):
        octave_upsample_add(detail, base[:, :1])
    with pytest.raises(ValueError, match=r"out: expected shape \[1, 3, 16, 16\] \(that of base\), got \[1, 3, 8, 8\]"):
        octave_upsample_add(detail, base, out=torch.empty(1, 3, 8, 8))
    with pytest.raises(ValueError, match="out: expected a contiguous tensor"):
        octave_upsample_add(detail, base, out=torch.empty(1, 3, 16, 16).transpose(2, 3))
    with pytest.raises(TypeError, match="out: expected a float32 tensor, got torch.float16"):
        octave_upsample_add(detail, base, out=torch.empty(1, 3, 16, 16, dtype=torch.float16))
    with pytest.raises(TypeError, match="base: expected a torch.Tensor, got ndarray"):
        octave_upsample_add(detail, base.numpy())
    # out overlapping detail, and out overlapping base without being base.
    buf = torch.randn(2 * 3 * 16 * 16, generator=gen)
    out = buf[: 3 * 16 * 16].view(1, 3, 16, 16)
    with pytest.raises(ValueError, match="out and x share memory; pass separate tensors"):
        octave_upsample_add(buf[100 : 100 + 3 * 64].view(1, 3, 8, 8), base, out=out)
    with pytest.raises(ValueError, match="out and base share memory; pass separate tensors"):
        octave_upsample_add(detail, buf[7 : 7 + 3 * 256].view(1, 3, 16, 16), out=out)


def test_native_resample_checks_its_arguments(gen):
    """The binding validates on its own: direct callers get exceptions with what was received, not crashes."""
    _C = native()
    x = _randn(gen, 1, 3, 8, 8)
    out = torch.empty(1, 3, 4, 4)
    ws = torch.empty(_C.resample_workspace_bytes(8, 8, 4, 4, 0, False, False), dtype=torch.uint8)
    _C.resample(x, out, None, 0, False, ws, 0)  # fine as is
    torch.testing.assert_close(out, _resample(x, (4, 4)), atol=2e-6, rtol=1e-6)
    with pytest.raises(ValueError, match=r"x: expected a contiguous tensor \(row-major, NCHW\), got strides"):
        _C.resample(x.transpose(2, 3), out, None, 0, False, ws, 0)
    with pytest.raises(TypeError, match="x: expected float32, got float64 tensor of shape \\[1, 3, 8, 8\\] on cpu"):
        _C.resample(x.double(), out, None, 0, False, ws, 0)
    with pytest.raises(ValueError, match="resample: mode must be 0 \\(bilinear\\) or 1 \\(bicubic\\), got 7"):
        _C.resample(x, out, None, 7, False, ws, 0)
    with pytest.raises(ValueError, match="workspace: workspace of 1 bytes is too small"):
        _C.resample(x, out, None, 0, False, torch.empty(1, dtype=torch.uint8), 0)
    with pytest.raises(ValueError, match="same batch and channel sizes"):
        _C.resample(x, torch.empty(1, 2, 4, 4), None, 0, False, ws, 0)
    with pytest.raises(ValueError, match=r"base and out must have the same shape, got \[1, 3, 5, 4\] and \[1, 3, 4, 4\]"):
        _C.resample(x, out, torch.empty(1, 3, 5, 4), 0, False, ws, 0)
    with pytest.raises(ValueError, match="a CUDA stream \\(5\\) was given for a CPU tensor"):
        _C.resample(x, out, None, 0, False, ws, 5)
    with pytest.raises(TypeError, match="x: expected a tensor"):
        _C.resample(3, out, None, 0, False, ws, 0)
    with pytest.raises(ValueError, match="resample: output height must be in"):
        _C.resample_workspace_bytes(8, 8, 0, 4, 0, False, False)
