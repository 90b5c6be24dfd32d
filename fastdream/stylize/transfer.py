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

Large pictures are evaluated tile by tile with a halo: a first pass without gradients sums every tile's
``F F^T`` into the picture's Gram matrices, a second pass back-propagates each tile's share of the exact
loss gradient ``2 (G - T) : dG/dF``. Memory then grows with the tile, not with the picture.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from fastdream.errors import FastdreamError
from fastdream.stylize.color import gray3
from fastdream.stylize.gram import blend_grams, gram_sum, target_scale

# Chosen by looking at pictures on EfficientNet-Lite0 (see docs/style.md): the ends of the stages at
# strides 2..16 carry colour, strokes and texture; block10 (stride 16, 112 channels) keeps the objects
# recognisable while leaving the style free to repaint their surfaces.
DEFAULT_STYLE_LAYERS = ("stem", "block2", "block4", "block7", "block10")
DEFAULT_CONTENT_LAYER = "block10"

OPTIMIZERS = ("lbfgs", "adam")
# the automatic schedule's fewest evaluations at the output scale (when there are several scales): 80 bring
# the style loss to <= 0.10 of its start on photo pairs at their own size (chelsea + brick, the tuning pair:
# 0.091 fp32 / 0.093 bf16 with 80, 0.113 / 0.116 with 55; held out, astronaut + grass and motorcycle +
# Hubble: 0.02 either way; docs/style.md)
FINAL_ITERS = 80
PRESERVE = ("luminance", "histogram")


