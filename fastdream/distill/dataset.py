"""Teacher datasets: pairs (input crop, the iterative dream of that crop) rendered from a folder of photos.

A dataset folder holds ``teacher.json`` (the dream's parameters, the crop recipe and the photos used)
and one PNG per pair, ``pair_000042.png``: the input crop on the left, the teacher's dream on the right
(``[H, 2W]``). A pair is written to a temporary name and renamed, so it is complete or absent.

Pair ``i`` depends only on ``(seed, i)``, the photos and the teacher: rendering is resumable and can be
split over machines with ``shard=(k, n)`` (the indices ``i`` with ``i % n == k``); the folders of all
shards merge by copying, without duplicates.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import re
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fastdream.errors import FastdreamError, InputError

TEACHER_FILE = "teacher.json"
PAIR_RE = re.compile(r"^pair_(\d{6,})\.png$")


def pair_name(i: int) -> str:
    return f"pair_{i:06d}.png"


def list_photos(folder) -> list[pathlib.Path]:
    """The pictures in ``folder`` (or ``[folder]`` for a single picture), sorted by name."""
    from fastdream.imageio import READABLE

    p = pathlib.Path(folder)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_file():
        return [p]
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in READABLE)
    if not files:
        raise InputError(f"{p}: no pictures in this folder (looked for {', '.join(sorted(READABLE))})")
    return files


def list_pairs(folder) -> dict[int, pathlib.Path]:
    """``{index: path}`` of the complete pairs in a dataset folder."""
    p = pathlib.Path(folder)
    if not p.is_dir():
        raise InputError(f"{p}: not a dataset folder (no such folder)")
    out = {}
    for f in p.iterdir():
        m = PAIR_RE.match(f.name)
        if m:
            out[int(m.group(1))] = f
    return dict(sorted(out.items()))


@dataclasses.dataclass
class CropRecipe:
    """How input crops are drawn from the photos (all choices are seeded by ``(seed, index)``)."""

    size: int = 256                 # crops are size x size (whole: pictures with this long side)
    min_fraction: float = 0.35      # the crop covers this fraction of the photo's short side, at least...
    max_fraction: float = 1.0       # ...and at most
    whole: bool = False             # whole pictures at the size of use: a window of the photo's own aspect
                                    # covering min..max_fraction of each side, resized to a long side of `size`
    flip: bool = True               # random horizontal flips
    color_jitter: float = 0.15      # random brightness/saturation change of up to +-this
    seed: int = 0

    def validate(self) -> None:
        if not isinstance(self.size, int) or not 16 <= self.size <= 4096:
            raise FastdreamError(f"crop size must be a whole number in 16..4096, got {self.size!r}")
        if not 0 < self.min_fraction <= self.max_fraction <= 1:
            raise FastdreamError(f"crop fractions must satisfy 0 < min <= max <= 1, got {self.min_fraction}, {self.max_fraction}")
        if not 0 <= self.color_jitter < 1:
            raise FastdreamError(f"color jitter must be in [0, 1), got {self.color_jitter}")


def draw_crop(photos: list[torch.Tensor], index: int, recipe: CropRecipe, rng=None) -> tuple[torch.Tensor, dict]:
    """The input crop ``[1, 3, S, S]`` of pair ``index`` and what was drawn (photo, scale, box, flip).
    The choices come from ``rng`` when given (a numpy Generator), else from ``(recipe.seed, index)``."""
    rng = rng if rng is not None else np.random.default_rng([recipe.seed, index])
    k = int(rng.integers(len(photos)))
    img = photos[k]
    h, w = img.shape[-2:]
    frac = float(rng.uniform(recipe.min_fraction, recipe.max_fraction))
    S = recipe.size
    if recipe.whole:  # a window of the photo's aspect, `frac` of each side, at a long side of S pixels
        scale = S / (frac * max(h, w))
        ch, cw = max(1, round(frac * h * scale)), max(1, round(frac * w * scale))
    else:
        scale = S / (frac * min(h, w))  # resize so that S pixels cover `frac` of the short side
        ch = cw = S
    nh, nw = max(ch, round(h * scale)), max(cw, round(w * scale))
    y0 = int(rng.integers(nh - ch + 1))
    x0 = int(rng.integers(nw - cw + 1))
    flip = bool(recipe.flip and rng.random() < 0.5)
    bright = 1.0 + float(rng.uniform(-recipe.color_jitter, recipe.color_jitter))
    sat = 1.0 + float(rng.uniform(-recipe.color_jitter, recipe.color_jitter))
    # resample only the needed window (plus a margin) of the scaled photo
    resized = F.interpolate(img, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    crop = resized[..., y0:y0 + ch, x0:x0 + cw]
    if flip:
        crop = crop.flip(-1)
    gray = crop.mean(1, keepdim=True)
    crop = (gray + (crop - gray) * sat) * bright
    info = {"photo": k, "scale": round(scale, 5), "box": [x0, y0, cw, ch], "flip": flip,
            "brightness": round(bright, 4), "saturation": round(sat, 4)}
    return crop.clamp(0, 1).contiguous(), info


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to 8 bits (what is stored): the teacher dreams exactly the picture the student will see."""
    return x.mul(255).round().div(255)


