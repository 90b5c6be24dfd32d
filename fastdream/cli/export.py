"""fastdream export filter.pt -o filter.onnx: a trained generator to ONNX, checked by running it;
``--int8 PHOTOS``: quantized to 8 bits, calibrated on PHOTOS (from a checkpoint or a float ONNX filter)."""
from __future__ import annotations

import pathlib

from fastdream.cli.common import Timer, number
from fastdream.errors import InputError


def add_parser(sub):
    p = sub.add_parser("export", help="export a trained filter (.pt) to ONNX",
                       description="Export a generator trained by `fastdream distill train` to ONNX: dynamic batch, "
                                   "height and width; input 'image' float32 [N, 3, H, W] RGB in [0, 1], output 'dream' "
                                   "the same. The teacher and training summary go into the model's metadata. The file "
                                   "is checked by the ONNX checker and by ONNX Runtime on another size against torch "
                                   "(max abs error <= 1e-4). A float .onnx filter (or a shipped filter's name) is re-exported with this "
                                   "version's graph, its metadata kept. With --int8 PHOTOS the filter (a checkpoint, a float .onnx "
                                   "filter or a shipped filter's name) is quantized to 8-bit integers for the CPU, its "
                                   "activation ranges calibrated on photos at the size of use; the decoder's last "
                                   "stages stay in float, and the result is kept only if its pictures reach a mean PSNR "
                                   "of at least 25 dB to the float filter's on the calibration photos.")
    p.add_argument("checkpoint", help="checkpoint from `fastdream distill train`, or a float .onnx filter or a "
                                      "shipped filter's name")
    p.add_argument("-o", "--output", required=True, help="the .onnx file")
    p.add_argument("--example-size", type=number(int, 8, 4096), nargs=2, metavar=("H", "W"), default=[96, 128],
                   help="size of the tracing example (default 96 128)")
    p.add_argument("--int8", metavar="PHOTOS", help="quantize to 8 bits, calibrated on the photos in this folder "
                                                   "(photos the filter will be judged on should not be among them)")
    p.add_argument("--calibration-size", type=number(int, 32, 4096), nargs=2, metavar=("W", "H"), default=[640, 480],
                   help="with --int8: the size the photos are resized and cropped to (default 640 480)")
    p.add_argument("--calibration-count", type=number(int, 1, 10000), default=24, metavar="N",
                   help="with --int8: how many of the photos to calibrate on, spread over the folder (default 24)")
    p.add_argument("--report", help="write a JSON report here")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from fastdream.distill.export import export_onnx
    from fastdream.report import peak_rss_mb, write_report

    if args.report and str(args.report) != "-" and not pathlib.Path(args.report).parent.is_dir():
        raise InputError(f"{args.report}: the folder {pathlib.Path(args.report).parent} does not exist")
    with Timer() as t:
        if args.int8:
            res = _export_int8(args)
        else:
            res = export_onnx(args.checkpoint, args.output, example_size=tuple(args.example_size))
    res.update(seconds=round(t.seconds, 3), peak_rss_mb=round(peak_rss_mb(), 1))
    if args.report:
        write_report(args.report, res)
    return 0


def _export_int8(args) -> dict:
    import tempfile

    from fastdream.distill.export import export_onnx
    from fastdream.distill.quantize import quantize_filter

    src = pathlib.Path(args.checkpoint)
    if not pathlib.Path(args.int8).is_dir():
        raise InputError(f"--int8 {args.int8}: not a folder of photos")
    kw = dict(size=tuple(args.calibration_size), count=args.calibration_count)
    if src.suffix.lower() in (".pt", ".pth", ".ckpt"):
        with tempfile.TemporaryDirectory() as tmp:
            flt = pathlib.Path(tmp) / "float.onnx"
            export_onnx(src, flt, example_size=tuple(args.example_size))
            return quantize_filter(flt, args.output, args.int8, **kw)
    return quantize_filter(args.checkpoint, args.output, args.int8, **kw)
