"""Moved: the command line's objective strings are parsed by :mod:`fastdream.objective_text`, above
the engine; the engine's own part (terms, priors, faces as objects) is :mod:`fastdream.engine.compose`.

This name stays only for callers not yet moved (``fastdream.distill``): it looks its names up in
``fastdream.objective_text`` when asked, so that the engine imports nothing from above it. Import
from ``fastdream.objective_text`` (strings) or ``fastdream.engine.compose`` (objects) instead.
"""


def __getattr__(name):
    import fastdream.objective_text as text

    try:
        return getattr(text, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