@dataclasses.dataclass
class StyleConfig:
    """Every knob of a style transfer. Defaults give a good picture from a photo and a painting."""

    content_layer: str = DEFAULT_CONTENT_LAYER
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    layer_weights: tuple[float, ...] | None = None   # per style layer (default: equal); normalized
    content_weight: float = 1.0
    style_weight: float = 100.0
    tv_weight: float = 1.0
    optimizer: str = "lbfgs"          # lbfgs | adam
    iters: int | tuple[int, ...] = 120  # evaluations at the coarsest scale (a list: one per scale); the
    #                                     output scale gets at least min(iters, FINAL_ITERS)
    lr: float = 0.02                  # Adam's step (pixels are in [0, 1]); L-BFGS uses 1
    size: int | None = None           # long side of the output (default: the content's)
    scales: int | None = None         # number of scales, coarse to fine, x2 apart (default: automatic)
    coarse_size: int = 384            # the automatic schedule starts at most this large (long side)
    style_scale: float = 1.0          # style pictures are seen at this times the working size
    preserve_color: str | None = None  # None | luminance | histogram
    init: Any = "content"             # content | noise | a picture (path, PIL, numpy, tensor)
    seed: int = 0
    max_tile_pixels: int = 1024 * 1024  # pictures above this many pixels are evaluated tile by tile
    tile: int | None = None           # tile size (default: from max_tile_pixels)
    tile_halo: int = 64               # context pixels around each tile
    pyramid: int = 8                  # L-BFGS over up to this many pyramid levels, the coarsest >= 32 px
    #                                   on the short side (1: plain pixels)
    precision: str = "auto"           # the backbone's: auto | fp32 | bf16 | fp16 (see fastdream.precision)

    def validate(self) -> None:
        def bad(msg):
            raise FastdreamError(msg)

        for name in ("content_weight", "style_weight", "tv_weight", "lr", "style_scale"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                bad(f"{name.replace('_', ' ')} must be a number >= 0, got {v!r}")
        if not self.style_scale > 0:
            bad(f"style scale must be > 0, got {self.style_scale!r}")
        if self.optimizer not in OPTIMIZERS:
            bad(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if self.optimizer == "adam" and not self.lr > 0:
            bad(f"Adam's learning rate must be > 0, got {self.lr!r}")
        if self.preserve_color not in (None, *PRESERVE):
            bad(f"unknown colour preservation {self.preserve_color!r}; choose from {', '.join(PRESERVE)}")
        iters = self.iters if isinstance(self.iters, (tuple, list)) else (self.iters,)
        if not iters or any(not isinstance(i, int) or i < 0 for i in iters):
            bad(f"iterations must be whole numbers >= 0, got {self.iters!r}")
        if self.size is not None and (not isinstance(self.size, int) or self.size < 1):
            bad(f"size must be a whole number of pixels, got {self.size!r}")
        if self.scales is not None and (not isinstance(self.scales, int) or not 1 <= self.scales <= 8):
            bad(f"scales must be 1..8, got {self.scales!r}")
        if isinstance(self.iters, (tuple, list)) and self.scales is not None and len(self.iters) not in (1, self.scales):
            bad(f"{len(self.iters)} iteration counts for {self.scales} scales")
        if not self.style_layers:
            bad("at least one style layer is needed")
        if self.layer_weights is not None:
            if len(self.layer_weights) != len(self.style_layers):
                bad(f"{len(self.layer_weights)} layer weights for {len(self.style_layers)} style layers")
            if any(not (math.isfinite(w) and w >= 0) for w in self.layer_weights) or not sum(self.layer_weights) > 0:
                bad(f"layer weights must be >= 0 and not all zero, got {self.layer_weights}")
        if isinstance(self.init, str) and self.init not in ("content", "noise") and not self.init:
            bad("init must be 'content', 'noise' or a picture")
        if self.tile is not None and self.tile < 64:
            bad(f"tile must be >= 64 pixels, got {self.tile}")
        if self.max_tile_pixels < 64 * 64:
            bad(f"max tile pixels must be >= {64 * 64}, got {self.max_tile_pixels}")
        if not isinstance(self.pyramid, int) or not 1 <= self.pyramid <= 8:
            bad(f"pyramid levels must be 1..8, got {self.pyramid!r}")
        if self.tile_halo < 0:
            bad(f"tile halo must be >= 0, got {self.tile_halo}")


@dataclasses.dataclass
class StyleStats:
    content_loss_start: float = 0.0
    content_loss_end: float = 0.0
    style_loss_start: float = 0.0
    style_loss_end: float = 0.0
    tv_loss_end: float = 0.0
    evaluations: int = 0
    scale_sizes: list = dataclasses.field(default_factory=list)   # [[h, w], ...] coarse to fine
    iters: list = dataclasses.field(default_factory=list)
    tiles: list = dataclasses.field(default_factory=list)          # tiles per evaluation, per scale
    style_loss_per_layer: dict = dataclasses.field(default_factory=dict)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``x [B, 3, H, W]`` resized to ``size`` (antialiased when shrinking)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bicubic" if not shrink else "bilinear", align_corners=False,
                         antialias=shrink).clamp_(0, 1)


def fit_long_side(h: int, w: int, long_side: float) -> tuple[int, int]:
    s = long_side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def _splits(n: int, tile: int, align: int = 32) -> list[tuple[int, int]]:
    k = max(1, math.ceil(n / tile))
    if k == 1:
        return [(0, n)]
    edges = [0] + [min(n, max(0, round(i * n / k / align) * align)) for i in range(1, k)] + [n]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


class LayerInfo:
    """Strides and channel counts of the backbone's taps (from a meta-device forward pass)."""

    def __init__(self, backbone, names: Sequence[str]):
        probe = 256
        shapes = dict(backbone.layers(probe))
        self.channels, self.stride = {}, {}
        for n in names:
            c = backbone.resolve_tap(n)
            s = shapes[c]
            if len(s) != 3:
                raise FastdreamError(f"layer {n!r} of {backbone.name} has no spatial map (shape {s}); "
                                     "style and content layers must be feature maps")
            self.channels[n] = s[0]
            self.stride[n] = probe / s[1]

    def min_side(self, names: Sequence[str]) -> int:
        """The smallest picture side that gives every layer at least 2 positions per side."""
        return int(math.ceil(2 * max(self.stride[n] for n in names)))


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
        cfg = self.config
        long_side = cfg.size or max(h, w)
        need = self.info.min_side([*cfg.style_layers, cfg.content_layer])
        final = fit_long_side(h, w, long_side)
        if min(final) < need:
            raise FastdreamError(
                f"the output ({final[1]}x{final[0]}) is too small for the chosen layers: "
                f"{self._deepest()} needs at least {need} pixels on the short side")
        if cfg.scales is not None:
            k = cfg.scales
            coarsest = fit_long_side(h, w, long_side / 2 ** (k - 1))
            if min(coarsest) < need:
                raise FastdreamError(
                    f"{k} scales make the coarsest picture {coarsest[1]}x{coarsest[0]}, too small for "
                    f"{self._deepest()} (at least {need} pixels on the short side); use fewer --scales")
        else:
            k = 1
            while long_side / 2 ** k >= cfg.coarse_size / 2 and long_side / 2 ** (k - 1) > cfg.coarse_size \
                    and min(fit_long_side(h, w, long_side / 2 ** k)) >= max(need, 64):
                k += 1
        sizes = [fit_long_side(h, w, long_side / 2 ** (k - 1 - i)) for i in range(k)]
        if isinstance(cfg.iters, (tuple, list)):
            if len(cfg.iters) not in (1, k):
                raise FastdreamError(f"{len(cfg.iters)} iteration counts for {k} scales "
                                     f"({', '.join(f'{w}x{h}' for h, w in sizes)}); give one or {k}")
            its = list(cfg.iters) if len(cfg.iters) == k else [cfg.iters[0]] * k
        else:
            # coarse scales: about the same work each (4x the pixels, a quarter of the evaluations); they
            # set the layout. The output scale gets at least FINAL_ITERS evaluations whatever the rule gives:
            # upsampling blurs the strokes the coarser scale painted, and on the motorcycle photo at 2048 px
            # the upsampled 1024 result had a larger style loss than the content itself (0.78 against 0.55),
            # so 2 evaluations there left 82% of the loss (docs/style.md, "Large pictures").
            its = [cfg.iters if i == 0 else max(min(cfg.iters, 5), round(cfg.iters / 4 ** i)) for i in range(k)]
            if k > 1:
                its[-1] = max(its[-1], min(cfg.iters, FINAL_ITERS))
        return list(zip(sizes, its))

    def _deepest(self) -> str:
        names = [*self.config.style_layers, self.config.content_layer]
        return max(names, key=lambda n: self.info.stride[n])

    # -- tiling ---------------------------------------------------------------------------------
    def tiles(self, h: int, w: int):
        """``[(core (y0, y1, x0, x1), crop (y0, y1, x0, x1)), ...]`` covering an ``h x w`` picture."""
        cfg = self.config
        if cfg.tile is None and h * w <= cfg.max_tile_pixels:
            return [((0, h, 0, w), (0, h, 0, w))]
        t = cfg.tile or max(64, int(math.sqrt(cfg.max_tile_pixels)) - 2 * cfg.tile_halo)
        halo = cfg.tile_halo
        out = []
        for y0, y1 in _splits(h, t):
            for x0, x1 in _splits(w, t):
                out.append(((y0, y1, x0, x1),
                            (max(0, y0 - halo), min(h, y1 + halo), max(0, x0 - halo), min(w, x1 + halo))))
        return out

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
        sums = {n: None for n in layers}
        count = {n: 0 for n in layers}
        for core, crop in self.tiles(*x.shape[-2:]):
            acts = self._forward_taps(x[..., crop[0]:crop[1], crop[2]:crop[3]], layers)
            for n in layers:
                f = self._core(acts[n], core, crop)
                s = gram_sum(f)[0]
                sums[n] = s if sums[n] is None else sums[n] + s
                count[n] += f.shape[-2] * f.shape[-1]
        return {n: sums[n] / float(self.info.channels[n] * count[n]) for n in layers}

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
        c_count = sum(f.numel() for f in content_feats)
        c_scale = 1.0 / max(c_norm, 1e-30)  # content = sum (F - Fc)^2 / sum Fc^2

        if len(tiles) == 1:
            core, crop = tiles[0]
            xg = x.detach().requires_grad_(need_grad)
            with torch.set_grad_enabled(need_grad):
                acts = self._forward_taps(xg, self.taps)
                per_layer = {}
                for n in cfg.style_layers:
                    f = acts[n]
                    g = gram_sum(f)[0] / float(f.shape[1] * f.shape[2] * f.shape[3])
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
        sums = {n: None for n in cfg.style_layers}
        count = {n: 0 for n in cfg.style_layers}
        content = 0.0
        with torch.no_grad():
            for (core, crop), fc in zip(tiles, content_feats):
                acts = self._forward_taps(x[..., crop[0]:crop[1], crop[2]:crop[3]], self.taps)
                for n in cfg.style_layers:
                    f = self._core(acts[n], core, crop)
                    s = gram_sum(f)[0]
                    sums[n] = s if sums[n] is None else sums[n] + s
                    count[n] += f.shape[-2] * f.shape[-1]
                content += float((self._core(acts[cl], core, crop) - fc).square().sum())
                del acts
        content *= c_scale
        norm = {n: float(self.info.channels[n] * count[n]) for n in cfg.style_layers}
        grams = {n: sums[n] / norm[n] for n in cfg.style_layers}
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
        # pass 2: each tile's share of the gradient. d/dF of ||G - T||^2 with G = sum_t F_t F_t^T / norm
        # is 2 (G - T) : dG/dF, so a tile back-propagates <coef, F_t F_t^T> / norm with coef fixed.
        coef = {n: (2.0 * cfg.style_weight * scales[n] / norm[n]) * (grams[n] - targets[n]) for n in cfg.style_layers}
        for (core, crop), fc in zip(tiles, content_feats):
            t = x[..., crop[0]:crop[1], crop[2]:crop[3]].detach().requires_grad_(True)
            acts = self._forward_taps(t, self.taps)
            sur = cfg.content_weight * c_scale * (self._core(acts[cl], core, crop) - fc).square().sum()
            for n in cfg.style_layers:
                sur = sur + (coef[n] * gram_sum(self._core(acts[n], core, crop))[0]).sum()
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
        cfg = self.config
        if iters == 0:
            return x, 0
        x = x.detach().clone().requires_grad_(True)
        count = [0]

        def closure():
            loss, _, g = self.evaluate(x.detach(), targets, cfeats, need_grad=True)
            x.grad = g
            count[0] += 1
            if progress is not None:
                progress(done + min(count[0], iters), total)
            return torch.tensor(loss)

        if cfg.optimizer == "adam":
            opt = torch.optim.Adam([x], lr=cfg.lr)
            for _ in range(iters):
                opt.step(closure)
                with torch.no_grad():
                    x.clamp_(0, 1)
        elif self._levels(x) > 1:
            return self._optimize_pyramid(x.detach(), iters, targets, cfeats, progress, done, total)
        else:
            history = 20 if x.numel() <= 3 * 1024 * 1024 else 8
            opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, max_eval=2, history_size=history,
                                    tolerance_grad=0.0, tolerance_change=0.0)
            while count[0] < iters:
                opt.step(closure)
                with torch.no_grad():
                    x.clamp_(0, 1)
        return x.detach(), count[0]

    def _levels(self, x) -> int:
        """Pyramid levels for L-BFGS on a picture ``x`` (1: plain pixels)."""
        n = self.config.pyramid
        h, w = x.shape[-2:]
        k = 1
        while k < n and min(h, w) / 2 ** k >= 32:
            k += 1
        return k

    def _optimize_pyramid(self, x, iters, targets, cfeats, progress, done, total):
        """L-BFGS on a Laplacian-pyramid parameterization: ``x = z_0 + sum_k up(z_k)`` with ``z_k`` at
        1/2^k the size. The same loss, but broad changes move many pixels in one coordinate, so they
        need far fewer steps on a large picture (plain pixel descent corrects low frequencies slowly)."""
        h, w = x.shape[-2:]
        k = self._levels(x)
        zs = [x.clone()] + [torch.zeros((1, 3, math.ceil(h / 2 ** i), math.ceil(w / 2 ** i)), device=x.device)
                            for i in range(1, k)]

        def synth(z):
            out = z[0]
            for zi in z[1:]:
                out = out + F.interpolate(zi, size=(h, w), mode="bilinear", align_corners=False)
            return out

        count = [0]
        params = [z.requires_grad_(True) for z in zs]

        def closure():
            with torch.enable_grad():
                z = [p.detach().requires_grad_(True) for p in params]
                xs = synth(z)
            loss, _, g = self.evaluate(xs.detach(), targets, cfeats, need_grad=True)
            grads = torch.autograd.grad(xs, z, grad_outputs=g)
            for p, gz in zip(params, grads):
                p.grad = gz
            count[0] += 1
            if progress is not None:
                progress(done + min(count[0], iters), total)
            return torch.tensor(loss)

        numel = sum(z.numel() for z in zs)
        history = 20 if numel <= 3 * 1024 * 1024 else 8
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=1, max_eval=2, history_size=history,
                                tolerance_grad=0.0, tolerance_change=0.0)
        while count[0] < iters:
            opt.step(closure)
            with torch.no_grad():  # keep the picture in [0, 1]: the finest level takes the correction
                xs = synth([p.detach() for p in params])
                params[0].add_(xs.clamp(0, 1) - xs)
        with torch.no_grad():
            return synth([p.detach() for p in params]).clamp_(0, 1), count[0]
