"""fastdream video INPUT -o OUTPUT: dream every frame of a video, a camera, a URL or raw frames on stdin,
with temporal coherence (optical flow carries the previous dreamed frame onto the next)."""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

from fastdream.cli.common import add_dream_options, dream_setup, number
from fastdream.errors import InputError

BLEND, SMOOTH = 0.5, 0.5   # the coherence defaults of per-frame dreaming
LIVE_STEPS = 1             # default --steps-per-frame
LIVE_FLOW_SIDE = 320       # live mode computes the flow at most this big (it is smooth; 4x cheaper at 640x480)


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
    c.add_argument("--blend", type=number(float, 0, 1), default=None,
                   help="weight of the warped previous dreamed frame in the next frame's start (default 0.5)")
    c.add_argument("--smooth", type=number(float, 0, 0.95), default=None,
                   help="after the dream, pull non-occluded pixels this far towards the warped previous "
                        "dreamed frame (temporal smoothing along the flow; default 0.5, 0 = off)")
    c.add_argument("--no-flow", action="store_true", help="dream each frame on its own (no coherence)")
    c.add_argument("--flow-preset", choices=["ultrafast", "fast", "medium"], default=None,
                   help="DIS optical flow preset (default medium; fast with --live)")
    c.add_argument("--filter", nargs="?", const=True, metavar="MODEL.onnx|NAME",
                   help="run a distilled ONNX dream filter instead of the dreamer: a file, or the name of a "
                        "shipped filter (without a value: the shipped default filter, in 8 bits on the CPU "
                        "as `fastdream filter` runs it)")
    c.add_argument("--refine", type=number(int, 0, 100), default=0, metavar="K",
                   help="with --filter: finish each frame with K steps of the filter's teacher at full size "
                        "(`fastdream filter --refine`; its fine detail, at about 0.14 s a step at 640x480 on two "
                        "CPU cores)")
    lv = p.add_argument_group("live dreaming")
    lv.add_argument("--live", action="store_true",
                    help="live dreaming: the dream a frame has grown is carried onto the next frame along the "
                         "optical flow and each frame adds --steps-per-frame gradient steps, at one octave of the "
                         "pyramid in turn (coarse to fine), so a real dream builds up at stream rate; new and "
                         "occluded pixels start from the fresh frame")
    lv.add_argument("--steps-per-frame", type=number(int, 1, 1000), metavar="K",
                    help=f"gradient steps each frame adds in --live mode (default {LIVE_STEPS}: stream rate, 14-19 "
                         "frames/s at 320x240 on 2 shared CPU cores; more steps, a stronger dream per frame)")
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


# Flags of per-frame dreaming that live mode cannot honour, and why (flag, test on args, reason).
LIVE_CONFLICTS = [
    ("--filter", lambda a: a.filter, "live mode runs the iterative dreamer, not a distilled filter"),
    ("--no-flow", lambda a: a.no_flow, "live mode carries the dream along the optical flow"),
    ("--blend", lambda a: a.blend is not None, "live mode carries the dream's detail, not a blend of frames"),
    ("--smooth", lambda a: a.smooth is not None, "live mode carries the dream's detail, not a blend of frames"),
    ("--resume", lambda a: a.resume, "a live dream's state is not kept on disk"),
    ("--keep-work", lambda a: a.keep_work, "live mode has no work folder"),
    ("--steps", lambda a: a.steps is not None, "live mode adds --steps-per-frame steps to every frame"),
    ("--recursions", lambda a: a.recursions, "recursions restart the dream, live mode carries it on"),
    ("--init noise", lambda a: a.init == "noise", "live mode starts from the camera's frames"),
]


def check_live(args) -> None:
    """Refuse, before any work, the flags that --live cannot honour (all of them named in one line)."""
    bad = [(flag, why) for flag, test, why in LIVE_CONFLICTS if test(args)]
    if bad:
        raise InputError("--live cannot honour " + "; ".join(f"{flag} ({why})" for flag, why in bad))


def make_live(args, size, device):
    """The live dreamer for these flags (``size``: the stream's (H, W)) and its parameters."""
    from fastdream.video.live import LiveDreamer

    backbone, objective, cfg, params = dream_setup(args, size, device)
    if cfg.recursions:  # the recursive preset: its layer and step size, without the restarts
        import dataclasses

        cfg = dataclasses.replace(cfg, recursions=0)
    k = args.steps_per_frame or LIVE_STEPS
    live = LiveDreamer(backbone, objective, cfg, k, max_size=args.max_size, flow_preset=args.flow_preset,
                       flow_max_side=LIVE_FLOW_SIDE, device=device)
    t0 = time.perf_counter()
    live.warmup(*size)
    params = {**params, "recursions": 0, "steps_per_frame": k, "flow_preset": args.flow_preset,
              "precision": live.precision, "warmup_seconds": round(time.perf_counter() - t0, 3),
              "octave_sizes": [list(s) for s in live.levels(*size)]}
    return live, params


