"""The one progress display of fastdream, on stderr: a tqdm bar on a terminal, plain lines off a terminal,
or nothing. The command line chooses the mode (``--progress``); long jobs below it (video jobs, streams)
draw it without importing the command line."""
from __future__ import annotations

import contextlib
import os
import sys
import time

from fastdream.errors import FastdreamError

PROGRESS_MODES = ("auto", "bar", "plain", "none")
PLAIN_EVERY = 5.0   # seconds between plain progress lines (FASTDREAM_PROGRESS_EVERY overrides)
_mode = {"progress": None}  # set by the CLI from --progress; None: FASTDREAM_PROGRESS or auto


def set_progress_mode(mode: str | None) -> None:
    """``--progress``: auto (a bar on a terminal, plain lines otherwise), bar, plain or none."""
    if mode is not None and mode not in PROGRESS_MODES:
        raise FastdreamError(f"--progress: unknown mode {mode!r}; choose from {', '.join(PROGRESS_MODES)}")
    _mode["progress"] = mode


def progress_mode(enabled: bool | None = None) -> str:
    """The display to use now: ``bar``, ``plain`` or ``none``."""
    if enabled is False:
        return "none"
    mode = _mode["progress"] or os.environ.get("FASTDREAM_PROGRESS") or "auto"
    if mode not in PROGRESS_MODES:
        mode = "auto"
    if mode == "auto":
        if os.environ.get("TQDM_DISABLE"):
            return "none"
        return "bar" if sys.stderr.isatty() else "plain"
    return mode


class Progress:
    """The one progress display of the commands, on stderr: a tqdm bar on a terminal; off a terminal
    (a log file, a pipe) a plain line every few seconds, ``dream photo.jpg: 120/400 steps (30%), 41 s,
    about 96 s left``, and a last one when it ends; or nothing. ``p(done, total)`` sets the count,
    ``p.update(n)`` adds to it."""

    def __init__(self, total: int | None, desc: str, unit: str = "step", enabled: bool | None = None,
                 initial: int = 0):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.mode = progress_mode(enabled)
        self.t0 = self.last = time.perf_counter()
        self.printed = None  # the count the last plain line showed
        self.base = None  # (count, time) of the first report: the rate of "s left" counts from there, so
        #                   a run resumed at step 4,000 of 6,000 does not credit itself with the first 4,000
        self.bar = None
        try:
            self.every = float(os.environ.get("FASTDREAM_PROGRESS_EVERY", PLAIN_EVERY))
        except ValueError:
            self.every = PLAIN_EVERY
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        self.n = done
        if self.base is None:
            self.base = (done, time.perf_counter())
        self._show()

    def update(self, n: int = 1) -> None:
        if self.base is None:
            self.base = (self.n, self.t0)
        self.n += n
        self._show()

    def _show(self) -> None:
        if self.bar is not None:
            if self.bar.total != self.total:
                self.bar.total = self.total
            self.bar.n = self.n
            self.bar.refresh()
        elif self.mode == "plain":
            now = time.perf_counter()
            if now - self.last >= self.every:
                self.last = now
                self._line(now)

    def _line(self, now: float) -> None:
        el = now - self.t0
        text = f"{self.desc}: {self.n}"
        if self.total:
            text += f"/{self.total} {self.unit}s ({100 * self.n / self.total:.0f}%)"
        else:
            text += f" {self.unit}s"
        text += f", {el:.0f} s"
        n0, t0 = self.base  # set by the first report, which every line follows
        if self.total and n0 < self.n < self.total and now > t0:
            text += f", about {(now - t0) / (self.n - n0) * (self.total - self.n):.0f} s left"
        print(text, file=sys.stderr, flush=True)
        self.printed = self.n

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.mode == "plain" and self.printed is not None and self.printed != self.n:
            self._line(time.perf_counter())  # a log that showed progress also shows where it ended


@contextlib.contextmanager
def progress_bar(total: int | None, desc: str, enabled: bool | None = None, unit: str = "step"):
    """A ``Progress`` for the ``with`` block; yields it (call it as ``update(done, total)``)."""
    p = Progress(total, desc, unit=unit, enabled=enabled)
    try:
        yield p
    finally:
        p.close()
