"""Labelled contact sheets of pictures (inversions by layer, visualization variants)."""
from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from fastdream.imageio import tensor_to_pil


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def make_sheet(images: Sequence[torch.Tensor], labels: Sequence[str] | None = None, cols: int | None = None,
               pad: int = 4, label_height: int | None = None) -> Image.Image:
    """One RGB picture: ``images`` (each ``[1, 3, H, W]`` or ``[3, H, W]`` in [0, 1], shown at the size of
    the first) in a grid of ``cols`` columns, each with its label underneath (white on black)."""
    if not images:
        raise ValueError("make_sheet needs at least one picture")
    tiles = [tensor_to_pil(x if x.dim() == 4 else x[None]) for x in images]
    w, h = tiles[0].size
    tiles = [t if t.size == (w, h) else t.resize((w, h), Image.Resampling.BICUBIC) for t in tiles]
    n = len(tiles)
    cols = cols or min(n, 6)
    rows = (n + cols - 1) // cols
    lh = 0 if not labels else (label_height or max(14, w // 10))
    sheet = Image.new("RGB", (cols * w + (cols + 1) * pad, rows * (h + lh) + (rows + 1) * pad), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    font = _font(max(9, int(lh * 0.75))) if lh else None
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        x0, y0 = pad + c * (w + pad), pad + r * (h + lh + pad)
        sheet.paste(t, (x0, y0))
        if labels and i < len(labels):
            draw.text((x0 + 2, y0 + h + 1), str(labels[i]), fill=(255, 255, 255), font=font)
    return sheet


def save_pil(img: Image.Image, path, quality: int = 90) -> None:
    """Write a PIL picture atomically (the output path is checked by the caller beforehand)."""
    from fastdream.imageio import WRITERS, atomic_write, check_output_path

    p = check_output_path(path)
    fmt = WRITERS[p.suffix.lower()]
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    atomic_write(p, lambda tmp: img.save(tmp, format=fmt, **kwargs))
