"""Loss terms of the distillation: backbone features, Gram matrices and the teacher's objective
(:class:`FeatureLoss`), the adversarial term (:class:`PatchDiscriminator`, hinge losses), and the pixel
grid's (:func:`grid_excess`).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fastdream.distill.config import FEATURE_NORMS
from fastdream.metrics import gaussian_blur, gram_matrix, unit_feature_distance


class FeatureLoss(torch.nn.Module):
    """Backbone-feature terms of the loss, from one forward pass of the output and one of the target.

    ``feature``: ``sum_l mean((f_l(out) - f_l(target))^2) / mean(f_l(target)^2)`` over ``layers``
    (``feature_norm="energy"``), or with ``"unit"`` the LPIPS-style distance of the two
    (:func:`fastdream.metrics.unit_feature_distance`: every position's feature vector unit-normalized, so
    weak positions count as much as strong ones);
    ``style``: the same for Gram matrices over ``style_layers``;
    ``objective``: the shortfall of the teacher's objective ``obj`` (when given) on the output from
    ``target`` times its value on the teacher's dream, per patch (``patch_values``, ``_shortfall``): the
    output should climb as far as the teacher did, everywhere, and no further. Both pictures are
    mirrored outwards by ``margin`` pixels first (``pad``).
    """

    def __init__(self, backbone, layers, objective=None, margin: int = 0, style_layers=(), target: float = 1.0,
                 patch: int = 0, channels: bool = False, precision: str = "fp32", feature_norm: str = "energy"):
        super().__init__()
        if feature_norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm must be one of {FEATURE_NORMS}, got {feature_norm!r}")
        self.feature_norm = feature_norm
        self.precision = precision
        self.channels = bool(channels)
        self.target = float(target)
        self.patch = int(patch)
        self.backbone = backbone
        self.margin = int(margin)
        self.layers = [backbone.resolve_tap(l) for l in layers]
        self.style_layers = [backbone.resolve_tap(l) for l in style_layers]
        self.objective = objective
        self.taps = list(dict.fromkeys([*self.layers, *self.style_layers,
                                        *(sorted(objective.taps()) if objective is not None else [])]))

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> dict:  # [B, 3, h, w] each
        from fastdream.engine.objectives import Context

        out, target = self.pad(out), self.pad(target)
        with torch.no_grad():
            ft = self.backbone.forward_taps(target, self.taps, self.precision)
        fo = self.backbone.forward_taps(out, self.taps, self.precision)
        terms = {}
        if self.layers:
            total = out.new_zeros(())
            for l in self.layers:
                if self.feature_norm == "unit":
                    total = total + unit_feature_distance(fo[l].float(), ft[l].float())
                else:
                    total = total + F.mse_loss(fo[l], ft[l]) / ft[l].pow(2).mean().clamp_min(1e-8)
            terms["feature"] = total
        if self.style_layers:
            total = out.new_zeros(())
            for l in self.style_layers:
                go, gt = gram_matrix(fo[l]), gram_matrix(ft[l])
                total = total + F.mse_loss(go, gt) / gt.pow(2).mean().clamp_min(1e-8)
            terms["style"] = total
        if self.objective is not None:
            ctx = Context(tuple(out.shape[-2:]))
            vo = self.patch_values(fo, ctx)  # [B, patches]
            with torch.no_grad():
                vt = self.patch_values(ft, ctx)
            terms["objective"] = _shortfall(vo, vt, self.target)
        return terms


    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` mirrored outwards by ``margin`` pixels: the backbone's zero padding sits ``margin`` pixels
        away from the crop, and what the generator puts along its borders is seen as ordinary content
        (frames that feed on the backbone's padding earn nothing), so the borders are trained like the
        rest of the picture."""
        m = min(self.margin, x.shape[-1] - 1, x.shape[-2] - 1)
        return F.pad(x, (m, m, m, m), mode="reflect") if m > 0 else x

    def climb(self, out: torch.Tensor, inp: torch.Tensor, gain: float) -> torch.Tensor:
        """The objective term for crops without a teacher dream: the shortfall of ``obj(out)`` from
        ``target * gain * obj(inp)`` per patch, ``gain`` being the teacher's typical ``obj(dream) / obj(input)``."""
        from fastdream.engine.objectives import Context

        out, inp = self.pad(out), self.pad(inp)
        ctx = Context(tuple(out.shape[-2:]))
        taps = sorted(self.objective.taps())
        with torch.no_grad():
            vi = self.patch_values(self.backbone.forward_taps(inp, taps, self.precision), ctx)
        vo = self.patch_values(self.backbone.forward_taps(out, taps, self.precision), ctx)
        return _shortfall(vo, vi * gain, self.target)

    def patch_values(self, acts: dict, ctx) -> torch.Tensor:
        """The objective per patch of about ``self.patch`` pixels, ``[B, patches]`` (``[B, 1]`` with patch 0).

        Spatial terms are averaged over each patch; other terms (class logits...) count in every patch.
        Asking every patch to reach the teacher's level (rather than the crop on average) rules out the
        cheap way up: a few huge, identical blobs that lift the mean while the rest stays as it was.
        """
        from fastdream.engine.objectives import Layer, Spatial, Sum, _layer_value

        if self.patch <= 0 and not self.channels:
            return self.objective(acts, ctx)[:, None]
        h, w = ctx.full_size
        grid = (1, 1) if self.patch <= 0 else (max(1, round(h / self.patch)), max(1, round(w / self.patch)))
        terms = self.objective.terms if isinstance(self.objective, Sum) else [(1.0, self.objective)]
        total = None
        for wt, o in terms:
            if self.channels and isinstance(o, Layer) and acts[o.layer].dim() == 4:
                # one value per channel and patch: [B, C * gh * gw]
                v = _layer_value(acts[o.layer].unsqueeze(1), o.kind) / acts[o.layer].shape[1]
                v = F.adaptive_avg_pool2d(v, grid).flatten(1)
            elif isinstance(o, Spatial):
                v = o.value_map(acts[o.layer], ctx)
                v = F.adaptive_avg_pool2d(v[:, None], grid).flatten(1)  # [B, gh * gw]
            else:
                v = o(acts, ctx)[:, None]
            total = wt * v if total is None else total + wt * v
        return total

    @torch.no_grad()
    def teacher_gain(self, pairs, crop: int) -> float:
        """The median over the training pairs of ``obj(dream) / obj(input)`` on a centred ``crop`` window
        (padded like the training crops)."""
        from fastdream.engine.objectives import Context

        taps, ratios = sorted(self.objective.taps()), []
        for x, y in zip(pairs.train_x, pairs.train_y):
            x, y = x[None].float().div_(255), y[None].float().div_(255)
            h, w = x.shape[-2:]
            oy, ox = (h - crop) // 2, (w - crop) // 2
            x, y = self.pad(x[..., oy:oy + crop, ox:ox + crop]), self.pad(y[..., oy:oy + crop, ox:ox + crop])
            ctx = Context(tuple(x.shape[-2:]))
            vx = self.objective(self.backbone.forward_taps(x, taps), ctx)
            vy = self.objective(self.backbone.forward_taps(y, taps), ctx)
            ratios.extend((vy / vx.abs().clamp_min(1e-8)).tolist())
        return float(np.median(ratios))


