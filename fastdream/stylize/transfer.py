"""The style-transfer loop: Gatys et al. (2016) on a backbone's taps, coarse to fine, tile by tile.

Data flow at one scale: picture ``x [1, 3, h, w]`` -> backbone taps (the style layers and the content
layer; the forward pass stops after the deepest) -> Gram matrices ``[C, C]`` (normalized by C*h*w) and
the content features -> loss = content_weight * content + style_weight * style + tv_weight * tv ->
gradient -> L-BFGS (or Adam) step -> clamp to [0, 1]. The result is upsampled to the next scale and
optimized again there (the coarse scales set the layout; the output scale must match the style's fine
statistics itself, so it gets at least ``FINAL_ITERS`` evaluations).

Losses (each one relative, so the weights mean the same on every layer and every backbone):

- content = mean((F - F_content)^2) / mean(F_content^2) at the content layer;
- style   = sum_l w_l * ||G_l - T_l||^2 / ||T_l||^2 with the layer weights w_l summing to 1 and
  T_l the weighted mean of the style pictures' Gram matrices;
- tv      = mean squared difference of neighbouring pixels (smoothness).

Large pictures are evaluated tile by tile with a halo (``ops.halo_tiles``: the cores partition the
picture, each seen with context around it): a first pass without gradients sums every tile's Gram matrix,
weighted by its share of the positions, into the picture's Gram matrices, a second pass back-propagates
each tile's share of the exact loss gradient ``2 (G - T) : dG/dF``. Memory then grows with the tile, not
with the picture.

This module is the loss and the loop over scales; the configuration is in
:mod:`fastdream.stylize.config`, sizes and the schedule in :mod:`fastdream.stylize.scales`, the
optimizers in :mod:`fastdream.stylize.optimize`, and every Gram matrix is
:func:`fastdream.metrics.gram_matrix` (normalized by C*H*W).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from fastdream import ops
from fastdream.errors import FastdreamError
from fastdream.metrics import gram_matrix
from fastdream.stylize.color import gray3
# the configuration and the sizes live in their own modules; their names stay importable from here
from fastdream.stylize.config import (DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, FINAL_ITERS, OPTIMIZERS,  # noqa: F401
                                      PRESERVE, StyleConfig, StyleStats)
from fastdream.stylize.gram import blend_grams, target_scale
from fastdream.stylize.optimize import optimize
from fastdream.stylize.scales import LayerInfo, fit_long_side, resize, schedule  # noqa: F401


def _add_tile_gram(total, positions: int, feat: torch.Tensor):
    """One tile's term of a picture's Gram matrix: ``(total + N_t G_t, positions + N_t)`` for the tile's
    features ``feat [1, C, h_t, w_t]`` (``G_t = gram_matrix(feat)``, ``N_t = h_t w_t``). The picture's Gram
    matrix is ``total / positions``: the one normalization of :func:`fastdream.metrics.gram_matrix`
    (C times the positions), over all tiles' positions."""
    n = feat.shape[-2] * feat.shape[-1]
    return total + gram_matrix(feat)[0] * float(n), positions + n


