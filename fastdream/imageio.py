"""Reading and writing pictures the way people have them: any mode Pillow reads, EXIF orientation,
ICC profiles, alpha; outputs written to a temporary name and renamed, with the parameters embedded."""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import stat
import tempfile
import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from fastdream.errors import InputError

# Pictures above this many pixels are refused as decompression bombs: Pillow's own error threshold
# (2x its 89.5 Mpx warning), so that both checks give the same message; 16k x 8k = 134 Mpx still opens.
MAX_PIXELS = 2 * 89_478_485

WRITERS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
           ".bmp": "BMP"}
READABLE = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"}


@dataclasses.dataclass
class ImageMeta:
    """What a picture carried besides its RGB pixels, to be written back with the result."""

    size: tuple[int, int]                 # (width, height) as stored in the file
    orientation: int = 1                  # EXIF orientation (1 = none)
    exif: bytes | None = None
    icc_profile: bytes | None = None
    alpha: np.ndarray | None = None       # [H, W] uint8 in display orientation
    format: str | None = None
    mode: str = "RGB"


def _to_rgb_float(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB float32 [H, W, 3] in [0, 1] and the alpha channel (uint8) if any, for any Pillow mode."""
    alpha = None
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        g = np.clip(a / peak, 0.0, 1.0)
        return np.repeat(g[..., None], 3, axis=2), None
    if mode == "F":
        g = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(g[..., None], 3, axis=2), None
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        alpha = np.asarray(img.getchannel("A"), dtype=np.uint8).copy()
    rgb = img.convert("RGB")
    return np.asarray(rgb, dtype=np.float32) / 255.0, alpha


def check_input_file(path, what: str = "picture") -> pathlib.Path:
    """Refuse a missing file, a folder or an empty file with one clear line."""
    p = pathlib.Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a {what}")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file")
    return p


def check_output_folder(p: pathlib.Path) -> pathlib.Path:
    """The folder of output path ``p`` exists and is writable, and ``p`` is not a folder itself."""
    folder = p.parent if str(p.parent) else pathlib.Path(".")
    if not folder.is_dir():
        raise InputError(f"{p}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{p}: the folder {folder} is not writable")
    if p.is_dir():
        raise InputError(f"{p}: is a folder")
    return p


def _too_large(p, what: str) -> str:
    return f"{p}: {what} is too large (limit {MAX_PIXELS / 1e6:.0f} Mpx; a decompression bomb?)"


def open_image(path) -> Image.Image:
    """Open a picture file with clear errors for missing, unreadable, truncated or oversized files."""
    p = check_input_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(p)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise InputError(_too_large(p, f"{w}x{h} pixels"))
            if w == 0 or h == 0:
                raise InputError(f"{p}: the picture has no pixels ({w}x{h})")
            img.load()
    except InputError:
        raise
    except Image.DecompressionBombError as e:  # Pillow's check, from the header, before ours
        n = re.search(r"\((\d+) pixels\)", str(e))
        raise InputError(_too_large(p, f"{int(n.group(1)) / 1e6:.0f} Mpx" if n else "the picture")) from None
    except UnidentifiedImageError:
        raise InputError(f"{p}: not a picture Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{p}: cannot read the picture ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return img


def load_image(path) -> tuple[torch.Tensor, ImageMeta]:
    """Read a picture as a float32 tensor ``[1, 3, H, W]`` in [0, 1] in display orientation.

    Handles every mode Pillow reads (CMYK, palette, 16-bit, grayscale, alpha: kept in ``meta.alpha``),
    the first frame of animated files, and EXIF orientation (undone by ``save_image``).
    """
    img = open_image(path)
    meta = ImageMeta(size=img.size, format=img.format, mode=img.mode, icc_profile=img.info.get("icc_profile"))
    try:
        exif = img.getexif()
        meta.orientation = int(exif.get(0x0112, 1) or 1)
        meta.exif = exif.tobytes() if len(exif) else None
    except Exception:  # a broken EXIF block: ignore it, keep the pixels
        meta.orientation, meta.exif = 1, None
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    if img.mode == "CMYK" and meta.icc_profile is None:
        pass  # Pillow's naive CMYK->RGB conversion is used below
    if meta.orientation != 1:
        img = ImageOps.exif_transpose(img)
    if img.mode in ("RGB", "RGBA", "LA", "L", "P", "PA", "CMYK", "YCbCr"):
        # 8-bit pictures go through uint8 (a quarter of the memory of float) until the final division
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA") if img.mode != "LA" else img
            meta.alpha = np.asarray(rgba.getchannel("A"), dtype=np.uint8).copy()
        a = np.asarray(img.convert("RGB"), dtype=np.uint8)
        with warnings.catch_warnings():  # read-only view: only read, then copied by .contiguous()
            warnings.simplefilter("ignore", UserWarning)
            u8 = torch.from_numpy(a)
        t = u8.permute(2, 0, 1).contiguous().unsqueeze(0).float().div_(255.0)
        return t, meta
    rgb, alpha = _to_rgb_float(img)
    meta.alpha = alpha
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).contiguous()
    return t, meta


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    rgb, _ = _to_rgb_float(img)
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[1, 3, H, W]`` or ``[3, H, W]`` float in [0, 1] -> ``[H, W, 3]`` uint8 (rounded)."""
    if x.dim() == 4:
        x = x[0]
    y = x.detach().float().clamp(0, 1)  # the only float copy: the rest happens in place (big pictures)
    a = y.mul_(255.0).round_().to(torch.uint8)
    del y
    return np.ascontiguousarray(a.permute(1, 2, 0).cpu().numpy())


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    return Image.fromarray(tensor_to_uint8(x), "RGB")


_INVERSE_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                      4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                      6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
                      8: Image.Transpose.ROTATE_270}


