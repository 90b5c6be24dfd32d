"""fastdream.ops.dream_step against the pure-torch reference fastdream.reference.dream_step._dream_step."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import DEVICES, requires_cuda
from fastdream._native import native
from fastdream.ops.dream_step import dream_step, dream_step_grad_dtypes, dream_step_workspace_bytes
from fastdream.reference.dream_step import _dream_step, _reflect_pad

# One tolerance table per gradient dtype. The reference always runs on the CPU in float32 from the same
# (exactly up-cast) gradient values, so the gap is only the op's different rounding order:
#   * the blur: separable passes (vertical then horizontal, taps grouped by four) against the reference's
#     2-D depthwise conv2d, and the cascade averaged through pre-divided taps instead of stack().mean();
#     at most 31x31 taps in the grid below: ~2e-7 relative on g;
#   * the normalizer: double sums in the op, float32 reductions in torch: ~1e-7 relative;
#   * the update: step / (norm + eps) * g in the op, step * (g / (norm + eps)) in the reference.
# The update step * g / norm reaches ~0.5 in these tests (|g / norm| <= ~5, step 0.1), so its relative
# error of ~1e-6 is ~5e-7 absolute, plus half an ulp of the image (values up to ~2.6: 1.2e-7).
TOLERANCES = {
    # image_atol: see above, doubled for margin. norms_rtol: double vs float32 reductions over <= 1e5
    # values (torch's pairwise float32 sum: ~1e-6 relative worst case on these sizes).
    torch.float32: dict(image_atol=2e-6, norms_rtol=2e-6),
    # float16 -> float32 is exact and the reference up-casts the very same values: no extra error; CUDA's
    # FMA contraction (--use_fast_math -> -fmad) changes roundings of the blur sums only (~1 ulp per tap).
    torch.float16: dict(image_atol=2e-6, norms_rtol=2e-6),
    # bfloat16 -> float32 is exact as well: same reasoning as float16.
    torch.bfloat16: dict(image_atol=2e-6, norms_rtol=2e-6),
}
# The trajectory test compounds 20 steps: each adds at most the one-step error (the gradient depends on
# the image through a 3-Lipschitz sin, which does not amplify 1e-6 gaps measurably), so 20x one step.
TRAJECTORY_STEPS = 20
TRAJECTORY_ATOL = TRAJECTORY_STEPS * TOLERANCES[torch.float32]["image_atol"]


def _inputs(shape, gen, device="cpu", grad_dtype=torch.float32):
    image = (torch.rand(shape, generator=gen) * 1.2 - 0.1).to(device)  # some values start outside [0, 1]
    grad = torch.randn(shape, generator=gen).to(device=device, dtype=grad_dtype)
    return image, grad


def _bounds(C):
    if C == 3:
        return [0.0, 0.1, -0.5], [1.0, 0.8, 2.6]  # per-channel (ImageNet-normalized style) bounds
    return 0.0, 1.0


def _check(image, grad, tol=None, **kw):
    """Run the op on a copy of `image` and the reference on the CPU; compare images and norms.

    Rounding errors of the sums are relative to the gradient's magnitude, not to the normalizer: where a
    large blur leaves an almost constant gradient, std(g) << max|g| and the normalizer's relative error
    grows by the condition number kappa_b = max|grad_b| / norm_b. Both tolerances scale with it:
    norms: rtol * max|grad_b|; image: atol + step * rtol * kappa_b^2 (the error of g / norm, derived from
    d(g / n) = dg / n - g dn / n^2 with dg, dn <= rtol * max|grad_b|). kappa_b ~ 4 for most inputs here.
    """
    tol = tol or TOLERANCES[grad.dtype]
    ref_image, ref_norms = _dream_step(image.cpu(), grad.cpu().float(), **kw)
    out = image.clone()
    norms = dream_step(out, grad, **kw)
    assert norms.shape == (image.shape[0],) and norms.dtype == torch.float32 and norms.device == image.device
    gmax = grad.cpu().float().abs().amax((1, 2, 3))
    kappa = gmax / ref_norms
    norm_err = (norms.cpu() - ref_norms).abs()
    assert (norm_err <= tol["norms_rtol"] * gmax).all(), f"norms {norms} vs reference {ref_norms}"
    image_tol = tol["image_atol"] + abs(kw["step_size"]) * tol["norms_rtol"] * kappa**2
    image_err = (out.cpu() - ref_image).abs().amax((1, 2, 3))
    assert (image_err <= image_tol).all(), f"image error {image_err} > {image_tol} (kappa {kappa})"
    return out, norms


SHAPES = [(1, 1, 1, 1), (1, 3, 1, 1), (1, 1, 2, 3), (2, 3, 5, 7), (2, 3, 37, 53), (1, 3, 64, 48), (3, 1, 17, 1)]
BLURS = [
    dict(sigma=None),
    dict(sigma=1.0),
    dict(sigma=(0.5, 1.0, 2.0), kernel_size=9),  # the cascade
    dict(sigma=4.0),  # radius 12: larger than most images here (repeated reflection)
    dict(sigma=(0.0, 2.5)),  # a zero sigma in a cascade is the identity
    dict(sigma=1.5, kernel_size=3),
]
SHIFTS = [(0, 0), (-7, 100), (123456789, -98765)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("blur", BLURS, ids=lambda b: f"s{b['sigma']}-k{b.get('kernel_size')}")
@pytest.mark.parametrize("norm", ["mean_abs", "std", "none"])
def test_dream_step_matches_reference(device, shape, blur, norm, gen):
    image, grad = _inputs(shape, gen, device)
    lower, upper = _bounds(shape[1])
    for shift in SHIFTS:
        _check(image, grad, step_size=0.1, norm=norm, lower=lower, upper=upper, shift=shift, **blur)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("C", [1, 2, 3, 4])
def test_dream_step_channels_and_bounds(device, C, gen):
    image, grad = _inputs((2, C, 19, 23), gen, device)
    lower = [-0.2 + 0.1 * c for c in range(C)]
    upper = [0.6 + 0.1 * c for c in range(C)]
    out, _ = _check(image, grad, step_size=0.3, sigma=1.0, lower=lower, upper=upper, shift=(3, -4))
    for c in range(C):
        assert out[:, c].min() >= lower[c] and out[:, c].max() <= upper[c]
        assert (out[:, c] == lower[c]).any() and (out[:, c] == upper[c]).any()  # the bounds were active


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "kw",
    [
        dict(sigma=(0.5, 1.0, 2.0), kernel_size=9, norm="std"),
        dict(sigma=None, norm="mean_abs"),
        dict(sigma=1.0, norm="none"),
    ],
    ids=["cascade_std", "plain_mean_abs", "blur_none"],
)
def test_dream_step_trajectory(device, kw, gen):
    """20 steps from the same state, each with a jitter and a gradient that depends on the image."""
    image, noise = _inputs((2, 3, 31, 45), gen, device)
    fd = image.clone()
    ref = image.cpu().clone()
    lower, upper = _bounds(3)
    for step in range(TRAJECTORY_STEPS):
        shift = (int(torch.randint(-40, 40, (1,), generator=gen)), int(torch.randint(-60, 60, (1,), generator=gen)))
        # gradient w.r.t. the jittered image, computed from each side's own state
        g_fd = torch.sin(3 * torch.roll(fd, shift, (2, 3))) + noise
        g_ref = torch.sin(3 * torch.roll(ref, shift, (2, 3))) + noise.cpu()
        dream_step(fd, g_fd, step_size=0.02, lower=lower, upper=upper, shift=shift, **kw)
        ref, _ = _dream_step(ref, g_ref, step_size=0.02, lower=lower, upper=upper, shift=shift, **kw)
        torch.testing.assert_close(fd.cpu(), ref, atol=TRAJECTORY_ATOL, rtol=0, msg=lambda m: f"step {step}: {m}")
    assert not torch.equal(fd.cpu(), image.cpu())  # it did move


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("norm", ["mean_abs", "std", "none"])
@pytest.mark.parametrize("blur", [dict(sigma=None), dict(sigma=(0.5, 2.0))], ids=["noblur", "blur"])
def test_dream_step_nonfinite_gradient_skips_image(device, norm, blur, gen):
    image, grad = _inputs((4, 3, 9, 11), gen, device)
    grad[1, 2, 4, 5] = float("nan")
    grad[2, 0, 0, 0] = float("inf")
    grad[3, 1, 8, 10] = -float("inf")
    out = image.clone()
    norms = dream_step(out, grad, step_size=0.1, norm=norm, shift=(5, -3), **blur)
    assert torch.isfinite(norms[0]) and torch.isnan(norms[1:]).all()
    assert torch.equal(out[1:], image[1:])  # untouched, bit for bit
    ref_image, ref_norms = _dream_step(image[:1].cpu(), grad[:1].cpu(), step_size=0.1, norm=norm, shift=(5, -3), **blur)
    torch.testing.assert_close(out[:1].cpu(), ref_image, atol=TOLERANCES[torch.float32]["image_atol"], rtol=0)
    # the reference agrees on the whole batch, NaNs included
    ref_all, ref_norms_all = _dream_step(image.cpu(), grad.cpu(), step_size=0.1, norm=norm, shift=(5, -3), **blur)
    assert torch.equal(ref_all[1:], image[1:].cpu()) and torch.isnan(ref_norms_all[1:]).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "kw", [dict(sigma=(0.5, 1.0, 2.0), kernel_size=9, norm="std"), dict(sigma=None, norm="mean_abs")], ids=["cascade", "plain"]
)
def test_dream_step_deterministic(device, kw, gen):
    image, grad = _inputs((2, 3, 150, 211), gen, device)
    a, b = image.clone(), image.clone()
    na = dream_step(a, grad, step_size=0.05, shift=(7, 9), **kw)
    nb = dream_step(b, grad, step_size=0.05, shift=(7, 9), **kw)
    assert torch.equal(a, b) and torch.equal(na, nb)


def test_dream_step_norms_values(gen):
    image, grad = _inputs((2, 3, 8, 9), gen)
    n_abs = dream_step(image.clone(), grad, step_size=0.1, norm="mean_abs")
    n_std = dream_step(image.clone(), grad, step_size=0.1, norm="std")
    n_none = dream_step(image.clone(), grad, step_size=0.1, norm="none")
    torch.testing.assert_close(n_abs, grad.abs().mean((1, 2, 3)), atol=0, rtol=2e-6)
    torch.testing.assert_close(n_std, grad.std((1, 2, 3), correction=0), atol=0, rtol=2e-6)
    assert torch.equal(n_none, torch.ones(2))


def test_dream_step_zero_step_is_clamp_only(gen):
    image, grad = _inputs((1, 3, 6, 6), gen)
    out = image.clone()
    dream_step(out, grad, step_size=0.0, sigma=1.0)
    assert torch.equal(out, image.clamp(0, 1))


def test_dream_step_gradient_not_modified(gen):
    image, grad = _inputs((1, 3, 12, 10), gen)
    g0 = grad.clone()
    dream_step(image, grad, step_size=0.1, sigma=(1.0, 2.0), shift=(3, 4))
    assert torch.equal(grad, g0)


def test_dream_step_workspace_bytes():
    img = torch.empty(2, 3, 64, 80)
    plain = dream_step_workspace_bytes(img)
    blurred = dream_step_workspace_bytes(img, sigma=(1.0, 2.0))
    assert 0 < plain < blurred
    assert blurred >= 2 * 3 * 64 * 80 * 4  # the smoothed gradient


def test_dream_step_workspace_too_small_rejected(gen):
    image, grad = _inputs((1, 3, 8, 8), gen)
    norms = torch.empty(1)
    ws = torch.empty(16, dtype=torch.uint8)
    cap = torch.utils.dlpack.to_dlpack
    with pytest.raises(ValueError, match=r"workspace of 16 bytes is too small"):
        native().dream_step(cap(image), cap(grad), cap(norms), cap(ws), 0, 0.1, [1.0], 0, "mean_abs", [0.0], [1.0],
                            0, 0, 1e-8)


# ---------------------------------------------------------------------------------------- the boundary

def _ok():
    g = torch.Generator().manual_seed(5)
    return torch.rand(1, 3, 8, 8, generator=g), torch.randn(1, 3, 8, 8, generator=g)


@pytest.mark.parametrize(
    "make, kw, exc, match",
    [
        (lambda i, g: ([[1.0]], g), {}, TypeError, r"image: expected a torch.Tensor, got list"),
        (lambda i, g: (i, g.numpy()), {}, TypeError, r"grad: expected a torch.Tensor, got ndarray"),
        (lambda i, g: (i.double(), g), {}, TypeError, r"image: expected float32, got float64 tensor of shape \[1, 3, 8, 8\]"),
        (lambda i, g: (i, g.half()), {}, TypeError, r"grad: expected float32, got float16 tensor"),
        (lambda i, g: (i, g.int()), {}, TypeError, r"grad: expected float32, got int32"),
        (lambda i, g: (i[0], g[0]), {}, ValueError, r"image: expected a 4-d tensor \[B, C, H, W\], got shape \[3, 8, 8\]"),
        (lambda i, g: (i, g[0]), {}, ValueError, r"grad: expected a 4-d tensor \[B, C, H, W\], got float32 tensor of shape \[3, 8, 8\]"),
        (lambda i, g: (i, g[:, :, :7]), {}, ValueError, r"must have the same shape, got \[1, 3, 8, 8\] and \[1, 3, 7, 8\]"),
        (lambda i, g: (i.transpose(2, 3), g), {}, ValueError, r"image: expected a contiguous tensor .*strides \[192, 64, 1, 8\]"),
        (lambda i, g: (i, g[..., ::2].repeat_interleave(2, -1).transpose(2, 3)), {}, ValueError, r"grad: expected a contiguous"),
        (lambda i, g: (torch.rand(1, 5, 4, 4), torch.rand(1, 5, 4, 4)), {}, ValueError, r"expected 1 to 4 channels, got float32 tensor of shape \[1, 5, 4, 4\]"),
        (lambda i, g: (i, i), {}, ValueError, r"image and grad share memory"),
        (lambda i, g: (i, g), dict(sigma=-1.0), ValueError, r"sigma values must be finite and >= 0, got \[-1\]"),
        (lambda i, g: (i, g), dict(sigma=(1.0, float("nan"))), ValueError, r"sigma values must be finite and >= 0, got \[1, nan\]"),
        (lambda i, g: (i, g), dict(sigma=(1, 2, 3, 4, 5)), ValueError, r"sigma takes at most 4 values .*got 5"),
        (lambda i, g: (i, g), dict(sigma=()), ValueError, r"sigma: .*got an empty sequence"),
        (lambda i, g: (i, g), dict(sigma="big"), TypeError, r"sigma: expected a float or a sequence of floats, got 'big'"),
        (lambda i, g: (i, g), dict(sigma=1.0, kernel_size=4), ValueError, r"kernel_size must be an odd integer >= 1 .*got 4"),
        (lambda i, g: (i, g), dict(sigma=1.0, kernel_size=0), ValueError, r"kernel_size must be an odd integer >= 1 .*got 0"),
        (lambda i, g: (i, g), dict(sigma=1.0, kernel_size=2.5), TypeError, r"kernel_size: expected an odd int >= 1 or None, got 2.5"),
        (lambda i, g: (i, g), dict(sigma=1000.0), ValueError, r"sigma 1000 needs a blur radius of 3000"),
        (lambda i, g: (i, g), dict(norm="l2"), ValueError, r"unknown norm 'l2'; expected 'mean_abs', 'std' or 'none'"),
        (lambda i, g: (i, g), dict(norm="laplacian"), ValueError, r"norm='laplacian' is not supported"),
        (lambda i, g: (i, g), dict(norm=None), TypeError, r"norm: expected a str"),
        (lambda i, g: (i, g), dict(lower=(0.0, 0.0)), ValueError, r"lower must be a float or a sequence of C = 3 floats, got 2 values: \[0, 0\]"),
        (lambda i, g: (i, g), dict(upper=float("nan")), ValueError, r"upper must not be NaN, got \[nan\]"),
        (lambda i, g: (i, g), dict(step_size=float("inf")), ValueError, r"step_size must be finite, got inf"),
        (lambda i, g: (i, g), dict(eps=float("nan")), ValueError, r"eps must be finite and >= 0, got nan"),
        (lambda i, g: (i, g), dict(shift=(1.5, 0)), TypeError, r"shift: expected two ints \(dy, dx\), got \(1.5, 0\)"),
        (lambda i, g: (i, g), dict(shift=3), TypeError, r"shift: expected two ints"),
    ],
)
def test_dream_step_rejects_bad_inputs(make, kw, exc, match):
    image, grad = make(*_ok())
    args = dict(step_size=0.1)
    args.update(kw)
    before = image.clone() if isinstance(image, torch.Tensor) else None
    with pytest.raises(exc, match=match):
        dream_step(image, grad, **args)
    if before is not None:
        assert torch.equal(image, before)  # nothing written on a rejected call


def test_dream_step_native_rejects_non_tensor():
    with pytest.raises(TypeError, match=r"image: expected a tensor \(a DLPack capsule or an object with __dlpack__\), got int"):
        native().dream_step(3, 4, 5, 6, 0, 0.1, [], 0, "std", [0.0], [1.0], 0, 0, 1e-8)


def test_dream_step_empty_batch():
    norms = dream_step(torch.empty(0, 3, 4, 4), torch.empty(0, 3, 4, 4), step_size=0.1, sigma=1.0)
    assert norms.shape == (0,)


# ---------------------------------------------------------------------------------- the reference itself

@pytest.mark.parametrize("n", [1, 2, 3, 7])
@pytest.mark.parametrize("r", [0, 1, 2, 6, 15])
def test_reference_reflect_pad_repeats_reflection(n, r, gen):
    """The reference's fallback equals F.pad(reflect) where F.pad works, and repeated reflection beyond."""
    x = torch.randn(1, 1, n, n, generator=gen)
    out = _reflect_pad(x, r)
    if r < n:
        assert torch.equal(out, F.pad(x, (r, r, r, r), mode="reflect"))
    period = 2 * (n - 1)
    for i in range(-r, n + r):  # one axis is enough: the padding is separable
        m = 0 if n == 1 else i % period
        j = m if m < n else period - m
        assert torch.equal(out[0, 0, i + r, r : r + n], x[0, 0, j])


