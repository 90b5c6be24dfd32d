"""Fuzzing the native boundary: every fastdream.ops function called with random shapes, dtypes,
strides, devices, non-tensors and extreme parameters. Every call either works or raises a Python
TypeError/ValueError; none may crash the process. Together these tests make > 10,000 calls, and the
_C functions are also called directly with capsules of the wrong kind."""

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastdream import ops
from fastdream._native import native

FUZZ = settings(max_examples=2600, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ACCEPTED = (TypeError, ValueError)

floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.sampled_from([0.0, -1.0, 1e30, -1e30, float("nan"), float("inf"), 1e-30]))
dtypes = st.sampled_from([torch.float32, torch.float32, torch.float32, torch.float16, torch.bfloat16,
                          torch.float64, torch.int32, torch.uint8, torch.bool])
devices = st.sampled_from(["cpu", "cpu", "cpu", "meta"])


@st.composite
def tensors(draw, max_side=9):
    """Mostly-plausible image tensors, sometimes wrong in one way or another."""
    ndim = draw(st.sampled_from([4, 4, 4, 4, 3, 5, 1, 0]))
    shape = [draw(st.integers(0 if draw(st.booleans()) and ndim else 1, max_side)) for _ in range(ndim)]
    if ndim == 4 and draw(st.booleans()):
        shape[1] = draw(st.sampled_from([1, 3, 4, 5]))
    dtype = draw(dtypes)
    device = draw(devices)
    if device == "meta":
        return torch.empty(shape, dtype=dtype, device="meta")
    t = (torch.rand(shape) * 4 - 2).to(dtype) if dtype != torch.bool else torch.rand(shape) > 0.5
    layout = draw(st.sampled_from(["contiguous", "contiguous", "transposed", "sliced", "channels_last", "expanded"]))
    if layout == "transposed" and t.dim() >= 2:
        t = t.transpose(-1, -2)
    elif layout == "sliced" and t.dim() >= 1 and t.shape[-1] > 1:
        t = t[..., ::2]
    elif layout == "channels_last" and t.dim() == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    elif layout == "expanded" and t.dim() == 4 and t.shape[0] == 1:
        t = t.expand(2, *t.shape[1:])
    return t


junk = st.sampled_from([None, 3, 2.5, "image", [1, 2, 3], np.zeros((1, 3, 4, 4), np.float32), object()])


def _call(fn, *a, **k):
    try:
        fn(*a, **k)
    except ACCEPTED:
        pass


@FUZZ
@given(image=st.one_of(tensors(), junk), grad=st.one_of(tensors(), junk), step=floats,
       sigma=st.one_of(st.none(), floats, st.lists(floats, max_size=6)),
       ks=st.one_of(st.none(), st.integers(-3, 40)),
       norm=st.sampled_from(["mean_abs", "std", "none", "laplacian", "bogus", 3]),
       lower=st.one_of(floats, st.lists(floats, max_size=5)), upper=st.one_of(floats, st.lists(floats, max_size=5)),
       shift=st.one_of(st.tuples(st.integers(-2**70, 2**70), st.integers(-2**70, 2**70)), junk))
def test_fuzz_dream_step(image, grad, step, sigma, ks, norm, lower, upper, shift):
    _call(ops.dream_step, image, grad, step_size=step, sigma=sigma, kernel_size=ks, norm=norm, lower=lower,
          upper=upper, shift=shift)


@FUZZ
@given(x=st.one_of(tensors(), junk), h=st.integers(-2, 40), w=st.integers(-2, 40),
       mode=st.sampled_from(["bilinear", "bicubic", "nearest", None]), aa=st.booleans())
def test_fuzz_resample(x, h, w, mode, aa):
    _call(ops.resample, x, (h, w), mode=mode, antialias=aa)


@FUZZ
@given(detail=st.one_of(tensors(), junk), base=st.one_of(tensors(), junk), inplace=st.booleans(),
       mode=st.sampled_from(["bilinear", "bicubic", "area"]))
def test_fuzz_octave_upsample_add(detail, base, inplace, mode):
    _call(ops.octave_upsample_add, detail, base, mode=mode, out=base if inplace else None)


@FUZZ
@given(h=st.integers(-3, 300), w=st.integers(-3, 300), tile=st.one_of(st.integers(-3, 400), st.tuples(st.integers(-1, 99), st.integers(-1, 99)), junk),
       overlap=st.one_of(st.integers(-3, 400), junk),
       offset=st.one_of(st.tuples(st.integers(-2**80, 2**80), st.integers(-2**80, 2**80)), junk),
       image=st.one_of(tensors(max_side=40), junk), start=st.integers(-3, 50), count=st.one_of(st.none(), st.integers(-3, 50)))
def test_fuzz_tiling(h, w, tile, overlap, offset, image, start, count):
    try:
        layout = ops.tile_layout(h, w, tile, overlap, offset=offset)
    except ACCEPTED:
        return
    _call(ops.extract_tiles, image, layout, start=start, count=count)
    n = len(layout)
    tiles = torch.rand(max(n - max(start, 0), 0), 1, 3, layout.tile_h, layout.tile_w)
    out = torch.zeros(1, 3, h, w) if isinstance(image, torch.Tensor) and image.dim() != 4 else image
    _call(ops.accumulate_tiles, tiles, layout, out, start=start)


def test_native_functions_reject_wrong_capsules():
    """The _C functions themselves, called with nonsense: used capsules, wrong argument types."""
    C = native()
    x = torch.rand(1, 3, 8, 8)
    cap = torch.utils.dlpack.to_dlpack(x)
    torch.from_dlpack(cap)  # consumes the capsule
    names = [n for n in dir(C) if not n.startswith("_") and callable(getattr(C, n))]
    assert {"dream_step", "build_info"} <= set(names)
    for name in names:
        fn = getattr(C, name)
        for args in [(), (cap,), (None,) * 3, ("x",) * 14, (x,) * 14, (cap,) * 14]:
            try:
                fn(*args)
            except ACCEPTED:
                pass