def check_output_path(path, kinds=WRITERS) -> pathlib.Path:
    """Refuse an output path before any work is done: unknown extension, missing or read-only folder."""
    p = pathlib.Path(path)
    ext = p.suffix.lower()
    if ext not in kinds:
        raise InputError(f"{p}: cannot write '{ext or '(no extension)'}' files; use one of "
                         + ", ".join(sorted(kinds)))
    return check_output_folder(p)


def _umask() -> int:
    """The process's umask: read from /proc where there is one (os.umask can only be read by setting it,
    which would race with other threads), else set and restored at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def output_mode(path) -> int:
    """The permission bits an output at ``path`` gets: those of the file it replaces, else what a plain
    ``open(path, "w")`` would give (0666 with the umask applied)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def replace_output(tmp, path) -> None:
    """Move the finished temporary file ``tmp`` onto ``path`` (atomic rename), with ``output_mode(path)``:
    temporary files are created 0600, which an output must not keep. Every writer ends here."""
    os.chmod(tmp, output_mode(path))
    os.replace(tmp, path)


def atomic_write(path, write_fn) -> None:
    """Call ``write_fn(tmp_path)`` then rename onto ``path``: the output is complete or absent."""
    p = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part" + p.suffix, dir=p.parent or ".")
    os.close(fd)
    try:
        write_fn(tmp)
        replace_output(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_image(x: torch.Tensor, path, meta: ImageMeta | None = None, params: dict[str, Any] | None = None,
               quality: int = 95) -> None:
    """Write ``x`` (``[1, 3, H, W]`` in [0, 1], display orientation) to ``path`` atomically, restoring
    the source's EXIF orientation, ICC profile and alpha, with ``params`` in a PNG text chunk / JPEG
    comment."""
    p = check_output_path(path)
    fmt = WRITERS[p.suffix.lower()]
    img = tensor_to_pil(x)
    if meta is not None and meta.alpha is not None and fmt in ("PNG", "WEBP", "TIFF"):
        a = Image.fromarray(meta.alpha, "L")
        if a.size != img.size:
            a = a.resize(img.size, Image.Resampling.BILINEAR)
        img.putalpha(a)
    if meta is not None and meta.orientation in _INVERSE_TRANSPOSE:
        img = img.transpose(_INVERSE_TRANSPOSE[meta.orientation])
    kwargs: dict[str, Any] = {}
    if meta is not None and meta.icc_profile and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kwargs["icc_profile"] = meta.icc_profile
    if meta is not None and meta.exif and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kwargs["exif"] = meta.exif
    text = json.dumps(params, sort_keys=True, default=str) if params else None
    if fmt == "PNG":
        if text:
            info = PngImagePlugin.PngInfo()
            info.add_text("fastdream", text)
            kwargs["pnginfo"] = info
    elif fmt == "JPEG":
        kwargs.update(quality=quality, subsampling=0 if quality >= 90 else 2)
        if text:
            kwargs["comment"] = ("fastdream " + text).encode()
    elif fmt == "WEBP":
        kwargs.update(quality=quality)
    atomic_write(p, lambda tmp: img.save(tmp, format=fmt, **kwargs))
