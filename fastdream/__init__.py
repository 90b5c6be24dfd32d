"""fastdream: fast DeepDream and its relatives, with a C++/CUDA core.

>>> import fastdream
>>> out = fastdream.dream("photo.jpg", preset="deep", seed=1)        # a PIL image back
>>> out = fastdream.style("photo.jpg", [("painting.jpg", 1.0)])
>>> fastdream.build_info()["cuda"]      # was CUDA compiled into this build?
>>> fastdream.has_cuda()                # can CUDA kernels run now?
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

from fastdream._native import has_cuda  # noqa: E402,F401


def build_info() -> dict:
    """What the native module was compiled with (``fastdream._native.build_info``), and
    ``precision_auto``: what ``--precision auto`` picks for the backbone on this machine
    (``{"cpu": "bf16" | "fp32", "cpu_bf16_flags": [...], "cuda": ...}``, see :mod:`fastdream.precision`)."""
    from fastdream._native import build_info as native_info
    from fastdream.precision import describe

    return {**native_info(), "precision_auto": describe()}


from fastdream.process import configure_process  # noqa: E402,F401  (process-wide knobs: the CLI calls it)

# The public API, imported on first use so that `import fastdream` (and the CLI's --help) stays fast.
_LAZY = {
    "dream": "fastdream.api",
    "dream_tensor": "fastdream.api",
    "get_backbone": "fastdream.api",
    "style": "fastdream.stylize.api",
    "load_backbone": "fastdream.backbones",
    "DreamConfig": "fastdream.engine.dream",
    "objectives": "fastdream.objectives",
}

__all__ = ["build_info", "has_cuda", "configure_process", "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        mod = importlib.import_module(_LAZY[name])
        value = mod if name == "objectives" else getattr(mod, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fastdream' has no attribute {name!r}")
