"""The `fastdream` command: one module per subcommand, each with add_parser(subparsers) and run(args)."""
from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import os
import signal
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


def _with_default(action: argparse.Action, text: str) -> str:
    """``text`` with ``(default: X)`` appended, unless it already says its default or there is none to say
    (flags that are off unless given, lists that start empty, --help)."""
    d = action.default
    if "default" in text or d is None or d is argparse.SUPPRESS or isinstance(d, bool) or d == [] \
            or action.nargs == 0:
        return text
    shown = " ".join(map(str, d)) if isinstance(d, (list, tuple)) else (f"{d:g}" if isinstance(d, float) else str(d))
    shown = shown.replace("%", "%%")
    return f"{text} (default: {shown})" if text else f"(default: {shown})"


class _DefaultsMixin:
    """Every option's help says its default (argparse's ArgumentDefaultsHelpFormatter, without the
    '(default: None)' noise, without saying a default twice, and for options without a help text too)."""

    def _get_help_string(self, action):
        return _with_default(action, action.help or "")

    def _format_action(self, action):
        if not action.help and action.option_strings and _with_default(action, ""):
            action = copy.copy(action)
            action.help = _with_default(action, "")
        return super()._format_action(action)


class _DefaultsFormatter(_DefaultsMixin, argparse.HelpFormatter):
    pass


class _RawDefaultsFormatter(_DefaultsMixin, argparse.RawDescriptionHelpFormatter):
    pass


class _Parser(argparse.ArgumentParser):
    def __init__(self, *a, **kw):
        fmt = kw.get("formatter_class", argparse.HelpFormatter)
        kw["formatter_class"] = _RawDefaultsFormatter if issubclass(fmt, argparse.RawDescriptionHelpFormatter) \
            else _DefaultsFormatter
        super().__init__(*a, **kw)

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
    for leaf in _leaves(parser):
        leaf.add_argument("--progress", choices=["auto", "bar", "plain", "none"], default=None,
                          help="progress on stderr: a bar on a terminal, a plain line every few seconds "
                               "otherwise (a log file, a pipe), or none (default: auto)")
    return parser


def _leaves(parser):
    """The parsers that run a command (``dream``, ``distill train``...), not the ones that choose one."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield parser
    for a in subs:
        for p in dict.fromkeys(a.choices.values()):
            yield from _leaves(p)


@contextlib.contextmanager
def _ctrl_c_held():
    """Ctrl-C held back while the commands' libraries load (torch, numpy, OpenCV...): an interrupt in the middle
    of ``import torch`` leaves half-imported modules behind (numpy.linalg then recurses without end, or the
    process ends by the signal after saying it was interrupted). Held back, it arrives as soon as the
    imports are done, as the KeyboardInterrupt that main() turns into one line and exit code 130."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def main(argv=None) -> int:
    from fastdream.errors import FastdreamError
    from fastdream.process import configure_process

    configure_process()  # before torch loads: OpenMP's wait policy, malloc keeping freed memory

    command = ""
    try:
        with _ctrl_c_held():  # a Ctrl-C held back is raised as the block ends, with the command known
            parser = build_parser()
            args = parser.parse_args(argv)
            command = args.command
        from fastdream.cli.common import set_progress_mode

        set_progress_mode(getattr(args, "progress", None))
        rc = args.func(args)
    except FastdreamError as e:
        print(f"fastdream {command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastdream{' ' + command if command else ''}: interrupted; no output was written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