def save_pair(path, inp: torch.Tensor, out: torch.Tensor) -> None:
    """Write ``inp`` and ``out`` (``[1, 3, H, W]``) side by side as one PNG, atomically."""
    from PIL import Image

    from fastdream.imageio import atomic_write, tensor_to_uint8

    both = np.concatenate([tensor_to_uint8(inp), tensor_to_uint8(out)], axis=1)
    img = Image.fromarray(both, "RGB")
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG", compress_level=1))


def load_pair(path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input, teacher)`` uint8 tensors ``[3, H, W]`` from a pair PNG."""
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB"))
    if a.shape[1] % 2:
        raise InputError(f"{path}: not a fastdream pair (odd width {a.shape[1]})")
    t = torch.from_numpy(a.copy()).permute(2, 0, 1)
    w = t.shape[-1] // 2
    return t[..., :w].contiguous(), t[..., w:].contiguous()


def read_teacher(folder) -> dict:
    p = pathlib.Path(folder) / TEACHER_FILE
    if not p.exists():
        raise InputError(f"{folder}: not a fastdream dataset (no {TEACHER_FILE})")
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{p}: unreadable ({e})") from None


def _file_digest(p: pathlib.Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16]


def parse_shard(s: str | tuple | None) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N``; None -> ``(0, 1)``."""
    if s is None:
        return 0, 1
    if isinstance(s, tuple):
        k, n = s
    else:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(s))
        if not m:
            raise FastdreamError(f"--shard must be K/N (e.g. 0/4), got {s!r}")
        k, n = int(m.group(1)), int(m.group(2))
    if not (n >= 1 and 0 <= k < n):
        raise FastdreamError(f"--shard K/N needs 0 <= K < N, got {k}/{n}")
    return k, n


def _differences(old: dict, new: dict, keys, limit: int = 4) -> str:
    """``"teacher.steps: 10 before, 12 now; crop.size: ..."`` for the settings that differ."""
    def short(v):
        t = json.dumps(v, default=str)
        return t if len(t) <= 40 else t[:37] + "..."

    found = []
    for kk in keys:
        a, b = old.get(kk), new.get(kk)
        if isinstance(a, dict) and isinstance(b, dict):
            found += [(f"{kk}.{k}", a.get(k), b.get(k)) for k in sorted(set(a) | set(b), key=str)
                      if a.get(k) != b.get(k)]
        elif a != b:
            found.append((kk, a, b))
    text = "; ".join(f"{k}: {short(a)} before, {short(b)} now" for k, a, b in found[:limit])
    return text + (f"; and {len(found) - limit} more" if len(found) > limit else "")


def usable(photo: torch.Tensor, recipe: CropRecipe) -> bool:
    """Whether a photo ``[1, 3, h, w]`` is large enough for the recipe without being enlarged more than
    1.5x (whole pictures: its long side; crops: its short side)."""
    h, w = photo.shape[-2:]
    side = max(h, w) if recipe.whole else min(h, w)
    return side * recipe.max_fraction * 1.5 >= recipe.size


