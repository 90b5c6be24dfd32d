"""``fastdream.style()``: style transfer on pictures in the forms people have them."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from fastdream.errors import FastdreamError


from fastdream.backbones import get_backbone  # noqa: E402,F401  (one cached loader for every command)


def _styles_list(styles) -> list[tuple[Any, float]]:
    """``picture``, ``[picture, ...]``, ``[(picture, weight), ...]`` or ``{path: weight}`` -> pairs."""
    if isinstance(styles, dict):
        return [(k, float(v)) for k, v in styles.items()]
    if not isinstance(styles, (list, tuple)):
        return [(styles, 1.0)]
    out = []
    for s in styles:
        if isinstance(s, tuple) and len(s) == 2 and isinstance(s[1], (int, float)):
            out.append((s[0], float(s[1])))
        else:
            out.append((s, 1.0))
    return out


def style(content: Any, styles: Any, *, size: int | None = None, content_layer: str | None = None,
          style_layers: Sequence[str] | None = None, backbone=None, device: str = "auto",
          progress: Callable[[int, int], None] | None = None, return_stats: bool = False, **options):
    """Paint ``content`` in the style of ``styles``.

    ``content``: a path, PIL image, numpy array (``[H, W, 3]`` uint8/float) or tensor (``[3, H, W]`` or
    ``[1, 3, H, W]``); the result comes back in the same form (a PIL image for a path), with the long
    side ``size`` (default: the content's).
    ``styles``: one picture, a list of pictures, a list of ``(picture, weight)`` pairs or a dict
    ``{picture: weight}``; the Gram targets are blended with the weights normalized to sum to 1.
    ``options``: any :class:`~fastdream.stylize.transfer.StyleConfig` field: ``style_weight``,
    ``content_weight``, ``tv_weight``, ``optimizer`` (lbfgs | adam), ``iters``, ``lr``, ``scales``,
    ``style_scale``, ``preserve_color`` (None | luminance | histogram), ``init`` (content | noise | a
    picture), ``seed``, ``layer_weights``, ``max_tile_pixels``, ``tile``...

    >>> import fastdream
    >>> out = fastdream.style("photo.jpg", [("starry.jpg", 2), ("mosaic.png", 1)], size=512)
    >>> out.save("painted.png")
    """
    import dataclasses

    from fastdream.convert import resolve_device, to_tensor
    from fastdream.stylize.transfer import StyleConfig, StyleTransfer

    fields = {f.name for f in dataclasses.fields(StyleConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise FastdreamError(f"unknown style option(s): {', '.join(unknown)}; choose from {', '.join(sorted(fields))}")
    if content_layer is not None:
        options["content_layer"] = content_layer
    if style_layers is not None:
        options["style_layers"] = tuple(style_layers)
    if isinstance(options.get("iters"), list):
        options["iters"] = tuple(options["iters"])
    cfg = StyleConfig(size=size, **options)
    dev = resolve_device(device)
    bb = get_backbone(backbone, dev)
    x, back = to_tensor(content)
    pairs = [(to_tensor(s)[0], w) for s, w in _styles_list(styles)]
    init = None
    if not (isinstance(cfg.init, str) and cfg.init in ("content", "noise")):
        init = to_tensor(cfg.init)[0]
        cfg.init = "content"
    result, stats = StyleTransfer(bb, cfg).run(x.to(dev), pairs, init=init, progress=progress)
    out = back(result)
    return (out, stats) if return_stats else out
