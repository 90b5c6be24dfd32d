"""fastdream: fast DeepDream and its relatives, with a C++/CUDA core.

>>> import fastdream
>>> fastdream.build_info()["cuda"]      # was CUDA compiled into this build?
>>> fastdream.has_cuda()                # can CUDA kernels run now?
"""
from __future__ import annotations

__version__ = "0.1.0"

from fastdream._native import build_info, has_cuda  # noqa: F401

__all__ = ["build_info", "has_cuda", "__version__"]
