"""The native ops and autograd / torch.compile: backwards against pure-torch references on seeded random
inputs, clear errors for inputs that require grad where an op has no backward, version counters of the
tensors written in place, the torch.library registration (opcheck) and a torch.compile(fullgraph=True)
smoke test. CPU only (the ops' CUDA paths go through the same registration)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fastdream import ops
from fastdream.ops.dream_step import _dream_step_op
from fastdream.ops.resample import _octave_upsample_add_op, _resample_op
from fastdream.ops.tiling import _accumulate_tiles_op, _extract_tiles_op
from fastdream.reference.tiling import _extract_tiles

# float32 gradients of a linear map: the native forward differs from ATen's by a few ulp (test_resample's
# table), the backward is ATen's own adjoint, so the gradients agree to float rounding of the sums.
GRAD_TOL = dict(atol=1e-5, rtol=1e-5)

RESIZES = [((7, 9), (13, 5)), ((1, 1), (4, 3)), ((37, 20), (9, 31)), ((16, 16), (16, 16))]


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("src,dst", RESIZES)
def test_resample_backward_matches_interpolate(gen, mode, antialias, src, dst):
    x = torch.randn(2, 3, *src, generator=gen)
    w = torch.randn(2, 3, *dst, generator=gen)           # a random linear functional of the output
    a = x.clone().requires_grad_(True)
    (ops.resample(a, dst, mode=mode, antialias=antialias) * w).sum().backward()
    b = x.clone().requires_grad_(True)
    (F.interpolate(b, size=dst, mode=mode, align_corners=False, antialias=antialias) * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, **GRAD_TOL)


def test_resample_backward_noncontiguous_input_and_chain(gen):
    base = torch.randn(1, 3, 20, 26, generator=gen)
    w = torch.randn(1, 3, 11, 7, generator=gen)
    grads = []
    for resize in (ops.resample, lambda t, s: F.interpolate(t, size=s, mode="bilinear", align_corners=False)):
        leaf = base.clone().requires_grad_(True)
        x = (leaf * 2.0).transpose(2, 3)                 # [1, 3, 26, 20], not contiguous, not a leaf
        (resize(x, (11, 7)) * w).sum().backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[0], grads[1], **GRAD_TOL)


@pytest.mark.parametrize("H,W,tile,overlap,offset", [(37, 53, 16, 5, (3, -7)), (20, 20, 8, 0, (0, 0)),
                                                       (9, 30, (9, 12), 4, (1, 5)), (5, 5, 8, 2, (0, 0))])
def test_extract_tiles_backward_matches_reference(gen, H, W, tile, overlap, offset):
    layout = ops.tile_layout(H, W, tile, overlap, offset)
    image = torch.randn(2, 3, H, W, generator=gen)
    for start, count in ((0, len(layout)), (len(layout) // 2, len(layout) - len(layout) // 2)):
        w = torch.randn(count, 2, 3, layout.tile_h, layout.tile_w, generator=gen)
        a = image.clone().requires_grad_(True)
        (ops.extract_tiles(a, layout, start, count) * w).sum().backward()
        b = image.clone().requires_grad_(True)
        (_extract_tiles(b, layout, start, count) * w).sum().backward()
        # each pixel sums the gradients of the (at most 4) tiles over it, in another order: a few ulp
        torch.testing.assert_close(a.grad, b.grad, atol=2e-6, rtol=1e-6)


def test_ops_without_backward_refuse_inputs_that_require_grad(gen):
    img = torch.rand(1, 3, 12, 10, generator=gen)
    g = torch.randn(1, 3, 12, 10, generator=gen)
    layout = ops.tile_layout(12, 10, 8, 2)
    tiles = ops.extract_tiles(img, layout)
    small = torch.rand(1, 3, 6, 5, generator=gen)
    cases = [
        ("dream_step", "image", lambda: ops.dream_step(img.clone().requires_grad_(True), g, step_size=0.1)),
        ("dream_step", "grad", lambda: ops.dream_step(img.clone(), g.clone().requires_grad_(True), step_size=0.1)),
        ("accumulate_tiles", "tiles",
         lambda: ops.accumulate_tiles(tiles.clone().requires_grad_(True), layout, torch.zeros_like(img))),
        ("accumulate_tiles", "out",
         lambda: ops.accumulate_tiles(tiles, layout, torch.zeros_like(img).requires_grad_(True))),
        ("octave_upsample_add", "detail", lambda: ops.octave_upsample_add(small.clone().requires_grad_(True), img)),
        ("octave_upsample_add", "base", lambda: ops.octave_upsample_add(small, img.clone().requires_grad_(True))),
    ]
    for op, name, call in cases:
        with pytest.raises(ValueError, match=f"{op}: {name} requires grad, but {op} has no backward"):
            call()
    # under no_grad the same calls are fine (an update of a parameter, as optimizers do)
    with torch.no_grad():
        leaf = img.clone().requires_grad_(True)
        ops.dream_step(leaf, g, step_size=0.1)
        ops.octave_upsample_add(small, leaf, out=leaf)


def test_in_place_ops_bump_the_version_counter(gen):
    img = torch.rand(1, 3, 12, 10, generator=gen)
    g = torch.randn(1, 3, 12, 10, generator=gen)
    layout = ops.tile_layout(12, 10, 8, 2)
    tiles = ops.extract_tiles(img, layout)
    small = torch.rand(1, 3, 6, 5, generator=gen)
    for write in (lambda t: ops.dream_step(t, g, step_size=0.1),
                  lambda t: ops.accumulate_tiles(tiles, layout, t),
                  lambda t: ops.octave_upsample_add(small, t, out=t)):
        t = img.clone()
        w = torch.rand(1, 3, 12, 10, generator=gen).requires_grad_(True)
        y = (t * w).sum()                                 # autograd saves t for d/dw
        before = t._version
        write(t)
        assert t._version > before
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.backward()


def test_ops_are_registered_with_torch_library(gen):
    img = torch.rand(1, 3, 12, 10, generator=gen)
    g = torch.randn(1, 3, 12, 10, generator=gen)
    small = torch.rand(1, 3, 6, 5, generator=gen)
    tiles = ops.extract_tiles(img, ops.tile_layout(12, 10, 8, 2))
    for name in ("resample", "octave_upsample_add_into", "extract_tiles", "accumulate_tiles_", "dream_step_"):
        assert hasattr(torch.ops.fastdream, name), name
    # schema, fake (meta) implementation, autograd registration and AOT dispatch checked by torch itself
    checks = [
        (_resample_op, (img.clone().requires_grad_(True), 7, 9, 0, True)),
        (_resample_op, (img, 17, 4, 1, False)),
        (_octave_upsample_add_op, (small, img, torch.empty_like(img), 0)),
        (_octave_upsample_add_op, (small, None, img.clone(), 1)),
        (_extract_tiles_op, (img.clone().requires_grad_(True), 8, 8, 2, 1, 3, 0, 4)),
        (_accumulate_tiles_op, (tiles, torch.zeros_like(img), 8, 8, 2, 0, 0, 0)),
        (_dream_step_op, (img.clone(), g, 0.1, [1.0], 0, "mean_abs", [0.0], [1.0], 3, 2, 1e-8)),
    ]
    for op, args in checks:
        torch.library.opcheck(op, args)


def test_torch_compile_fullgraph_traces_through_the_ops(gen):
    """One graph, no break at the DLPack boundary (backend aot_eager: fake tensors and functionalization
    run, no C++ compiler), and the compiled function gives the eager numbers."""
    torch._dynamo.reset()

    def octave_step(img, grad, detail):
        img = ops.octave_upsample_add(detail, img)
        small = ops.resample(img, (9, 7), mode="bilinear", antialias=True)
        norms = ops.dream_step(img, grad, step_size=0.05, sigma=1.0, shift=(1, -2))
        return img, small, norms

    img = torch.rand(1, 3, 18, 14, generator=gen)
    grad = torch.randn(1, 3, 18, 14, generator=gen)
    detail = 0.1 * torch.randn(1, 3, 9, 7, generator=gen)
    compiled = torch.compile(octave_step, fullgraph=True, backend="aot_eager")
    got = compiled(img.clone(), grad, detail)
    want = octave_step(img.clone(), grad, detail)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
