"""Reading and writing pictures: modes, EXIF orientation, ICC, alpha, bad files, atomic writes."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from fastdream.errors import InputError
from fastdream.imageio import check_output_path, load_image, save_image


def _rgb(h=20, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "CMYK", "RGBA", "LA", "I;16"])
def test_load_image_modes(tmp_path, mode):
    a = _rgb()
    img = Image.fromarray(a, "RGB")
    if mode == "I;16":
        img = Image.fromarray((a[..., 0].astype(np.uint16) * 257)).convert("I;16")
    elif mode != "RGB":
        img = img.convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    img.save(path)
    t, meta = load_image(path)
    assert t.shape == (1, 3, 20, 30) and t.dtype == torch.float32
    assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    assert float(t.std()) > 0.05  # real content, not a blank conversion
    assert (meta.alpha is not None) == (mode in ("RGBA", "LA"))
    if mode == "I;16":
        np.testing.assert_allclose(t[0, 0].numpy(), a[..., 0] / 255.0, atol=1e-4)


def test_exif_orientation_round_trip(tmp_path):
    a = _rgb(20, 30)
    img = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif.tobytes(), quality=100, subsampling=0)
    t, meta = load_image(path)
    assert meta.orientation == 6
    assert t.shape[-2:] == (30, 20)  # display orientation: portrait
    out = tmp_path / "out.jpg"
    save_image(t, out, meta)
    back = Image.open(out)
    assert back.size == (30, 20)  # stored orientation like the input
    assert back.getexif().get(0x0112) == 6
    assert np.abs(np.asarray(back, dtype=float) - a).mean() < 6


def test_icc_alpha_and_params_kept(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    a = np.concatenate([_rgb(), np.full((20, 30, 1), 128, np.uint8)], axis=2)
    path = tmp_path / "a.png"
    Image.fromarray(a, "RGBA").save(path, icc_profile=icc)
    t, meta = load_image(path)
    out = tmp_path / "o.png"
    save_image(t, out, meta, params={"layer": "block9"})
    back = Image.open(out)
    assert back.mode == "RGBA" and back.info.get("icc_profile") == icc
    assert np.asarray(back)[..., 3].tolist() == a[..., 3].tolist()
    assert json.loads(back.text["fastdream"]) == {"layer": "block9"}
    jp = tmp_path / "o.jpg"
    save_image(t, jp, meta, params={"seed": 3})
    assert b'"seed": 3' in Image.open(jp).info["comment"]


@pytest.mark.parametrize("case", ["missing", "empty", "text", "truncated", "bomb", "folder"])
def test_bad_files(tmp_path, case):
    p = tmp_path / "bad.png"
    if case == "empty":
        p.write_bytes(b"")
    elif case == "text":
        p.write_text("this is not a picture\n")
    elif case == "truncated":
        Image.fromarray(_rgb(64, 64)).save(p)
        p.write_bytes(p.read_bytes()[:200])
    elif case == "bomb":
        Image.new("1", (20000, 20000)).save(p)  # 400 Mpx, tiny file
    elif case == "folder":
        p = tmp_path
    with pytest.raises(InputError, match={"missing": "no such file", "empty": "empty file", "text": "not a picture",
                                          "truncated": "cannot read", "bomb": "too large",
                                          "folder": "folder"}[case]):
        load_image(p)


def test_output_path_checks(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        check_output_path(tmp_path / "nope" / "x.png")
    with pytest.raises(InputError, match="cannot write '.xyz'"):
        check_output_path(tmp_path / "x.xyz")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(InputError, match="not writable"):
            check_output_path(ro / "x.png")
    finally:
        ro.chmod(0o700)


def test_save_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "o.png"
    t = torch.rand(1, 3, 8, 8)

    def boom(self, fp, *a, **k):
        with open(fp, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError):
        save_image(t, out)
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary file is left
