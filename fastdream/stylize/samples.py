"""Procedural painting-like style pictures (no files to ship, no licence to track), for tests,
benchmarks and examples. Each returns ``[1, 3, size, size]`` float32 in [0, 1], seeded."""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter


def _to_tensor(img: Image.Image) -> torch.Tensor:
    a = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()


def brush_strokes(size: int = 256, seed: int = 0, palette=None) -> torch.Tensor:
    """Thick curved strokes in a warm/cool palette over a toned ground (an impasto sketch)."""
    rng = np.random.default_rng(seed)
    palette = palette or [(32, 60, 140), (240, 190, 40), (210, 70, 30), (20, 120, 110), (245, 235, 210),
                          (90, 40, 120)]
    img = Image.new("RGB", (size, size), (200, 170, 120))
    d = ImageDraw.Draw(img)
    n = int(size * size / 180)
    for _ in range(n):
        x, y = rng.uniform(0, size, 2)
        ang = rng.uniform(0, math.pi) + 0.6 * math.sin(y / size * 6.0)
        length = rng.uniform(0.04, 0.12) * size
        width = max(2, int(rng.uniform(0.012, 0.03) * size))
        col = np.array(palette[rng.integers(len(palette))], dtype=float) * rng.uniform(0.8, 1.1)
        pts = []
        for t in np.linspace(-0.5, 0.5, 6):
            bend = 0.25 * length * math.sin(t * math.pi)
            pts.append((x + t * length * math.cos(ang) - bend * math.sin(ang),
                        y + t * length * math.sin(ang) + bend * math.cos(ang)))
        d.line(pts, fill=tuple(int(min(255, c)) for c in col), width=width, joint="curve")
    return _to_tensor(img.filter(ImageFilter.SMOOTH))


def swirls(size: int = 256, seed: int = 0) -> torch.Tensor:
    """Starry-night-like swirling bands of blue and yellow (a flow field painted with short strokes)."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (20, 40, 90))
    d = ImageDraw.Draw(img)
    centers = rng.uniform(0, size, (5, 2))
    def flow(x, y):
        vx, vy = 1.0, 0.2
        for cx, cy in centers:
            dx, dy = x - cx, y - cy
            r2 = dx * dx + dy * dy + 1.0
            k = (0.35 * size) ** 2 / r2
            vx += -dy / math.sqrt(r2) * min(k, 4.0)
            vy += dx / math.sqrt(r2) * min(k, 4.0)
        n = math.hypot(vx, vy) + 1e-6
        return vx / n, vy / n
    cols = [(30, 70, 160), (60, 110, 200), (230, 200, 60), (250, 240, 170), (15, 30, 70), (120, 170, 220)]
    for _ in range(int(size * size / 60)):
        x, y = rng.uniform(0, size, 2)
        col = cols[rng.integers(len(cols))]
        pts = [(x, y)]
        for _ in range(8):
            vx, vy = flow(x, y)
            x, y = x + vx * size * 0.012, y + vy * size * 0.012
            pts.append((x, y))
        d.line(pts, fill=col, width=max(2, size // 100), joint="curve")
    return _to_tensor(img)


def stained_glass(size: int = 256, seed: int = 0) -> torch.Tensor:
    """Voronoi cells in saturated colours with dark lead lines (a mosaic)."""
    rng = np.random.default_rng(seed)
    n = max(8, size * size // 900)
    pts = rng.uniform(0, size, (n, 2))
    cols = rng.choice(np.array([[200, 40, 40], [40, 90, 200], [240, 200, 40], [40, 160, 80], [150, 60, 170],
                                [240, 130, 30], [230, 230, 220]], dtype=np.float32), n)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d = (yy[..., None] - pts[:, 1]) ** 2 + (xx[..., None] - pts[:, 0]) ** 2  # [H, W, n]
    part = np.partition(d, 1, axis=2)
    near = d.argmin(2)
    edge = np.sqrt(part[..., 1]) - np.sqrt(part[..., 0]) < size / 120.0
    img = cols[near]
    img[edge] = 25
    shade = 0.85 + 0.15 * np.sin(xx / size * 17 + yy / size * 11)[..., None]
    img = np.clip(img * shade, 0, 255)
    return torch.from_numpy(img / 255.0).float().permute(2, 0, 1)[None].contiguous()
