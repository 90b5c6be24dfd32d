"""What a client sends, checked before anything else happens: the request's size, the uploaded
pictures (header first, then a full decode), the form's dream settings (only names and numbers, never
paths), and the objects a dream request is made of (checked against the backbone: a bad name is a 400,
not a failed job).

The form's fields become objects here (``Layer``, ``ClassLogit``, ``Box``, ``Term``); the web page never
builds the command line's strings for a parser to read back.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
import warnings

from starlette.datastructures import UploadFile
from starlette.requests import Request

from fastdream.engine.objectives import LAYER_KINDS as KINDS
from fastdream.errors import FastdreamError, InputError

# Picture formats an upload may have (Pillow's names), whatever the client says its type is.
UPLOAD_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}
NAME = re.compile(r"[A-Za-z0-9_.]{1,64}")
CLASS = re.compile(r"[A-Za-z0-9 _'\-,.()]{1,64}")


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# -- uploads -----------------------------------------------------------------------------------------
async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it grows past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"the upload is {int(declared) / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(f"the upload is larger than the limit of {limit / 1e6:.0f} MB", 413)
    return bytes(body)


def load_upload(data: bytes, what: str, max_pixels: int):
    """Bytes from the client -> ``[1, 3, H, W]`` tensor, with the same checks as files on disk."""
    import io

    from PIL import Image, UnidentifiedImageError

    from fastdream.imageio import load_image

    if not data:
        raise InputError(f"{what}: the file is empty")
    try:  # the header only: format and size, before anything is decoded
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                fmt, (w, h) = im.format, im.size
    except Image.DecompressionBombError:  # Pillow's own check, above any max_pixels this server takes
        raise InputError(f"{what}: the picture is more than the limit of {max_pixels / 1e6:.0f} Mpx "
                         "(a decompression bomb?)") from None
    except UnidentifiedImageError:
        raise InputError(f"{what}: this file is not a picture (send a JPEG, PNG, WebP, GIF, BMP or TIFF)") from None
    except Exception as e:
        raise InputError(f"{what}: the file cannot be read ({type(e).__name__})") from None
    if fmt not in UPLOAD_FORMATS:
        raise InputError(f"{what}: a {fmt} file; send a JPEG, PNG, WebP, GIF, BMP or TIFF picture")
    if w * h > max_pixels:
        raise InputError(f"{what}: {w}x{h} pixels is more than the limit of {max_pixels / 1e6:.0f} Mpx "
                         "(a decompression bomb?)")
    # A server-chosen name in a private folder, removed at once: the client's file name is never used.
    fd, tmp = tempfile.mkstemp(prefix="fastdream-upload-", suffix=".img")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            x, _meta = load_image(tmp)
        except InputError as e:
            raise InputError(f"{what}: " + str(e).split(": ", 1)[-1]) from None
    finally:
        os.unlink(tmp)
    return x


# -- form fields -------------------------------------------------------------------------------------
def field(form, name: str, default=None):
    v = form.get(name)
    if v is None or isinstance(v, UploadFile):
        return default
    v = v.strip()
    return v if v != "" else default


def num(form, name: str, kind, lo, hi, default=None):
    v = field(form, name)
    if v is None:
        return default
    try:
        x = kind(v)
    except ValueError:
        raise BadRequest(f"{name}: expected {'a whole number' if kind is int else 'a number'}, got {v[:20]!r}")
    if isinstance(x, float) and not math.isfinite(x) or not lo <= x <= hi:
        raise BadRequest(f"{name}: must be between {lo} and {hi}, got {v[:20]}")
    return x


def region(form) -> tuple[float, float, float, float] | None:
    """The form's ``region``: ``x0,y0,x1,y1`` as fractions of the picture (0..1), or None."""
    v = field(form, "region")
    if v is None:
        return None
    try:
        box = [float(p) for p in v.split(",")]
    except ValueError:
        box = []
    if len(box) != 4 or not all(math.isfinite(b) and 0 <= b <= 1 for b in box) \
            or not (box[0] < box[2] and box[1] < box[3]):
        raise BadRequest(f"region: expected x0,y0,x1,y1 as fractions of the picture (0..1), got {v[:60]!r}")
    return tuple(round(b, 4) for b in box)


def layer_name(value, message: str) -> tuple[str, str] | None:
    """A layer field ``NAME[:KIND]`` -> (name, kind), or None when empty; ``message`` on anything else."""
    if value is None:
        return None
    name, _, kind = str(value).partition(":")
    if not NAME.fullmatch(name) or (kind and kind not in KINDS):
        raise BadRequest(f"{message}, got {str(value)[:40]!r}")
    return name, kind or "l2"


def class_name(value) -> str | None:
    if value is not None and not CLASS.fullmatch(str(value)):
        raise BadRequest(f"class: expected an ImageNet class name or index, got {str(value)[:40]!r}")
    return value


