"""fastdream zoom INPUT -o OUT.mp4|OUT.gif|FOLDER|f_%05d.png --frames N: the feedback zoom (dream, zoom/turn/move, dream again)."""
from __future__ import annotations

import argparse
import pathlib
import time

from fastdream.cli.common import Progress, add_dream_options, dream_setup, number
from fastdream.errors import InputError


LIGHT = {"octaves": 2, "steps": 5}  # a zoom dreams every frame: lighter than a single picture without a preset


def _pair(s: str):
    try:
        parts = [float(v) for v in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected DX,DY in pixels, got {s!r}")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected DX,DY in pixels, got {s!r}")
    return tuple(parts)


def add_parser(sub):
    from fastdream.presets import describe

    p = sub.add_parser("zoom", help="feedback zoom video from a picture", description=(
        "The feedback zoom: dream the picture, zoom into it (and turn / move it), dream again, N times. "
        "The transform is an affine resampling of the picture tensor on the device. A zoom usually wants "
        "a lighter dream per frame than `fastdream dream` (defaults here: 2 octaves, 5 steps)."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="the starting picture")
    p.add_argument("-o", "--output", required=True,
                   help="OUT.mp4 (.mov .mkv .webm .avi), OUT.gif, a folder or a frame_%%05d.png pattern (PNG frames)")
    p.add_argument("--frames", type=number(int, 1, 100000), default=48, help="number of frames (default 48)")
    p.add_argument("--fps", type=number(float, 0, 240, lo_open=True), default=24.0, help="frame rate (default 24)")
    p.add_argument("--zoom", type=number(float, 0.5, 2.0), default=1.04,
                   help="zoom factor per frame (>1 zooms in; default 1.04)")
    p.add_argument("--rotate", type=number(float, -180, 180), default=0.0,
                   help="turn per frame in degrees, counter-clockwise (default 0)")
    p.add_argument("--translate", type=_pair, default=(0.0, 0.0), metavar="DX,DY",
                   help="move per frame in pixels (right, down)")
    p.add_argument("--size", help="resize the picture to WxH first (default: its own size, made even)")
    p.add_argument("--codec", help="video codec (default libx264; ignored for .gif)")
    p.add_argument("--crf", type=number(int, 0, 63), default=18, help="x264/vp9 quality (default 18)")
    p.add_argument("--report", help="write a JSON report here")
    add_dream_options(p, describe(), own_defaults=LIGHT)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    import torch

    from fastdream.convert import resolve_device
    from fastdream.imageio import load_image
    from fastdream.video import io as vio
    from fastdream.video.coherence import DreamProcessor, to_uint8
    from fastdream.video.streams import parse_size
    from fastdream.video.zoom import zoom_frames

    t_start = time.perf_counter()
    out = pathlib.Path(args.output)
    png = vio.is_png_sequence(out)
    if png:
        vio.PngSequenceWriter(out).abort()  # checks the folder or pattern now, before any work
    elif vio.container_format(out) not in ("mp4", "mov", "matroska", "webm", "avi", "gif"):
        raise InputError(f"{out}: zoom writes a video file (.mp4 .mov .mkv .webm .avi .gif), a folder or a "
                         "frame_%05d.png pattern")
    if args.report:
        rp = pathlib.Path(args.report)
        if str(rp) != "-" and not rp.parent.is_dir():
            raise InputError(f"{rp}: the folder {rp.parent} does not exist")
    x, _ = load_image(args.input)
    if args.size:
        w, h = parse_size(args.size)
        x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    H, W = x.shape[-2:]
    if (H % 2 or W % 2) and out.suffix.lower() != ".gif" and not png:  # yuv420p wants even sizes
        H, W = H - H % 2, W - W % 2
        x = x[..., :H, :W].contiguous()
    if H < 16 or W < 16:
        raise InputError(f"{args.input}: {W}x{H} is too small for a zoom")
    codec = "png" if png else vio.check_video_output(out, args.codec if out.suffix.lower() != ".gif" else None,
                                                     W, H, args.fps)
    # a zoom dreams every frame: lighter defaults than a single picture
    for k, v in LIGHT.items():
        if getattr(args, k) is None and args.preset is None:
            setattr(args, k, v)
    device = resolve_device(args.device)
    backbone, objective, cfg, params = dream_setup(args, (H, W), device)
    proc = DreamProcessor(backbone, objective, cfg, max_size=args.max_size)
    writer = vio.PngSequenceWriter(out) if png else vio.open_writer(out, W, H, args.fps, codec=codec, crf=args.crf)
    secs = []
    bar = Progress(args.frames, "zoom", unit="frame")
    try:
        t = time.perf_counter()
        for f in zoom_frames(x.to(device), proc, args.frames, zoom=args.zoom, rotate=args.rotate,
                             translate=args.translate):
            writer.write(to_uint8(f))
            now = time.perf_counter()
            secs.append(now - t)
            t = now
            bar.update(1)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    if args.report:
        from fastdream.report import peak_rss_mb, write_report

        write_report(args.report, {
            "input": str(args.input), "output": str(out), "codec": codec, "size": [W, H],
            "frames_out": len(secs), "fps_out": args.fps,
            "zoom": args.zoom, "rotate": args.rotate, "translate": list(args.translate),
            "seconds_per_frame": round(sum(secs) / len(secs), 4), "seconds": round(time.perf_counter() - t_start, 3),
            "device": str(device), "peak_rss_mb": round(peak_rss_mb(), 1), "params": params,
        })
    return 0