# ------------------------------------------------------------------------------------ CUDA specific

@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("grad_dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("blur", BLURS[:4], ids=lambda b: f"s{b['sigma']}-k{b.get('kernel_size')}")
@pytest.mark.parametrize("norm", ["mean_abs", "std", "none"])
def test_dream_step_cuda_grad_dtypes(grad_dtype, blur, norm, gen):
    for shape in [(2, 3, 37, 53), (1, 3, 64, 48), (1, 1, 1, 1)]:  # 48 % 4 == 0: the float4 path
        image, grad = _inputs(shape, gen, "cuda", grad_dtype)
        lower, upper = _bounds(shape[1])
        _check(image, grad, step_size=0.1, norm=norm, lower=lower, upper=upper, shift=(-9, 77), **blur)


@requires_cuda
@pytest.mark.cuda
def test_dream_step_cuda_matches_cpu_large(gen):
    """A 1080p cascade on CUDA and on the CPU twin (blur_h grid-strides over many row segments)."""
    image, grad = _inputs((1, 3, 1080, 1920), gen)
    kw = dict(step_size=0.02, sigma=(0.5, 1.0, 2.0), kernel_size=9, norm="std", shift=(11, -13))
    cpu = image.clone()
    n_cpu = dream_step(cpu, grad, **kw)
    gpu = image.cuda()
    n_gpu = dream_step(gpu, grad.cuda(), **kw)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=TOLERANCES[torch.float32]["image_atol"], rtol=0)
    torch.testing.assert_close(n_gpu.cpu(), n_cpu, atol=0, rtol=TOLERANCES[torch.float32]["norms_rtol"])