def preset_name(value) -> str | None:
    from fastdream.presets import PRESETS

    if value is not None and (not isinstance(value, str) or value not in PRESETS):
        raise BadRequest(f"preset: unknown preset {str(value)[:40]!r}; choose from {', '.join(PRESETS)}")
    return value


def parse_settings(form, cfg) -> dict:
    """Dream settings from the form, validated; only names and numbers, never paths. ``cfg``: the
    server's ``ServerConfig`` (its limits)."""
    preset = preset_name(field(form, "preset"))
    layer = field(form, "layer")
    layer_name(layer, "layer: expected a layer name such as block9 (optionally :l2, :mean...)")
    cls = class_name(field(form, "class"))
    overrides = {
        "octaves": num(form, "octaves", int, 1, 12),
        "octave_scale": num(form, "octave_scale", float, 1.01, 4.0),
        "steps": num(form, "steps", int, 0, cfg.max_steps),
        "step_size": num(form, "step_size", float, 1e-6, 10.0),
        "jitter": num(form, "jitter", int, 0, 512),
        "seed": num(form, "seed", int, 0, 2**31 - 1, 0),
        # the page's "dream size" is for speed: no steps at full size unless asked (the CLI's --max-size
        # finishes with half the steps there by default)
        "finish_steps": num(form, "finish_steps", int, 0, cfg.max_steps, 0),
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    max_size = num(form, "max_size", int, 16, cfg.max_side, None)
    box = region(form)
    return {"preset": preset, "layer": layer, "class": cls,
            "region": None if box is None else ",".join(f"{b:.4f}" for b in box), "box": box,
            "overrides": overrides, "max_size": max_size,
            "guide_weight": num(form, "guide_weight", float, -100, 100, 1.0)}


# -- objects -----------------------------------------------------------------------------------------
def objective_terms(backbone, size, layer=None, cls=None, box=None, preset_layers=(), guide: bool = False):
    """The dream's Terms from the form's names, checked against ``backbone``; messages name the form's
    fields. ``layer``: (name, kind); ``box``: (x0, y0, x1, y1) fractions, where the objective applies
    (with neither a layer nor a class nor a guide, the preset's layers there)."""
    from fastdream.engine.compose import Term, check_box_size, check_layer
    from fastdream.engine.objectives import Box, ClassLogit, Layer

    reg = None
    if box is not None:
        reg = Box(*box)
        try:
            check_box_size(reg, size)
        except FastdreamError as e:
            raise FastdreamError(f"region: {e}") from None
    terms = []
    if layer is not None:
        try:
            check_layer(backbone, layer[0])
        except FastdreamError as e:
            raise FastdreamError(f"layer: {e}") from None
        terms.append(Term(Layer(*layer), region=reg))
    if cls is not None:
        try:
            idx = backbone.class_index(cls)
        except FastdreamError as e:
            raise FastdreamError(f"class: {e}") from None
        terms.append(Term(ClassLogit(idx, backbone.class_names[idx] if backbone.class_names else None), region=reg))
    if reg is not None and not terms and not guide:
        for name in preset_layers:  # a region with the preset's objective
            try:
                check_layer(backbone, name)
            except FastdreamError as e:
                raise FastdreamError(f"preset: {e}") from None
            terms.append(Term(Layer(name), region=reg))
    return terms


def build_request(settings: dict, picture, guide, cfg, backbone):
    """A DreamRequest whose objective objects are checked against the backbone now (a 400, not a
    failed job)."""
    from fastdream.engine.objectives import Box
    from fastdream.presets import make_config
    from fastdream.web.jobs import DreamRequest

    H, W = picture.shape[-2:]
    if max(H, W) > cfg.max_side and (settings["max_size"] is None or settings["max_size"] > cfg.max_side):
        settings["max_size"] = cfg.max_side  # the server's cap; the detail is added back at full size
    if max(H, W) > cfg.max_side:  # no step runs above the server's cap: no finishing steps at full size
        settings["overrides"]["finish_steps"] = 0
    _, preset_layers = make_config(settings["preset"], **settings["overrides"])
    layer = layer_name(settings["layer"], "layer: expected a layer name such as block9")
    terms = objective_terms(backbone, (H, W), layer, settings["class"], settings["box"], preset_layers,
                            guide=guide is not None)
    params = {k: settings[k] for k in ("preset", "layer", "class", "region", "max_size")}
    params.update(settings["overrides"])
    params["guide"] = guide is not None
    return DreamRequest(picture=picture, preset=settings["preset"], terms=terms, guide=guide,
                        guide_weight=settings["guide_weight"],
                        guide_region=None if settings["box"] is None else Box(*settings["box"]),
                        overrides=settings["overrides"], max_size=settings["max_size"], params=params)
