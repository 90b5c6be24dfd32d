"""Loading the compiled module fastdream._C, with a clear message when it is missing."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def native():
    """The compiled module ``fastdream._C``."""
    try:
        from fastdream import _C
    except ImportError as e:  # pragma: no cover - depends on how the package was installed
        raise ImportError(
            "fastdream's native module fastdream._C is not built: install with `pip install .` "
            "(or, for a development tree, `cmake -S . -B build/dev && cmake --build build/dev`)"
        ) from e
    return _C


def build_info() -> dict:
    """What the native module was compiled with.

    Keys: ``cuda`` (bool), ``cuda_version``, ``cuda_runtime_version``, ``cuda_architectures``,
    ``openmp`` (bool), ``openmp_version``, ``openmp_max_threads``, ``compiler``, ``build_type``.
    (``fastdream.build_info()`` adds ``precision_auto``: what ``--precision auto`` picks here.)
    """
    return dict(native().build_info())


def has_cuda() -> bool:
    """True when CUDA kernels were compiled into this build and a CUDA device is visible now."""
    c = native()
    return bool(c.build_info()["cuda"]) and c.cuda_device_count() > 0