def render_dataset(photos_dir, out_dir, count: int, teacher: Callable[[torch.Tensor, int], torch.Tensor],
                   teacher_params: dict, recipe: CropRecipe, *, resume: bool = False, shard=None,
                   progress: Callable[[int, int], None] | None = None, min_photos: int = 1) -> dict:
    """Render pairs ``0..count-1`` (this shard's part) into ``out_dir``.

    ``teacher(x [1, 3, S, S], index) -> dream [1, 3, S, S]`` must be deterministic per index.
    ``teacher_params`` (JSON-able) is saved in ``teacher.json`` with the crop recipe and the photos;
    resuming checks that they match. Returns ``{"rendered", "skipped", "indices", "seconds_per_pair"}``.
    """
    import time

    recipe.validate()
    k, n = parse_shard(shard)
    if not isinstance(count, int) or count < 1:
        raise FastdreamError(f"count must be a whole number >= 1, got {count!r}")
    files = list_photos(photos_dir)
    from fastdream.imageio import load_image

    loaded = [(f, load_image(f)[0]) for f in files]
    kept = [(f, p) for f, p in loaded if usable(p, recipe)]
    if len(kept) < min_photos:
        side = "long" if recipe.whole else "short"
        raise InputError(f"{photos_dir}: {len(kept)} usable photos found ({len(loaded)} pictures, of which "
                         f"{len(loaded) - len(kept)} are too small: under {recipe.size / (1.5 * recipe.max_fraction):.0f} "
                         f"pixels on the {side} side); {min_photos} needed")
    files, photos = [f for f, _ in kept], [p for _, p in kept]
    out = pathlib.Path(out_dir)
    meta = {
        "format": "fastdream-distill-pairs-v1",
        "layout": "pair_NNNNNN.png: input crop left, teacher dream right, RGB 8-bit",
        "teacher": teacher_params,
        "crop": dataclasses.asdict(recipe),
        "photos": [{"name": f.name, "sha256_16": _file_digest(f), "size": list(p.shape[-2:][::-1])}
                   for f, p in zip(files, photos)],
    }
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if out.is_dir() and (out / TEACHER_FILE).exists():
        old = read_teacher(out)
        keys = ("format", "teacher", "crop", "photos")
        new = json.loads(json.dumps(meta, default=str))
        if any(new[kk] != old.get(kk) for kk in keys):
            raise InputError(f"{out}: holds pairs rendered with other teacher, crop or photo settings "
                             f"({_differences(old, new, keys)}); use the same flags, or another folder")
        if not resume and list_pairs(out):
            raise InputError(f"{out}: already holds pairs; pass --resume to continue, or use another folder")
    elif out.is_dir() and list_pairs(out):
        raise InputError(f"{out}: holds pairs but no {TEACHER_FILE}; use another folder")
    if not out.parent.is_dir():
        raise InputError(f"{out}: the folder {out.parent} does not exist")
    out.mkdir(exist_ok=True)
    if not (out / TEACHER_FILE).exists():
        from fastdream.imageio import atomic_write

        text = json.dumps(meta, indent=2, default=str) + "\n"
        atomic_write(out / TEACHER_FILE, lambda tmp: pathlib.Path(tmp).write_text(text))
    indices = [i for i in range(count) if i % n == k]
    done = list_pairs(out)
    todo = [i for i in indices if i not in done]
    rendered, t0 = 0, time.perf_counter()
    if progress is not None:
        progress(len(indices) - len(todo), len(indices))
    for i in todo:
        x, _ = draw_crop(photos, i, recipe)
        x = quantize(x)
        y = teacher(x, i)
        save_pair(out / pair_name(i), x, y)
        rendered += 1
        if progress is not None:
            progress(len(indices) - len(todo) + rendered, len(indices))
    secs = time.perf_counter() - t0
    return {"rendered": rendered, "skipped": len(indices) - len(todo), "indices": len(indices),
            "seconds_per_pair": (secs / rendered) if rendered else None}


def dream_teacher(backbone, objective, cfg, max_size=None) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """The iterative dream as a pair renderer: pair ``i`` is dreamed with seed ``cfg.seed + i``."""
    from fastdream.engine.dream import dream_tensor

    def teacher(x: torch.Tensor, index: int) -> torch.Tensor:
        # NCHW layout: the native dream_step takes contiguous NCHW gradients (same values either way)
        c = dataclasses.replace(cfg, seed=(cfg.seed or 0) + index, channels_last=False)
        dev = next(iter(backbone.buffers())).device if any(True for _ in backbone.buffers()) else "cpu"
        out, _ = dream_tensor(x.to(dev), objective, backbone, c, max_size=max_size)
        return out.cpu()

    return teacher
