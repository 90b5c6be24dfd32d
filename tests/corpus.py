"""Small builders of bad (and oddly shaped but good) input files for tests/test_corpus.py.

Everything is made on the spot in a temporary folder: nothing is downloaded, each file is a few KB.
Each builder takes the folder and returns the path it wrote.
"""
from __future__ import annotations

import io
import os
import pathlib
import struct
import zlib

import numpy as np
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
PHOTO = HERE / "data" / "chelsea_224.jpg"


def photo(size=(64, 48), mode="RGB") -> Image.Image:
    """The test photo (a cat) at ``size`` (W, H): real content, so dreams have something to amplify."""
    img = Image.open(PHOTO).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    return img if mode == "RGB" else img.convert(mode)


# -- broken files --------------------------------------------------------------------------------------
def zero_byte(d, name="empty.png"):
    p = pathlib.Path(d) / name
    p.write_bytes(b"")
    return p


def text_as_png(d):
    p = pathlib.Path(d) / "text.png"
    p.write_text("this is not a picture\n")
    return p


def truncated_png(d):
    p = pathlib.Path(d) / "trunc.png"
    buf = io.BytesIO()
    photo().save(buf, "PNG")
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return p


def truncated_jpeg(d):
    p = pathlib.Path(d) / "trunc.jpg"
    buf = io.BytesIO()
    photo().save(buf, "JPEG", quality=90)
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    return p


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(d, width=100_000, height=100_000):
    """A valid PNG header declaring ``width`` x ``height`` pixels (10 Gpx) with almost no data: a
    decompression bomb's declared size, without the 100 MB a real one would take to make."""
    p = pathlib.Path(d) / "bomb.png"
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 64)
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return p


