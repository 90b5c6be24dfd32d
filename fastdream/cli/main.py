"""The `fastdream` command: one module per subcommand, each with add_parser(subparsers) and run(args)."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Subcommand name -> module in fastdream.cli (imported only when needed, so `fastdream --help` is fast).
COMMANDS = {
    "dream": "dream",
    "layers": "layers",
    "sheet": "sheet",
    "bench": "bench",
    "zoom": "zoom",
    "video": "video",
    "style": "style",
    "serve": "serve",
    "visualize": "visualize",
    "invert": "invert",
    "finetune": "finetune",
    "distill": "distill",
    "export": "export",
    "filter": "filter",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2 (argparse's own default prints usage too)
        self.exit(2, f"fastdream: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastdream", description="Fast DeepDream and its relatives.")
    from fastdream import __version__

    parser.add_argument("--version", action="version", version=f"fastdream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"fastdream.cli.{module}")
        mod.add_parser(sub)
    return parser


def main(argv=None) -> int:
    from fastdream.errors import FastdreamError
    from fastdream.process import configure_process

    configure_process()  # before torch loads: OpenMP's wait policy, malloc keeping freed memory

    command = ""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        command = args.command
        rc = args.func(args)
    except FastdreamError as e:
        print(f"fastdream {command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastdream {command}: interrupted; no output was written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