@requires_cuda
@pytest.mark.cuda
def test_dream_step_cuda_rejects_mixed_devices(gen):
    image, grad = _inputs((1, 3, 8, 8), gen)
    with pytest.raises(ValueError, match=r"image and grad must be on the same device, got cpu:0 and cuda:0"):
        dream_step(image, grad.cuda(), step_size=0.1)


def test_dream_step_tolerance_table_covers_cuda_dtypes(gen):
    """The table has one entry for every grad dtype the op takes on some device (the binding's own lists,
    CUDA's included on a build without CUDA), and no other; the CPU runs its dtypes within their entry and
    refuses every other one by name."""
    cpu, cuda = set(dream_step_grad_dtypes("cpu")), set(dream_step_grad_dtypes("cuda"))
    assert cpu <= cuda and set(TOLERANCES) == cpu | cuda, (sorted(map(str, cpu | cuda)), sorted(map(str, TOLERANCES)))
    assert all(math.isfinite(v) and 0 < v < 1e-3 for t in TOLERANCES.values() for v in t.values())
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        image, grad = _inputs((2, 3, 11, 13), gen, grad_dtype=dtype)
        if dtype in cpu:
            _check(image, grad, step_size=0.05, sigma=1.0, shift=(2, -3))
        else:
            with pytest.raises(TypeError, match=f"grad: expected float32, got {str(dtype).split('.')[-1]}"):
                dream_step(image.clone(), grad, step_size=0.05)


_THREADS_SCRIPT = """
import hashlib, torch
from fastdream.ops.dream_step import dream_step
g = torch.Generator().manual_seed(3)
image = torch.rand(2, 3, 97, 131, generator=g); grad = torch.randn(2, 3, 97, 131, generator=g)
norms = dream_step(image, grad, step_size=0.05, sigma=(0.5, 1.0, 2.0), kernel_size=9, norm="std", shift=(5, 8))
print(hashlib.sha256(image.numpy().tobytes() + norms.numpy().tobytes()).hexdigest())
"""


def test_dream_step_same_bytes_for_any_thread_count():
    """Work items and the reduction order depend on the sizes only, not on OMP_NUM_THREADS."""
    import os
    import subprocess
    import sys


    digests = set()
    for threads in ("1", "2", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], env=env, capture_output=True, text=True,
                             check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1
