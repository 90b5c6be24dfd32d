"""fastdream zoom: the affine transform on tensors, N frames out, video and GIF outputs."""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("av")

from conftest import DATA  # noqa: E402

from fastdream.cli.main import main  # noqa: E402
from fastdream.video import io as vio  # noqa: E402
from fastdream.video.zoom import affine_theta, transform, zoom_frames  # noqa: E402


def _picture(gen, h=40, w=64):
    x = torch.rand(1, 3, h // 4, w // 4, generator=gen)
    return torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def test_zoom_transform_translate_and_zoom(gen):
    x = _picture(gen)
    moved = transform(x, affine_theta((40, 64), translate=(4, 0)))
    assert torch.allclose(moved[..., 4:], x[..., :-4], atol=1e-5)   # content moves right by 4 px
    moved = transform(x, affine_theta((40, 64), translate=(0, -3)))
    assert torch.allclose(moved[..., :-3, :], x[..., 3:, :], atol=1e-5)  # and up by 3 px
    z = transform(x, affine_theta((40, 64), zoom=2.0))
    # zoom 2 about the centre: output (y, x) samples the input at the centre + half the offset
    ref = torch.nn.functional.interpolate(x[..., 10:30, 16:48], scale_factor=2, mode="bilinear", align_corners=False)
    assert (z - ref)[..., 2:-2, 2:-2].abs().max() < 1e-5
    assert torch.allclose(transform(x, affine_theta((40, 64))), x, atol=1e-5)


def test_zoom_rotation_keeps_angles(gen):
    x = torch.zeros(1, 3, 41, 81)
    x[..., 20, 40:70] = 1.0  # a horizontal line to the right of the centre
    r = transform(x, affine_theta((41, 81), rotate=90), padding="zeros")
    col = r[0, 0, :, 40]
    assert col[:20].sum() > 10 and col[22:].sum() < 1   # counter-clockwise: it now points up, same length


def test_zoom_frames_feedback(gen):
    x = _picture(gen)
    calls = []

    class P:
        name = "count"

        def at_frame(self, k):
            calls.append(k)

        def __call__(self, t):
            return t

    frames = list(zoom_frames(x, P(), 5, zoom=1.0, translate=(2, 0)))
    assert len(frames) == 5 and calls == [0, 1, 2, 3, 4]
    assert torch.allclose(frames[3][..., 6:], x[..., :-6], atol=1e-4)   # three moves of 2 px, fed back


def test_zoom_cli_mp4_and_gif(tmp_path):
    out, rep = tmp_path / "z.mp4", tmp_path / "r.json"
    assert main(["zoom", str(DATA / "chelsea_224.jpg"), "-o", str(out), "--frames", "4", "--fps", "12",
                 "--size", "64x48", "--zoom", "1.1", "--rotate", "2", "--steps", "0", "--octaves", "1",
                 "--report", str(rep)]) == 0
    info = vio.probe(out)
    assert (info.frames, info.fps, info.width, info.height) == (4, 12, 64, 48)
    frames = list(vio.FrameReader(out))
    assert abs(frames[0].astype(float) - frames[3]).mean() > 3   # the transform changed the picture
    assert json.loads(rep.read_text())["frames_out"] == 4
    gif = tmp_path / "z.gif"
    assert main(["zoom", str(DATA / "chelsea_224.jpg"), "-o", str(gif), "--frames", "3", "--size", "33x25",
                 "--steps", "0", "--octaves", "1"]) == 0
    from PIL import Image

    im = Image.open(gif)
    assert im.n_frames == 3 and im.size == (33, 25)


def test_zoom_cli_bad_output(tmp_path, capsys):
    rc = main(["zoom", str(DATA / "chelsea_224.jpg"), "-o", str(tmp_path / "z.png"), "--frames", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
