"""Neural style transfer (Gatys et al.) on fastdream's backbones, and a style objective for dreams.

>>> import fastdream.stylize as fs
>>> out = fs.style("photo.jpg", ["painting.jpg"], size=512)          # a PIL image back
>>> obj = fs.StyleObjective.from_images(backbone, [("painting.jpg", 1.0)])   # for the dream engine
"""
from __future__ import annotations

from fastdream.stylize.gram import blend_grams, gram_matrix
from fastdream.stylize.transfer import (DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, StyleConfig, StyleStats,
                                      StyleTransfer)

__all__ = ["DEFAULT_CONTENT_LAYER", "DEFAULT_STYLE_LAYERS", "StyleConfig", "StyleObjective", "StyleStats",
           "StyleTransfer", "blend_grams", "gram_matrix", "style"]


def __getattr__(name):  # the API and the objective import the engine and I/O lazily
    if name == "style":
        from fastdream.stylize.api import style

        return style
    if name == "StyleObjective":
        from fastdream.stylize.objective import StyleObjective

        return StyleObjective
    raise AttributeError(name)
