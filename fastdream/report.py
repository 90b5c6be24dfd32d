"""The --report JSON every command writes: what it did, with the figures that tell how well."""
from __future__ import annotations

import json
import os
import resource
import sys

from fastdream.imageio import atomic_write


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def write_report(path, report: dict) -> None:
    """Write ``report`` as JSON to ``path`` (atomically; ``-`` prints to stdout)."""
    text = json.dumps(report, indent=2, sort_keys=False, default=_default) + "\n"
    if str(path) == "-":
        sys.stdout.write(text)
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        from fastdream.errors import InputError

        raise InputError(f"{path}: the folder {folder} does not exist")

    def _write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, _write)


def _default(o):
    try:
        import torch

        if isinstance(o, torch.Tensor):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "__dict__"):
        return vars(o)
    return str(o)


def dream_report(input_size, result, device, seconds, dream_seconds, before, after, stats, params, **extra) -> dict:
    """The fields every dream reports (``fastdream dream --report`` and the web page's report)."""
    W, H = input_size
    return {
        **extra,
        "input_size": [int(W), int(H)],
        "output_size": [int(result.shape[-1]), int(result.shape[-2])],
        "device": str(device),
        "seconds": round(seconds, 3),
        "dream_seconds": round(dream_seconds, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "objective_before": before,
        "objective_after": after,
        "objective_gain": (after / before) if before else None,
        "steps": stats.steps_done,
        "skipped_steps": stats.skipped_steps,
        "octave_sizes": stats.octave_sizes,
        "params": params,
    }
