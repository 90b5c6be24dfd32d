"""Frame processors (what turns one frame into its dreamed version) and temporal coherence (how the
previous dreamed frame is carried onto the current one before it is processed).

A frame processor is any ``Callable[[Tensor [1, 3, H, W] in [0, 1]], Tensor [1, 3, H, W]]`` with a
``name``; ``at_frame(index)`` (optional) is called before each frame so a processor can derive a
per-frame seed. ``DreamProcessor`` runs the iterative dreamer; ``--filter MODEL.onnx`` plugs a distilled
filter in through ``filter_processor``; tests use cheap stand-ins built with ``as_processor``.

Coherence, per frame i > 0 (Ruder et al. 2016 style, without the loss term):
    flow_back = DIS(frame_i -> frame_{i-1}),  flow_fwd = DIS(frame_{i-1} -> frame_i)
    warped    = warp(out_{i-1}, flow_back)
    mask      = forward-backward consistency (occluded pixels 0)
    init      = frame_i + blend * mask * (warped - frame_i)
    out_i     = processor(init)
    out_i     = out_i + smooth * mask * (warped - out_i)      (temporal smoothing along the flow)
The pre-blend alone lets each frame's dream steps add fresh detail at full strength (on a pan it cut
the warp error only to ~0.8x of the naive mode); the post-blend is an exponential moving average along
the flow that keeps the carried-over dream, at the cost of some trailing on fast changes.
``out_{i-1}`` is always the uint8 frame that was written, so a resumed job (which reads it back from its
PNG) computes exactly what an uninterrupted one does.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Protocol

import numpy as np
import torch

from fastdream.errors import FastdreamError
from fastdream.video.flow import FlowEstimator, FlowPair, warp, warp_error


class FrameProcessor(Protocol):
    name: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # [1, 3, H, W] -> [1, 3, H, W], values in [0, 1]
        ...


class _Wrapped:
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str):
        self.fn, self.name = fn, name

    def __call__(self, x):
        return self.fn(x)

    def at_frame(self, index: int) -> None:
        pass


def as_processor(fn: Callable[[torch.Tensor], torch.Tensor], name: str | None = None) -> FrameProcessor:
    """Any tensor -> tensor callable as a frame processor (``name`` defaults to the function's)."""
    if hasattr(fn, "name") and hasattr(fn, "at_frame"):
        return fn  # type: ignore[return-value]
    return _Wrapped(fn, name or getattr(fn, "__name__", type(fn).__name__))


def frame_seed(base: int | None, index: int) -> int:
    """A seed for frame ``index`` of a job seeded ``base`` (splitmix64): reproducible frame by frame, so a
    resumed job draws the same jitter as an uninterrupted one."""
    z = ((base or 0) * 0x9E3779B97F4A7C15 + (index + 1) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return (z ^ (z >> 31)) & (2**63 - 1)


class DreamProcessor:
    """The iterative dreamer as a frame processor: ``dream_tensor`` with a per-frame seed."""

    def __init__(self, backbone, objective, cfg, max_size: int | None = None, name: str = "dream"):
        self.backbone, self.objective, self.cfg, self.max_size = backbone, objective, cfg, max_size
        self.name = name
        self._cfg = cfg
        self.steps = 0

    def at_frame(self, index: int) -> None:
        self._cfg = dataclasses.replace(self.cfg, seed=frame_seed(self.cfg.seed, index))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from fastdream.engine.dream import dream_tensor

        out, stats = dream_tensor(x, self.objective, self.backbone, self._cfg, max_size=self.max_size)
        self.steps += stats.steps_done
        return out


class _RefinedFilter:
    """A filter runner followed by its teacher's steps (``fastdream.distill.refine.Refiner``)."""

    def __init__(self, runner, refiner):
        self.runner, self.refiner, self.path = runner, refiner, runner.path

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.refiner(self.runner(x)).to(x.device)


def filter_processor(path, device, refine: int = 0) -> FrameProcessor:
    """A distilled ONNX dream filter as a frame processor (``fastdream.distill.runtime.load_filter``); ``path``
    None: the shipped default as the runtime picks it for the device (8 bits on the CPU). ``refine``: finish
    each frame with that many of the filter's teacher steps at full size (the same jitter every frame)."""
    from fastdream.distill.runtime import load_filter

    runner = load_filter(None if path is None else str(path), device=str(device))
    if not refine:
        return as_processor(runner, name=f"filter:{runner.path}")
    from fastdream.distill.refine import Refiner

    refiner = Refiner.for_runner(runner, refine, device)
    return as_processor(_RefinedFilter(runner, refiner), name=f"filter:{runner.path}+refine{refine}")


# -- frames between numpy (decode/encode side) and tensors (processor side) --------------------------------
def to_tensor(frame: np.ndarray, device) -> torch.Tensor:
    """``[H, W, 3]`` uint8 or float32 in [0, 1] -> ``[1, 3, H, W]`` float32 on ``device``."""
    t = torch.from_numpy(np.ascontiguousarray(frame))
    if t.dtype == torch.uint8:
        t = t.to(device).float().div_(255.0)
    else:
        t = t.to(device).float()
    return t.permute(2, 0, 1).unsqueeze(0).contiguous()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[1, 3, H, W]`` in [0, 1] -> ``[H, W, 3]`` uint8 (rounded)."""
    a = x.detach()[0].clamp(0, 1).mul(255.0).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(a)


class Coherence:
    """Carries the previous dreamed frame onto the current one. ``flow=False`` is the naive per-frame
    mode (the processor sees the raw frame); ``measure`` computes the flow anyway for ``warp_error``."""

    def __init__(self, flow: bool = True, blend: float = 0.5, preset: str = "medium", measure: bool = True,
                 max_side: int | None = 640, smooth: float = 0.5):
        if not 0.0 <= blend <= 1.0:
            raise FastdreamError(f"--blend must be in [0, 1], got {blend}")
        if not 0.0 <= smooth < 1.0:
            raise FastdreamError(f"--smooth must be in [0, 1), got {smooth}")
        self.use_flow, self.blend, self.measure, self.smooth = flow, float(blend), measure, float(smooth)
        self._warped = None
        self.estimator = FlowEstimator(preset, max_side) if (flow or measure) else None
        self.warp_errors: list[float] = []
        self.seconds_flow = 0.0

    def prepare(self, cur: np.ndarray, prev_in: np.ndarray | None, prev_out: np.ndarray | None):
        """The processor's input for frame ``cur`` (``[H, W, 3]`` float32 in [0, 1] or uint8) and the
        flow pair (None for the first frame or when neither coherence nor measuring needs it)."""
        import time

        self._warped = None
        if prev_in is None or prev_out is None or self.estimator is None:
            return cur, None
        t0 = time.perf_counter()
        pair = self.estimator.pair(prev_in, cur)
        if not self.use_flow:
            self.seconds_flow += time.perf_counter() - t0
            return cur, pair
        warped = warp(prev_out, pair.back, maps=pair.maps).astype(np.float32)
        self._warped = (warped, pair.mask)
        c = cur.astype(np.float32)
        m = (pair.mask * self.blend)[..., None]
        init = (c + m * (warped - c)) * (1.0 / 255.0)
        self.seconds_flow += time.perf_counter() - t0
        return init, pair

    def finish(self, out: np.ndarray) -> np.ndarray:
        """The temporal smoothing of a processed frame (uint8 in, uint8 out; a no-op without flow)."""
        if self._warped is None or self.smooth == 0.0:
            return out
        warped, mask = self._warped
        m = (mask * self.smooth)[..., None]
        o = out.astype(np.float32)
        return np.clip(o + m * (warped - o) + 0.5, 0, 255).astype(np.uint8)

    def record(self, prev_out: np.ndarray | None, out: np.ndarray, pair: FlowPair | None) -> float | None:
        if pair is None or prev_out is None:
            return None
        e = warp_error(prev_out, out, pair)
        self.warp_errors.append(e)
        return e


def process(processor: FrameProcessor, coherence: Coherence, index: int, cur: np.ndarray,
            prev_in: np.ndarray | None, prev_out: np.ndarray | None, device) -> tuple[np.ndarray, float | None]:
    """One frame through coherence and the processor: ``(out [H, W, 3] uint8, warp_error or None)``."""
    at = getattr(processor, "at_frame", None)
    if at is not None:
        at(index)
    init, pair = coherence.prepare(cur, prev_in, prev_out)
    with torch.no_grad() if not isinstance(processor, DreamProcessor) else contextlib.nullcontext():
        y = processor(to_tensor(init, device))
    if tuple(y.shape) != (1, 3, cur.shape[0], cur.shape[1]):
        raise FastdreamError(f"the frame processor {processor.name!r} returned shape {tuple(y.shape)} for a "
                             f"frame [1, 3, {cur.shape[0]}, {cur.shape[1]}]")
    out = coherence.finish(to_uint8(y))
    return out, coherence.record(prev_out, out, pair)