def onnx_not_a_filter(d):
    """A valid ONNX model that is not a fastdream filter: one input of rank 2, output is Identity."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "not_a_filter", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8  # loadable by older ONNX Runtime builds too: the model must load, and then be refused
    p = pathlib.Path(d) / "identity.onnx"
    onnx.save(m, str(p))
    return p


def garbage_onnx(d):
    p = pathlib.Path(d) / "garbage.onnx"
    p.write_bytes(os.urandom(300))
    return p


def corrupt_checkpoint(d):
    """A real torch checkpoint cut in half (a zip archive missing its directory)."""
    import torch

    p = pathlib.Path(d) / "corrupt.pt"
    buf = io.BytesIO()
    torch.save({"state_dict": {"w": torch.ones(64, 64)}}, buf)
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return p


def wrong_checkpoint(d):
    """A readable checkpoint whose tensors fit no backbone."""
    import torch

    p = pathlib.Path(d) / "wrong.pt"
    torch.save({"state_dict": {"w": torch.ones(3, 3)}}, p)
    return p


def text_as_checkpoint(d):
    p = pathlib.Path(d) / "notes.pt"
    p.write_text("weights: none\n")
    return p


# -- odd but valid pictures ----------------------------------------------------------------------------
def tiny_1x1(d):
    p = pathlib.Path(d) / "one.png"
    Image.new("RGB", (1, 1), (200, 100, 50)).save(p)
    return p


def sliver_1x10000(d):
    """1 pixel wide, 10,000 tall."""
    p = pathlib.Path(d) / "sliver.png"
    a = (np.arange(10000, dtype=np.uint8)[:, None, None] * np.ones((1, 1, 3), np.uint8))
    Image.fromarray(np.ascontiguousarray(a), "RGB").save(p)
    return p


def gray16(d):
    p = pathlib.Path(d) / "gray16.png"
    a = np.asarray(photo(mode="L"), dtype=np.uint16) * 257
    Image.fromarray(a).save(p)  # mode I;16
    return p


def cmyk_jpeg(d):
    p = pathlib.Path(d) / "cmyk.jpg"
    photo(mode="CMYK").save(p, quality=95)
    return p


def palette_png(d):
    p = pathlib.Path(d) / "palette.png"
    img = photo().quantize(32)
    img.info["transparency"] = 0
    img.save(p, transparency=0)
    return p


def la_png(d):
    p = pathlib.Path(d) / "la.png"
    photo(mode="LA").save(p)
    return p


def rgba_png(d):
    p = pathlib.Path(d) / "rgba.png"
    img = photo(mode="RGBA")
    a = np.full((img.height, img.width), 255, np.uint8)
    a[:, : img.width // 2] = 128
    img.putalpha(Image.fromarray(a, "L"))
    img.save(p)
    return p


def animated_gif(d):
    """Three frames: the photo, then solid red, then solid blue (the first frame is the one used)."""
    p = pathlib.Path(d) / "anim.gif"
    frames = [photo(), Image.new("RGB", (64, 48), (255, 0, 0)), Image.new("RGB", (64, 48), (0, 0, 255))]
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return p


def exif_rotated_jpeg(d):
    """Stored 64x48, EXIF orientation 6 (display: turned 90 degrees clockwise, 48x64)."""
    p = pathlib.Path(d) / "rotated.jpg"
    img = photo()
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(p, quality=95, exif=exif.tobytes())
    return p


def non_utf8_name(d):
    """A picture whose file name is not valid UTF-8 (bytes 0xff 0xfe); returned as the str Python
    makes of such a name (surrogate escapes), which is what sys.argv holds for it."""
    raw = os.fsencode(str(d)) + b"/pic\xff\xfe.png"
    with open(raw, "wb") as f:
        photo().save(f, "PNG")
    return pathlib.Path(os.fsdecode(raw))


# -- video ---------------------------------------------------------------------------------------------
def tiny_clip(d, name="clip.mp4", frames=6, size=(64, 48), fps=12):
    """A short H.264 clip: the photo panning right by 2 pixels a frame."""
    import av

    W, H = size
    big = np.asarray(photo((W + 2 * frames + 4, H)))
    p = pathlib.Path(d) / name
    c = av.open(str(p), "w")
    v = c.add_stream("libx264", rate=fps)
    v.width, v.height, v.pix_fmt = W, H, "yuv420p"
    v.options = {"crf": "12"}
    for i in range(frames):
        f = np.ascontiguousarray(big[:, 2 * i:2 * i + W])
        for pkt in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            c.mux(pkt)
    for pkt in v.encode(None):
        c.mux(pkt)
    c.close()
    return p


def truncated_mp4(d):
    src = tiny_clip(d, name="whole.mp4")
    p = pathlib.Path(d) / "trunc.mp4"
    data = src.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


# -- folders of pictures (fastdream finetune) ------------------------------------------------------------
def class_folder(d, name="classes", per_class=4, bad_per_class=0):
    """``name/cats/*.png`` (the photo, shifted) and ``name/reds/*.png`` (reddish noise), plus
    ``bad_per_class`` unreadable files in each."""
    root = pathlib.Path(d) / name
    rng = np.random.default_rng(0)
    for cls in ("cats", "reds"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            if cls == "cats":
                img = photo((72, 54)).crop((i, i, i + 64, i + 48))
            else:
                a = rng.integers(0, 80, (48, 64, 3), dtype=np.uint8)
                a[..., 0] += 170
                img = Image.fromarray(a, "RGB")
            img.save(root / cls / f"{i}.png")
        for i in range(bad_per_class):
            (root / cls / f"bad{i}.png").write_text("not a picture")
    return root


def mostly_bad_class_folder(d):
    return class_folder(d, name="mostly_bad", per_class=1, bad_per_class=3)


def one_class_folder(d):
    root = class_folder(d, name="one_class")
    import shutil

    shutil.rmtree(root / "reds")
    return root


def flat_folder(d):
    """Pictures but no class subfolders."""
    root = pathlib.Path(d) / "flat"
    root.mkdir(exist_ok=True)
    photo().save(root / "a.png")
    return root
