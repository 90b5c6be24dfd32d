"""fastdream bench: the quick kernel benchmark (1920x1080) on this machine, printed as a table."""
from __future__ import annotations

import pathlib


def add_parser(sub):
    p = sub.add_parser("bench", help="time the native kernels against their torch references",
                       description="Run the quick kernel benchmark (1920x1080) and print a table.")
    p.add_argument("--json", help="also write the records as JSON here")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats per case (default 7)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from fastdream.errors import FastdreamError

    if args.repeats < 1 or args.repeats > 1000:
        raise FastdreamError(f"--repeats must be 1..1000, got {args.repeats}")
    from fastdream.bench import kernels

    argv = ["--quick", "--repeats", str(args.repeats), "--device", args.device]
    if args.json:
        jp = pathlib.Path(args.json)
        if not jp.parent.is_dir():
            raise FastdreamError(f"{jp}: the folder {jp.parent} does not exist")
        argv += ["--json", args.json]
    return kernels.main(argv)
