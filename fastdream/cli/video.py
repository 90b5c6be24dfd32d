"""fastdream video INPUT -o OUTPUT: dream every frame of a video, a camera, a URL or raw frames on stdin,
with temporal coherence (optical flow carries the previous dreamed frame onto the next)."""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

from fastdream.cli.common import add_dream_options, dream_setup, number
from fastdream.errors import InputError


def add_parser(sub):
    from fastdream.presets import describe

    p = sub.add_parser("video", help="dream a video, a camera or a stream with temporal coherence", description=(
        "Dream each frame of a video with temporal coherence: optical flow (OpenCV DIS) between consecutive "
        "input frames warps the previous dreamed frame onto the current one, occluded pixels are masked "
        "(forward-backward check), the result is blended with the frame (--blend) and dreamed. Files keep "
        "their frame rate, size, frame count and audio; jobs on files are resumable (--resume).\n\n"
        "INPUT: a video file, a camera index (0), a URL FFmpeg opens (rtsp://, http://...), or - for raw "
        "RGB24 frames on stdin (--size WxH --fps F).\n"
        "OUTPUT: a video file (.mp4 .mov .mkv .webm .avi .gif), a folder or frame_%%05d.png pattern (PNG "
        "sequence), or - for raw RGB24 frames on stdout."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="video file, camera index, URL, or - (raw RGB24 on stdin)")
    p.add_argument("-o", "--output", help="video file, PNG folder or pattern, or - (raw RGB24 on stdout)")
    p.add_argument("--report", help="write a JSON report here")
    c = p.add_argument_group("coherence")
    c.add_argument("--blend", type=number(float, 0, 1), default=0.5,
                   help="weight of the warped previous dreamed frame in the next frame's start (default 0.5)")
    c.add_argument("--smooth", type=number(float, 0, 0.95), default=0.5,
                   help="after the dream, pull non-occluded pixels this far towards the warped previous "
                        "dreamed frame (temporal smoothing along the flow; default 0.5, 0 = off)")
    c.add_argument("--no-flow", action="store_true", help="dream each frame on its own (no coherence)")
    c.add_argument("--flow-preset", choices=["ultrafast", "fast", "medium"], default="medium",
                   help="DIS optical flow preset (default medium)")
    c.add_argument("--filter", nargs="?", const="default", metavar="MODEL.onnx|NAME",
                   help="run a distilled ONNX dream filter instead of the dreamer: a file, or the name of a "
                        "shipped filter (without a value: the shipped 'default' filter)")
    o = p.add_argument_group("encoding and jobs")
    o.add_argument("--codec", help="video codec (default libx264 for .mp4/.mov/.mkv; libvpx-vp9, mpeg4, ffv1...)")
    o.add_argument("--crf", type=number(int, 0, 63), default=18, help="x264/vp9 quality, lower is better (default 18)")
    o.add_argument("--resume", action="store_true",
                   help="continue an interrupted job from its work folder OUTPUT.fastdream-work/")
    o.add_argument("--keep-work", action="store_true", help="keep the work folder (frames as PNGs) after encoding")
    o.add_argument("--frames", type=number(int, 1), help="stop after this many frames")
    s = p.add_argument_group("streams")
    s.add_argument("--size", help="WxH of raw frames on stdin (or the size asked of a camera)")
    s.add_argument("--fps", type=number(float, 0, 1000, lo_open=True), help="frame rate of raw frames on stdin")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--drop", dest="drop", action="store_true", default=None,
                      help="when dreaming is slower than the source, keep the newest frame and drop the rest "
                           "(default for cameras and URLs)")
    mode.add_argument("--block", dest="drop", action="store_false",
                      help="process every frame; the source waits (default for files and stdin)")
    s.add_argument("--preview", action="store_true", help="show the frames in a window (needs a display)")
    s.add_argument("--timeout", type=number(float, 0, lo_open=True), default=10.0,
                   help="seconds to wait for a URL to open / send data (default 10)")
    add_dream_options(p, describe())
    p.set_defaults(func=run)
    return p


