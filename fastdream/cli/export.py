"""fastdream export filter.pt -o filter.onnx: a trained generator to ONNX, checked by running it."""
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
                                   "(max abs error <= 1e-4).")
    p.add_argument("checkpoint", help="checkpoint from `fastdream distill train`")
    p.add_argument("-o", "--output", required=True, help="the .onnx file")
    p.add_argument("--example-size", type=number(int, 8, 4096), nargs=2, metavar=("H", "W"), default=[96, 128],
                   help="size of the tracing example (default 96 128)")
    p.add_argument("--report", help="write a JSON report here")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from fastdream.distill.export import export_onnx
    from fastdream.report import peak_rss_mb, write_report

    if args.report and str(args.report) != "-" and not pathlib.Path(args.report).parent.is_dir():
        raise InputError(f"{args.report}: the folder {pathlib.Path(args.report).parent} does not exist")
    with Timer() as t:
        res = export_onnx(args.checkpoint, args.output, example_size=tuple(args.example_size))
    res.update(seconds=round(t.seconds, 3), peak_rss_mb=round(peak_rss_mb(), 1))
    if args.report:
        write_report(args.report, res)
    return 0
