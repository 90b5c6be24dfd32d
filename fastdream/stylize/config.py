"""The knobs of a style transfer (:class:`StyleConfig`, validated) and what a run reports (:class:`StyleStats`)."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from fastdream.errors import FastdreamError

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