def make_processor(args, size, device):
    """The frame processor for these flags and the parameters that define it."""
    from fastdream.video.coherence import DreamProcessor, filter_processor

    if args.filter:
        from fastdream.distill.runtime import resolve_filter

        path = resolve_filter(args.filter)
        if not path.is_file():
            raise InputError(f"--filter {args.filter}: is a folder, not an ONNX filter")
        proc = filter_processor(path, device)
        return proc, {"filter": str(path)}
    backbone, objective, cfg, params = dream_setup(args, size, device)
    return DreamProcessor(backbone, objective, cfg, max_size=args.max_size), params


def run(args) -> int:
    from fastdream.convert import resolve_device
    from fastdream.video import io as vio
    from fastdream.video import streams

    t0 = time.perf_counter()
    kind = streams.source_kind(args.input)
    if args.output is None and not args.preview:
        raise InputError("say where the frames go: -o FILE, -o FOLDER, -o - (raw RGB24 on stdout) or --preview")
    if args.report:
        rp = pathlib.Path(args.report)
        if str(rp) != "-" and not rp.parent.is_dir():
            raise InputError(f"{rp}: the folder {rp.parent} does not exist")
    if args.size and kind not in ("stdin", "camera"):
        raise InputError("--size is for raw frames on stdin (-) and cameras")
    size = streams.parse_size(args.size) if args.size else None
    if kind == "stdin" and (size is None or args.fps is None):
        raise InputError("reading raw RGB24 frames from stdin needs --size WxH and --fps F")
    if kind == "file" and not pathlib.Path(args.input).exists():
        raise InputError(f"{args.input}: no such file")
    if args.resume and (kind != "file" or args.output in (None, "-")):
        raise InputError("--resume is for jobs from a video file to a file or PNG sequence")
    device = resolve_device(args.device)
    job = kind == "file" and args.output not in (None, "-") and not args.preview

    from fastdream.video.coherence import Coherence

    coherence = Coherence(flow=not args.no_flow, blend=args.blend, preset=args.flow_preset, measure=True,
                          smooth=args.smooth)
    if job:
        from fastdream.video.resume import JobInterrupted, run_job

        info = vio.probe(args.input)
        processor, params = make_processor(args, (info.height, info.width), device)
        params = {**params, "flow": not args.no_flow, "blend": args.blend, "smooth": args.smooth, "flow_preset": args.flow_preset,
                  "processor": processor.name}
        try:
            report = run_job(args.input, args.output, processor, coherence, device, params, resume=args.resume,
                             codec=args.codec, crf=args.crf, keep_work=args.keep_work, max_frames=args.frames)
        except JobInterrupted as e:
            print(f"fastdream video: {e}", file=sys.stderr)
            return 130
    else:
        report = _run_stream(args, kind, size, device, coherence)
    report["device"] = str(device)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    from fastdream.report import peak_rss_mb, write_report

    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if args.report:
        write_report(args.report, report)
    return 0


def _run_stream(args, kind, size, device, coherence):
    from fastdream.video import io as vio
    from fastdream.video import streams

    if args.output == "-" and args.report == "-":
        raise InputError("--report - and -o - would both write to stdout; give the report a file")
    source = streams.open_source(args.input, size=size, fps=args.fps, timeout=args.timeout)
    sinks = []
    try:
        if args.output == "-":
            sinks.append(streams.StdoutSink())
        elif args.output is not None:
            if vio.is_png_sequence(args.output):
                sinks.append(vio.PngSequenceWriter(args.output))
            else:
                codec = vio.check_video_output(args.output, args.codec, source.width, source.height, source.fps)
                sinks.append(vio.open_writer(args.output, source.width, source.height, source.fps, codec=codec,
                                             crf=args.crf))
        if args.preview:
            sinks.append(streams.PreviewSink())
        processor, _ = make_processor(args, (source.height, source.width), device)
        drop = args.drop if args.drop is not None else source.live
        report = streams.run_stream(source, sinks, processor, coherence, device, drop=drop, max_frames=args.frames)
        if report["frames_out"] == 0:
            raise InputError(f"{source.name}: no frames came")
        for s in sinks:
            s.close()
    except BaseException:
        for s in sinks:
            s.abort()
        raise
    finally:
        source.close()
    report["output"] = args.output
    if report["lost_frames"]:
        print(f"warning: {source.name}: {report['lost_frames']} frame(s) could not be decoded (truncated or "
              "damaged input)", file=sys.stderr)
    return report
