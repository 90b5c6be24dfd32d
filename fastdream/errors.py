"""Errors a user can cause. The CLI prints them as one line on stderr and exits with code 2."""
from __future__ import annotations

import difflib
from typing import Iterable


class FastdreamError(Exception):
    """Bad input from the user: a file, a flag value, a name. Printed as one line, exit code 2."""


class InputError(FastdreamError):
    """An input file or value that cannot be used."""


def suggest(name: str, choices: Iterable[str], what: str) -> str:
    """``"unknown layer 'blok3'; did you mean 'block3'?"`` with up to three close matches."""
    choices = list(choices)
    close = difflib.get_close_matches(str(name), choices, n=3, cutoff=0.5)
    msg = f"unknown {what} {name!r}"
    if close:
        msg += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    elif len(choices) <= 12:
        msg += "; choose from " + ", ".join(choices)
    return msg