def _shortfall(vo: torch.Tensor, vt: torch.Tensor, target: float) -> torch.Tensor:
    """The shortfall of ``vo`` from ``target * vt``, ``[B, K]`` each (K patches, or channels x patches):
    ``sum_k relu(target * vt - vo) / sum_k target * vt`` per picture, averaged over the batch. 0 when
    every part reaches the target; an excess in one part does not make up for another; parts where the
    teacher has little (a black sky) weigh little."""
    want = target * vt.abs()
    return (F.relu(want - vo).sum(1) / want.sum(1).clamp_min(1e-8)).mean()




class PatchDiscriminator(nn.Module):
    """A conditional patch discriminator: tells the teacher's dreams from the filter's outputs, patch by
    patch, given the input photo. ``forward(x, y) -> [scores]``: one ``[B, 1, h/16, w/16]`` map of
    realness scores per scale, the finest first.

    Four stride-2 4x4 convolutions and a 3x3 head, LeakyReLU(0.2), spectral normalization on every layer
    (a Lipschitz bound: stable hinge training without gradient penalties): each score sees 78 pixels,
    the size of the dream's eyes and swirls at 640 pixels. Conditioning on the photo makes it judge
    whether the dream belongs to that photo, not only whether it looks like a dream: a fixed pattern
    stamped over every picture is easy to tell apart.

    ``scales > 1`` adds discriminators of the same layout, with their own weights, that see the pair
    shrunk by 2, 4, ... (a 3x3 average with stride 2 per level, as in pix2pixHD's multi-scale
    discriminator): their scores see 156, 312, ... pixels, the teacher's large eyeballs and arcs that
    the finest one cannot judge whole. Each coarser one costs a quarter of the one before.

    ``highpass = sigma > 0`` shows it only the fine band of the dream: ``y`` minus its Gaussian blur of
    that sigma (reflected at the borders), times :attr:`HIGHPASS_GAIN`, beside the whole photo. It then
    cannot tell the two apart by the large structures (which the generator may be unable to draw) and
    judges only whether the fine texture is the teacher's kind, and belongs to that photo.
    """

    HIGHPASS_GAIN = 8.0  # the fine band of a dream is a few hundredths: brought to about the photo's range

    def __init__(self, width: int = 32, scales: int = 1, highpass: float = 0.0):
        super().__init__()
        if not isinstance(scales, int) or not 1 <= scales <= 4:
            raise ValueError(f"discriminator scales must be a whole number in 1..4, got {scales!r}")
        if not (0 <= highpass <= 8):
            raise ValueError(f"discriminator high-pass sigma must be in 0..8 pixels, got {highpass!r}")
        self.highpass = float(highpass)
        self.net = self._branch(width)
        self.coarser = nn.ModuleList(self._branch(width) for _ in range(scales - 1))

    @staticmethod
    def _branch(w: int) -> nn.Sequential:
        sn = nn.utils.parametrizations.spectral_norm
        chans = [6, w, 2 * w, 4 * w, 4 * w]
        layers = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [sn(nn.Conv2d(a, b, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        layers.append(sn(nn.Conv2d(chans[-1], 1, 3, padding=1)))
        return nn.Sequential(*layers)

    def fine_band(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` minus its Gaussian blur (the high-pass the discriminator sees), times the gain."""
        return (y - gaussian_blur(y, self.highpass)) * self.HIGHPASS_GAIN

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        if self.highpass > 0:
            z = torch.cat([x * 2 - 1, self.fine_band(y)], 1)
        else:
            z = torch.cat([x, y], 1) * 2 - 1  # inputs in [0, 1] -> [-1, 1]
        out = [self.net(z)]
        for branch in self.coarser:
            z = F.avg_pool2d(z, 3, stride=2, padding=1, count_include_pad=False)
            out.append(branch(z))
        return out


def _scales(s) -> list:
    return list(s) if isinstance(s, (list, tuple)) else [s]


def d_hinge(real, fake) -> torch.Tensor:
    """The discriminator's hinge loss: ``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))``, averaged over
    the scales when given lists of score maps (:class:`PatchDiscriminator`)."""
    real, fake = _scales(real), _scales(fake)
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake, strict=True)) / len(real)


def g_hinge(fake) -> torch.Tensor:
    """The generator's adversarial loss: ``-mean(D(fake))``, averaged over the scales of a list."""
    fake = _scales(fake)
    return -sum(f.mean() for f in fake) / len(fake)


def phase_grid(x: torch.Tensor, pool: int = 8) -> torch.Tensor:
    """How much of ``x`` is a 2-pixel grid: the three detail coefficients of a 2x2 Haar step (the
    differences between the four pixels of each 2x2 block), averaged over ``pool`` x ``pool`` blocks and
    squared: ``[B, 3 * C, H / (2 pool), W / (2 pool)]``. Texture's details change sign from block to block
    and average away; a pattern fixed to the pixel grid (each 2x2 phase offset alike) adds up."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    a, b = x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2]
    c, d = x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2]
    detail = torch.cat([a - b + c - d, a + b - c - d, a - b - c + d], 1) / 4
    return F.avg_pool2d(detail, pool, ceil_mode=True) ** 2


def grid_excess(out: torch.Tensor, target: torch.Tensor, pool: int = 8) -> torch.Tensor:
    """The output's 2-pixel grid (:func:`phase_grid`) beyond the target's, block by block: zero unless the
    filter draws a pattern fixed to its pixel grid where the teacher's dream has none. Scaled by 1e4: a
    checkerboard (or stripes of period 2) of amplitude 0.01 over a flat target costs 1/3, one of the three
    detail orientations at 1e-4."""
    return F.relu(phase_grid(out, pool) - phase_grid(target, pool)).mean() * 1e4