class StyleTransfer:
    """Style transfer of one configuration on one backbone; reusable across pictures.

    >>> st = StyleTransfer(load_backbone(), StyleConfig(size=512))
    >>> out, stats = st.run(content, [(style_a, 1.0), (style_b, 0.5)])   # [1, 3, H, W] in [0, 1]
    """

    def __init__(self, backbone, config: StyleConfig | None = None):
        self.backbone = backbone
        self.config = config or StyleConfig()
        self.config.validate()
        cfg = self.config
        # canonical names, in the user's spelling for messages
        for n in (*cfg.style_layers, cfg.content_layer):
            backbone.resolve_tap(n)
        if len(set(cfg.style_layers)) != len(cfg.style_layers):
            raise FastdreamError(f"style layers repeat: {', '.join(cfg.style_layers)}")
        self.info = LayerInfo(backbone, [*cfg.style_layers, cfg.content_layer])
        lw = cfg.layer_weights or (1.0,) * len(cfg.style_layers)
        self.layer_weights = {n: float(w) / sum(lw) for n, w in zip(cfg.style_layers, lw)}
        self.taps = list(dict.fromkeys([*cfg.style_layers, cfg.content_layer]))
        from fastdream.precision import resolve_precision

        self.precision = resolve_precision(cfg.precision, backbone.mean.device)

    def _forward_taps(self, x: torch.Tensor, taps) -> dict[str, torch.Tensor]:
        return self.backbone.forward_taps(x, taps, self.precision)

    # -- schedule -------------------------------------------------------------------------------
    def schedule(self, h: int, w: int) -> list[tuple[tuple[int, int], int]]:
        """``[((h, w), iterations), ...]`` coarse to fine for a content picture of ``h x w``."""
        return schedule(self.config, self.info, h, w)

    # -- tiling ---------------------------------------------------------------------------------
    def tiles(self, h: int, w: int):
        """``[(core (y0, y1, x0, x1), crop (y0, y1, x0, x1)), ...]`` covering an ``h x w`` picture: one tile
        up to ``max_tile_pixels`` (unless ``tile`` is given), else ``ops.halo_tiles`` of ``tile`` pixels
        (default: the square of ``max_tile_pixels`` less the halo on both sides) and ``tile_halo``."""
        cfg = self.config
        if cfg.tile is None and h * w <= cfg.max_tile_pixels:
            return [((0, h, 0, w), (0, h, 0, w))]
        t = cfg.tile or max(64, int(math.sqrt(cfg.max_tile_pixels)) - 2 * cfg.tile_halo)
        return ops.halo_tiles(h, w, t, cfg.tile_halo)

    @staticmethod
    def _core(feat: torch.Tensor, core, crop) -> torch.Tensor:
        """The positions of ``feat`` (features of ``crop``) that belong to ``core``."""
        fh, fw = feat.shape[-2:]
        ch, cw = crop[1] - crop[0], crop[3] - crop[2]
        a = round((core[0] - crop[0]) * fh / ch)
        b = fh if core[1] == crop[1] else round((core[1] - crop[0]) * fh / ch)
        c = round((core[2] - crop[2]) * fw / cw)
        d = fw if core[3] == crop[3] else round((core[3] - crop[2]) * fw / cw)
        return feat[..., a:b, c:d]

    # -- targets --------------------------------------------------------------------------------
    @torch.no_grad()
    def grams(self, x: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Gram matrices ``{layer: [C, C]}`` of one picture ``x [1, 3, H, W]`` (tiled when large)."""
        layers = list(layers or self.config.style_layers)
        sums = {n: 0.0 for n in layers}
        count = {n: 0 for n in layers}
        for core, crop in self.tiles(*x.shape[-2:]):
            acts = self._forward_taps(x[..., crop[0]:crop[1], crop[2]:crop[3]], layers)
            for n in layers:
                sums[n], count[n] = _add_tile_gram(sums[n], count[n], self._core(acts[n], core, crop))
            del acts
        return {n: sums[n] / float(count[n]) for n in layers}

    def style_targets(self, styles: Sequence[tuple[torch.Tensor, float]], size: tuple[int, int]):
        """Blended Gram targets ``{layer: [C, C]}`` for a working picture of ``size``: every style
        picture is seen with its long side ``style_scale`` times the working long side."""
        cfg = self.config
        need = self.info.min_side(cfg.style_layers)
        grams, weights = [], []
        for img, w in styles:
            hs, ws = fit_long_side(*img.shape[-2:], cfg.style_scale * max(size))
            if min(hs, ws) < need:
                raise FastdreamError(f"a style picture seen at {ws}x{hs} is too small for style layer "
                                     f"{max(cfg.style_layers, key=lambda n: self.info.stride[n])} "
                                     f"(needs {need} pixels on the short side); raise --style-scale or --size")
            grams.append(self.grams(resize(img, (hs, ws))))
            weights.append(w)
        return {n: blend_grams([g[n] for g in grams], weights) for n in cfg.style_layers}

    # -- loss and gradient ----------------------------------------------------------------------
    def _tv(self, x: torch.Tensor) -> torch.Tensor:
        return (x[..., 1:, :] - x[..., :-1, :]).square().mean() + (x[..., :, 1:] - x[..., :, :-1]).square().mean()

    def evaluate(self, x: torch.Tensor, targets, content_feats, need_grad: bool = True):
        """``(total loss, parts, gradient or None)`` of picture ``x [1, 3, h, w]``; ``content_feats``
        is a list of the content's core features per tile (see :meth:`content_features`)."""
        cfg = self.config
        lw = self.layer_weights
        tiles = self.tiles(*x.shape[-2:])
        cl = cfg.content_layer
        scales = {n: lw[n] * target_scale(targets[n]) for n in cfg.style_layers}
        c_norm = sum(float(f.square().sum()) for f in content_feats)
        c_scale = 1.0 / max(c_norm, 1e-30)  # content = sum (F - Fc)^2 / sum Fc^2

        if len(tiles) == 1:
            core, crop = tiles[0]
            xg = x.detach().requires_grad_(need_grad)
            with torch.set_grad_enabled(need_grad):
                acts = self._forward_taps(xg, self.taps)
                per_layer = {}
                for n in cfg.style_layers:
                    g = gram_matrix(acts[n])[0]
                    per_layer[n] = (g - targets[n]).square().sum() * scales[n]
                style = sum(per_layer.values())
                content = (acts[cl] - content_feats[0]).square().sum() * c_scale
                tv = self._tv(xg)
                total = cfg.content_weight * content + cfg.style_weight * style + cfg.tv_weight * tv
            grad = torch.autograd.grad(total, xg)[0] if need_grad else None
            parts = {"content": float(content.detach()), "style": float(style.detach()), "tv": float(tv.detach()),
                     "per_layer": {n: float(v.detach()) for n, v in per_layer.items()}}
            return float(total.detach()), parts, grad

        # pass 1: the picture's Gram matrices and content loss, tile by tile, without gradients
        sums = {n: 0.0 for n in cfg.style_layers}
        count = {n: 0 for n in cfg.style_layers}
        content = 0.0
        with torch.no_grad():
            for (core, crop), fc in zip(tiles, content_feats):
                acts = self._forward_taps(x[..., crop[0]:crop[1], crop[2]:crop[3]], self.taps)
                for n in cfg.style_layers:
                    sums[n], count[n] = _add_tile_gram(sums[n], count[n], self._core(acts[n], core, crop))
                content += float((self._core(acts[cl], core, crop) - fc).square().sum())
                del acts
        content *= c_scale
        grams = {n: sums[n] / float(count[n]) for n in cfg.style_layers}
        per_layer = {n: float((grams[n] - targets[n]).square().sum()) * scales[n] for n in cfg.style_layers}
        style = sum(per_layer.values())
        xg = x.detach().requires_grad_(need_grad)
        with torch.set_grad_enabled(need_grad):
            tv = self._tv(xg)
        total = cfg.content_weight * content + cfg.style_weight * style + cfg.tv_weight * float(tv.detach())
        parts = {"content": content, "style": style, "tv": float(tv.detach()), "per_layer": per_layer}
        if not need_grad:
            return total, parts, None
        grad = torch.autograd.grad(cfg.tv_weight * tv, xg)[0] if cfg.tv_weight > 0 else torch.zeros_like(x)
        # pass 2: each tile's share of the gradient. G = sum_t (N_t / N) G_t (G_t: tile t's Gram matrix,
        # N_t its positions, N theirs all), and d/dF of ||G - T||^2 is 2 (G - T) : dG/dF, so a tile
        # back-propagates (N_t / N) <coef, G_t> with coef = 2 (G - T) (times the layer's weight) fixed.
        coef = {n: (2.0 * cfg.style_weight * scales[n]) * (grams[n] - targets[n]) for n in cfg.style_layers}
        for (core, crop), fc in zip(tiles, content_feats):
            t = x[..., crop[0]:crop[1], crop[2]:crop[3]].detach().requires_grad_(True)
            acts = self._forward_taps(t, self.taps)
            sur = cfg.content_weight * c_scale * (self._core(acts[cl], core, crop) - fc).square().sum()
            for n in cfg.style_layers:
                f = self._core(acts[n], core, crop)
                share = f.shape[-2] * f.shape[-1] / float(count[n])
                sur = sur + (coef[n] * gram_matrix(f)[0]).sum() * share
            (g,) = torch.autograd.grad(sur, t)
            grad[..., crop[0]:crop[1], crop[2]:crop[3]] += g
            del acts, sur, g
        return total, parts, grad

    @torch.no_grad()
    def content_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The content layer's features of ``x`` for every tile's core (one entry when untiled)."""
        out = []
        for core, crop in self.tiles(*x.shape[-2:]):
            acts = self._forward_taps(x[..., crop[0]:crop[1], crop[2]:crop[3]], [self.config.content_layer])
            out.append(self._core(acts[self.config.content_layer], core, crop).clone())
        return out

    # -- the loop -------------------------------------------------------------------------------
    def run(self, content: torch.Tensor, styles: Sequence[tuple[torch.Tensor, float]],
            init: torch.Tensor | None = None,
            progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, StyleStats]:
        """Paint ``content [1, 3, H, W]`` (float in [0, 1]) in the style of ``styles`` (pictures
        ``[1, 3, h, w]`` with weights). ``init``: a start picture (any size) instead of ``config.init``.
        Returns the picture ``[1, 3, H', W']`` (``H', W'`` from ``config.size``) and statistics."""
        from fastdream.stylize.color import keep_chroma, match_color

        cfg = self.config
        if content.dim() != 4 or content.shape[:2] != (1, 3):
            raise FastdreamError(f"expected a content picture [1, 3, H, W], got shape {tuple(content.shape)}")
        if not styles:
            raise FastdreamError("no style picture given")
        blend_grams([torch.zeros(1)] * len(styles), [w for _, w in styles])  # validates the weights
        device = self.backbone.mean.device
        content = content.detach().float().to(device)
        original = content
        styles = [(s.detach().float().to(device), float(w)) for s, w in styles]
        if cfg.preserve_color == "luminance":
            styles = [(gray3(s, like=content), w) for s, w in styles]
            content = gray3(content)
        elif cfg.preserve_color == "histogram":
            styles = [(match_color(s, content), w) for s, w in styles]
        plan = self.schedule(*content.shape[-2:])
        stats = StyleStats(scale_sizes=[list(s) for s, _ in plan], iters=[i for _, i in plan])
        gen = torch.Generator().manual_seed(int(cfg.seed))
        torch.manual_seed(int(cfg.seed))

        if init is None and not (isinstance(cfg.init, str) and cfg.init in ("content", "noise")):
            from fastdream.convert import to_tensor

            init = to_tensor(cfg.init)[0]  # a path, PIL image, numpy array or tensor
        if init is not None:
            x = resize(init.detach().float().to(device), plan[0][0])
            if cfg.preserve_color == "luminance":
                x = gray3(x)
        elif cfg.init == "noise":
            x = torch.rand((1, 3, *plan[0][0]), generator=gen).to(device)
        else:
            x = resize(content, plan[0][0])
        x = x.clone().contiguous()

        total_evals = sum(i for _, i in plan)
        done = 0
        final_size = plan[-1][0]
        for level, (size, iters) in enumerate(plan):
            if level > 0:
                x = resize(x, size).contiguous()
            c = resize(content, size)
            targets = self.style_targets(styles, size)
            cfeats = self.content_features(c)
            stats.tiles.append(len(self.tiles(*size)))
            if level == len(plan) - 1:
                # the report's "start" is the starting picture at the output size
                start = x if level == 0 else self._start_picture(content, init, plan[0][0], size)
                _, p0, _ = self.evaluate(start, targets, cfeats, need_grad=False)
                stats.content_loss_start, stats.style_loss_start = p0["content"], p0["style"]
            x, n = self._optimize(x, iters, targets, cfeats, progress, done, total_evals)
            done += n
            stats.evaluations += n
        _, p1, _ = self.evaluate(x, targets, cfeats, need_grad=False)
        stats.content_loss_end, stats.style_loss_end, stats.tv_loss_end = p1["content"], p1["style"], p1["tv"]
        stats.style_loss_per_layer = p1["per_layer"]
        if cfg.preserve_color == "luminance":
            x = keep_chroma(x, original)
        assert tuple(x.shape[-2:]) == tuple(final_size)
        return x.detach(), stats

    def _start_picture(self, content, init, coarse, size):
        """The starting picture as it would be at the output ``size`` (for the report's start losses)."""
        cfg = self.config
        if init is not None:
            x = resize(init.detach().float().to(content.device), size)
            return gray3(x) if cfg.preserve_color == "luminance" else x
        if cfg.init == "noise":
            g = torch.Generator().manual_seed(int(cfg.seed))
            return resize(torch.rand((1, 3, *coarse), generator=g).to(content.device), size)
        return resize(content, size)

    def _optimize(self, x, iters, targets, cfeats, progress, done, total):
        def evaluate(xd):
            loss, _, g = self.evaluate(xd, targets, cfeats, need_grad=True)
            return loss, g

        return optimize(self.config, x, iters, evaluate, progress, done, total)