def make_processor(args, size, device):
    """The frame processor for these flags and the parameters that define it."""
    from fastdream.video.coherence import DreamProcessor, filter_processor

    if args.filter:
        try:
            from fastdream.distill.runtime import resolve_filter
        except ImportError:  # the same one line as filter_processor's, not a traceback
            raise InputError("--filter: filters need fastdream.distill (the ONNX filter runtime), "
                             "which this installation does not have") from None
        path = None if args.filter is True else resolve_filter(args.filter)  # True: --filter without a name
        if path is not None and not path.is_file():
            raise InputError(f"--filter {args.filter}: is a folder, not an ONNX filter")
        proc = filter_processor(path, device, refine=args.refine)
        params = {"filter": str(proc.fn.path)}  # the file that runs (the runner inside the processor)
        if args.refine:
            params["refine"] = args.refine
        return proc, params
    if args.refine:
        raise InputError("--refine goes with --filter (it finishes a filter's frames with its teacher's steps)")
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
    if args.live:
        check_live(args)
    elif args.steps_per_frame is not None:
        raise InputError("--steps-per-frame is for --live (per-frame dreaming takes --steps per octave)")
    blend = BLEND if args.blend is None else args.blend
    args.flow_preset = args.flow_preset or ("fast" if args.live else "medium")
    smooth = SMOOTH if args.smooth is None else args.smooth
    device = resolve_device(args.device)
    job = kind == "file" and args.output not in (None, "-") and not args.preview and not args.live

    from fastdream.video.coherence import Coherence

    coherence = None if args.live else Coherence(flow=not args.no_flow, blend=blend, preset=args.flow_preset,
                                                 measure=True, smooth=smooth)
    if job:
        from fastdream.video.resume import JobInterrupted, run_job

        info = vio.probe(args.input)
        processor, params = make_processor(args, (info.height, info.width), device)
        params = {**params, "flow": not args.no_flow, "blend": blend, "smooth": smooth, "flow_preset": args.flow_preset,
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
                                             crf=args.crf, audio_from=args.input if kind == "file" else None))
        if args.preview:
            sinks.append(streams.PreviewSink())
        if args.live:
            processor, params = make_live(args, (source.height, source.width), device)
        else:
            processor, params = make_processor(args, (source.height, source.width), device)
        drop = args.drop if args.drop is not None else source.live
        report = streams.run_stream(source, sinks, processor, coherence, device, drop=drop, max_frames=args.frames)
        if report["frames_out"] == 0:
            raise InputError(f"{source.name}: no frames came")
        for s in sinks:
            s.close()
        t_first = report.pop("_t_first_read")
        report["audio_copied"] = any(getattr(s, "audio_copied", False) for s in sinks)
        if args.live:
            report.update(live_figures(processor, report, params, t_first))
    except BaseException:
        for s in sinks:
            s.abort()
        raise
    finally:
        source.close()
    report["output"] = args.output
    if getattr(source, "vanished", False) and not report["stopped_by_user"]:
        print(f"warning: {source.name} stopped giving frames after {report['frames_in']}; the "
              f"{report['frames_out']} frame(s) written are kept", file=sys.stderr)
    if report["lost_frames"]:
        print(f"warning: {source.name}: {report['lost_frames']} frame(s) could not be decoded (truncated or "
              "damaged input)", file=sys.stderr)
    return report


def live_figures(live, report: dict, params: dict, t_first: float) -> dict:
    """What --live adds to the report: processing rate end to end (first frame read to the output
    closed, model loading and warm-up excluded), steps, the objective gain of the last frame."""
    wall = time.perf_counter() - t_first
    n = report["frames_out"]
    return {
        "live": True, "steps_per_frame": live.k, "steps_done": live.steps, "skipped_steps": live.skipped_steps,
        "processing_fps": round(n / wall, 3) if wall > 0 else None,
        "objective_gain_last": _round(live.objective_gain(), 4),
        "seconds_flow": round(live.seconds["flow"], 3), "seconds_steps": round(live.seconds["steps"], 3),
        "params": params,
    }


def _round(v, nd):
    return None if v is None else round(v, nd)
