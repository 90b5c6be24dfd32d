"""Live dreaming: a real DeepDream at stream rate, amortized over frames instead of restarted per frame.

The dream a frame has grown travels to the next frame along the optical flow, and each frame adds a
few gradient steps at one scale of the octave pyramid, the scales in turn (coarse to fine, then again).
On a still camera the picture becomes the full dream within a few dozen frames; when things move,
the dream moves with them, and what enters the picture starts from the fresh frame.

Per frame ``i`` (``x_i`` the camera's frame, ``D`` the dream's detail at full size, ``[1, 3, H, W]``)::

    pair   = DIS(x_{i-1} <-> x_i)                  back and forward flow, forward-backward occlusion mask
    D      = mask * warp(D, pair.back)             occluded and newly entering pixels: no detail
    cur    = clamp(x_i + D)                        the previous output, carried onto this frame
    level  = the pyramid level of frame i          coarse to fine in turn
    img    = resample(cur, size[level])            (antialiased; at full size: cur itself)
    img    = K x (gradient at a random jitter, ops.dream_step)     the engine's own step
    out    = clamp(cur + upsample(img - resample(cur)))            only what the steps added is upsampled
    D      = out - x_i

Why one full-size detail rather than one per scale: a coarse level's steps enter ``D`` as their own
upsampled change, so the detail at every scale lives in one picture and is warped once, along the
flow at full resolution; the next coarse level sees it again through the antialiased downscale. The
still dreamer's octave loop does the same (detail of the smaller octave added onto the larger one),
except that here the octaves follow each other in time.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from fastdream import ops
from fastdream.engine.dream import DreamConfig, Dreamer, octave_sizes
from fastdream.errors import FastdreamError
from fastdream.video.flow import FlowEstimator, FlowPair, warp, warp_error


class LiveDreamer:
    """Dreams a stream frame by frame, carrying the dream along the flow (see the module docstring).

    ``steps_per_frame``: gradient steps each frame adds (K). ``max_size``: the finest level of the
    pyramid has at most this many pixels on its long side (the detail is upsampled onto the frame).
    ``flow_preset``: DIS preset (ultrafast, fast, medium); ``flow_max_side``: flow computed at most at
    this size. Call it with ``[H, W, 3]`` uint8 frames in order; it returns the dreamed frame (uint8).
    """

    name = "live"

    def __init__(self, backbone, objective, cfg: DreamConfig, steps_per_frame: int = 1, *,
                 max_size: int | None = None, flow_preset: str = "medium", flow_max_side: int | None = 640,
                 device="cpu"):
        if not isinstance(steps_per_frame, int) or steps_per_frame < 1:
            raise FastdreamError(f"steps per frame must be a whole number >= 1, got {steps_per_frame!r}")
        self.dreamer = Dreamer(backbone, objective, cfg)
        self.cfg = self.dreamer.config
        self.k = steps_per_frame
        self.max_size = max_size
        self.device = torch.device(device)
        self.flow = FlowEstimator(flow_preset, flow_max_side)
        self.gen = torch.Generator().manual_seed(cfg.seed if cfg.seed is not None else torch.seed())
        self.index = 0
        self.steps = 0
        self.skipped_steps = 0
        self.warp_errors: list[float] = []
        self.seconds = {"flow": 0.0, "steps": 0.0}
        self._detail: np.ndarray | None = None   # [H, W, 3] float32: output minus input frame
        self._prev_in: np.ndarray | None = None  # [H, W, 3] uint8
        self._prev_out: np.ndarray | None = None
        self._sizes = None
        self.last_input: torch.Tensor | None = None   # [1, 3, H, W] of the last frame, for the report
        self.last_output: torch.Tensor | None = None

    @property
    def precision(self) -> str:
        return self.dreamer.precision

    def levels(self, h: int, w: int) -> list[tuple[int, int]]:
        """The pyramid, finest first: the octaves of the (max_size-capped) frame size."""
        if self._sizes is None:
            s = 1.0
            if self.max_size is not None and max(h, w) > self.max_size:
                s = self.max_size / max(h, w)
            hh, ww = max(1, round(h * s)), max(1, round(w * s))
            c = self.cfg
            self._sizes = octave_sizes(hh, ww, c.octaves, c.octave_scale, min(c.min_octave_size, hh, ww))
        return self._sizes

    def level_of(self, index: int, n: int) -> int:
        """Pyramid level of frame ``index`` (0 = finest): coarse to fine, in turn."""
        return n - 1 - (index % n)

    def warmup(self, h: int, w: int, rounds: int = 2) -> None:
        """Run the backbone at every level's size once or twice before the stream starts: the first
        passes at a new size (oneDNN's kernels for bf16) cost several times a warm one, and a stream
        should not pay them in its first frames. Changes no state of the dream."""
        g = torch.Generator().manual_seed(0)
        for size in self.levels(h, w):
            x = torch.rand((1, 3, *size), generator=g).to(self.device)
            for _ in range(rounds):
                _, v = self.dreamer.gradient(x)
                float(v)

    def reset(self) -> None:
        """Forget the dream (a new stream, or one whose frame size changed)."""
        self._detail = self._prev_in = self._prev_out = None
        self._sizes = None
        self.index = 0

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """One frame ``[H, W, 3]`` uint8 -> its live dream ``[H, W, 3]`` uint8."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise FastdreamError(f"expected an [H, W, 3] uint8 frame, got {frame.shape} {frame.dtype}")
        H, W = frame.shape[:2]
        if self._prev_in is not None and self._prev_in.shape != frame.shape:
            self.reset()  # the stream changed size: start the dream again
        t0 = time.perf_counter()
        detail, pair = self.carry(frame)
        t1 = time.perf_counter()
        x = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device).permute(2, 0, 1)[None].float().div_(255.0)
        x = x.contiguous()
        if detail is not None:
            cur = (x + torch.from_numpy(detail).to(self.device).permute(2, 0, 1)[None]).clamp_(0, 1)
        else:
            cur = x.clone()
        sizes = self.levels(H, W)
        level = self.level_of(self.index, len(sizes))
        size = sizes[level]
        full = tuple(size) == (H, W)
        img = cur.clone() if full else ops.resample(cur, size, mode="bilinear", antialias=True)
        before = img.clone()
        self._steps(img)
        delta = img.sub_(before)
        out = (cur.add_(delta) if full else ops.octave_upsample_add(delta, cur, mode="bilinear", out=cur)).clamp_(0, 1)
        out8 = out[0].mul(255.0).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        out8 = np.ascontiguousarray(out8)
        # the detail that travels on: the output as written (uint8) minus its input frame
        self._detail = out8.astype(np.float32) * (1.0 / 255.0) - frame.astype(np.float32) * (1.0 / 255.0)
        self.seconds["steps"] += time.perf_counter() - t1
        if pair is not None:
            self.warp_errors.append(warp_error(self._prev_out, out8, pair))
        self.seconds["flow"] += t1 - t0
        self._prev_in, self._prev_out = frame, out8
        self.last_input, self.last_output = x, out
        self.index += 1
        return out8

    def carry(self, frame: np.ndarray) -> tuple[np.ndarray | None, FlowPair | None]:
        """The previous output's detail warped onto ``frame`` along the flow, zero where the flow has
        no trustworthy match (occluded, newly entering): ``([H, W, 3] float32, flow pair)``, or
        ``(None, None)`` for the first frame."""
        if self._prev_in is None:
            return None, None
        pair = self.flow.pair(self._prev_in, frame)
        detail = warp(self._detail, pair.back, maps=pair.maps)
        detail *= pair.mask[..., None]
        return detail, pair

    def _steps(self, img: torch.Tensor) -> None:
        """K steps of the engine's dream step on ``img`` ``[1, 3, h, w]``, in place."""
        cfg = self.cfg
        norms = []
        for _ in range(self.k):
            j = cfg.jitter
            dy, dx = (int(v) for v in torch.randint(-j, j + 1, (2,), generator=self.gen)) if j > 0 else (0, 0)
            to = tuple(int(v) for v in torch.randint(0, 1 << 16, (2,), generator=self.gen))
            grad, _ = self.dreamer.gradient(img, (dy, dx), to)
            norms.append(ops.dream_step(img, grad, step_size=cfg.step_size, sigma=cfg.sigmas() or None,
                                        kernel_size=cfg.smooth_kernel, norm=cfg.norm, lower=cfg.lower,
                                        upper=cfg.upper, shift=(dy, dx)))
        self.steps += len(norms)
        self.skipped_steps += int(torch.isnan(torch.cat(norms)).sum())

    def objective_gain(self) -> float | None:
        """Objective of the last output over that of its input frame (no jitter, fp32 backbone)."""
        if self.last_output is None:
            return None
        before = self.dreamer.evaluate(self.last_input)
        after = self.dreamer.evaluate(self.last_output)
        return after / before if before else None
