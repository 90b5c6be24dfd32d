"""A style objective for the dream engine: climb towards the Gram matrices of style pictures.

Its value per picture is ``-sum_l w_l ||G_l - T_l||^2 / ||T_l||^2`` (the style loss of
:mod:`fastdream.stylize.transfer`, negated), so a dream that climbs it paints the picture in the style.
The Gram matrices are normalized by C*H*W, averages over positions, so the objective means the same on
the jittered, tiled crops the dream engine feeds it as on the whole picture.

>>> from fastdream.backbones import load_backbone
>>> from fastdream.engine.objectives import Layer
>>> bb = load_backbone()
>>> obj = Layer("block9") + 2.0 * StyleObjective.from_images(bb, [("starry.jpg", 1.0)])
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from fastdream.engine.objectives import Context, Objective
from fastdream.errors import FastdreamError
from fastdream.stylize.gram import blend_grams, gram_matrix, target_scale
from fastdream.stylize.transfer import DEFAULT_STYLE_LAYERS, fit_long_side, resize

DEFAULT_STYLE_SIZE = 384  # style pictures are seen with this long side (pixels) unless told otherwise


class StyleObjective(Objective):
    """Negative weighted Gram distance to fixed targets.

    Args:
        targets: ``{layer: [C, C]}`` Gram matrices (normalized by C*H*W) to climb towards.
        layer_weights: ``{layer: weight}`` (default: equal); normalized to sum to 1.
    """

    def __init__(self, targets: dict[str, torch.Tensor], layer_weights: dict[str, float] | None = None):
        if not targets:
            raise FastdreamError("a style objective needs at least one layer")
        self.targets = {n: t.detach().reshape(t.shape[-2], t.shape[-1]) for n, t in targets.items()}
        lw = layer_weights or {n: 1.0 for n in targets}
        if set(lw) != set(targets):
            raise FastdreamError(f"layer weights for {sorted(lw)} but targets for {sorted(targets)}")
        total = sum(float(v) for v in lw.values())
        if not total > 0 or any(float(v) < 0 for v in lw.values()):
            raise FastdreamError(f"layer weights must be >= 0 and not all zero, got {lw}")
        self.scales = {n: float(lw[n]) / total * target_scale(self.targets[n]) for n in self.targets}

    @classmethod
    def from_images(cls, backbone, styles: Sequence[tuple[Any, float]], layers: Sequence[str] | None = None,
                    device: str | torch.device = "cpu", size: int = DEFAULT_STYLE_SIZE,
                    layer_weights: Sequence[float] | None = None) -> "StyleObjective":
        """Targets from style pictures: ``styles = [(path | PIL | numpy | tensor, weight), ...]``; each
        is seen with its long side ``size`` pixels, and the Gram matrices are blended by the weights
        (normalized to sum to 1). ``layers`` default to :data:`DEFAULT_STYLE_LAYERS`."""
        from fastdream.convert import to_tensor
        from fastdream.stylize.transfer import StyleConfig, StyleTransfer

        layers = tuple(layers or DEFAULT_STYLE_LAYERS)
        if not styles:
            raise FastdreamError("a style objective needs at least one style picture")
        cfg = StyleConfig(style_layers=layers, content_layer=layers[0],
                          layer_weights=tuple(layer_weights) if layer_weights is not None else None)
        st = StyleTransfer(backbone, cfg)
        pics = []
        for img, w in styles:
            t = to_tensor(img)[0].to(device)
            hs, ws = fit_long_side(*t.shape[-2:], size)
            pics.append((resize(t, (hs, ws)), float(w)))
        need = st.info.min_side(layers)
        grams, weights = [], []
        for t, w in pics:
            if min(t.shape[-2:]) < need:
                raise FastdreamError(f"a style picture seen at {t.shape[-1]}x{t.shape[-2]} is too small for its "
                                     f"layers (needs {need} pixels on the short side); raise size")
            grams.append(st.grams(t, layers))
            weights.append(w)
        targets = {n: blend_grams([g[n] for g in grams], weights) for n in layers}
        return cls(targets, dict(st.layer_weights))

    def taps(self) -> set[str]:
        return set(self.targets)

    def distance(self, acts: dict) -> torch.Tensor:
        """The weighted style distance ``[B]`` of the tapped activations (the style loss)."""
        total = None
        for n, t in self.targets.items():
            a = acts[n]
            if a.dim() != 4:
                raise FastdreamError(f"style layer {n!r} has no spatial map (shape {tuple(a.shape)})")
            g = gram_matrix(a.float())
            d = (g - t.to(g.device, g.dtype)).square().flatten(1).sum(1) * self.scales[n]
            total = d if total is None else total + d
        return total

    def __call__(self, acts: dict, ctx: Context | None = None) -> torch.Tensor:
        return -self.distance(acts)

    def __repr__(self):
        return f"StyleObjective({', '.join(self.targets)})"
