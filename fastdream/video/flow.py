"""Optical flow between consecutive frames (OpenCV's DIS), backward warping, and the forward-backward
consistency check that marks pixels with no trustworthy match (occlusions, frame edges).

Conventions: frames are ``[H, W, 3]`` uint8 RGB (or float32); a flow is ``[H, W, 2]`` float32 (dx, dy) in
pixels. ``flow_back = flow(cur, prev)`` says where each pixel of the current frame was in the previous
one: ``cur[y, x] ~ prev[y + dy, x + dx]``.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    if frame.ndim == 2:
        return frame
    if frame.dtype != np.uint8:
        frame = np.clip(frame * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


@dataclasses.dataclass
class FlowPair:
    """Both directions between a previous and a current frame, and the mask of pixels of the current
    frame whose backward match is consistent (1 = trust the warp, 0 = occluded / out of frame)."""

    back: np.ndarray      # [H, W, 2] current -> previous
    fwd: np.ndarray       # [H, W, 2] previous -> current
    mask: np.ndarray      # [H, W] float32 in {0, 1}
    maps: tuple | None = None   # (x, y) sampling maps of ``back`` ([H, W] float32 each), computed once


class FlowEstimator:
    """DIS optical flow (``preset``: ultrafast, fast, medium), optionally computed at a reduced size
    (``max_side``) and scaled back up: flow is smooth, so 640 px is plenty for coherence."""

    def __init__(self, preset: str = "medium", max_side: int | None = 640):
        import cv2

        self.dis = cv2.DISOpticalFlow_create(PRESETS[preset])
        self.max_side = max_side

    def flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Flow from frame ``a`` to ``b``: ``a[y, x] ~ b[y + dy, x + dx]``; ``[H, W, 2]`` float32."""
        import cv2

        ga, gb = _gray(a), _gray(b)
        H, W = ga.shape
        s = 1.0
        if self.max_side and max(H, W) > self.max_side:
            s = self.max_side / max(H, W)
            size = (max(8, round(W * s)), max(8, round(H * s)))
            ga = cv2.resize(ga, size, interpolation=cv2.INTER_AREA)
            gb = cv2.resize(gb, size, interpolation=cv2.INTER_AREA)
        f = self.dis.calc(ga, gb, None)
        if s != 1.0:
            f = cv2.resize(f, (W, H), interpolation=cv2.INTER_LINEAR) / s
        return f.astype(np.float32, copy=False)

    def pair(self, prev: np.ndarray, cur: np.ndarray) -> FlowPair:
        back = self.flow(cur, prev)
        fwd = self.flow(prev, cur)
        maps = _grid(back)
        return FlowPair(back, fwd, occlusion_mask(back, fwd, maps=maps), maps)


@functools.lru_cache(maxsize=4)
def _base_grid(H: int, W: int):
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    xs.flags.writeable = ys.flags.writeable = False
    return xs, ys


def _grid(flow: np.ndarray):
    import cv2

    xs, ys = _base_grid(*flow.shape[:2])
    fx, fy = cv2.split(flow)  # contiguous planes: numpy on a last axis of 2 is several times slower
    return fx.__iadd__(xs), fy.__iadd__(ys)


def _sq_norm(v: np.ndarray) -> np.ndarray:
    """``|v|^2`` per pixel of a ``[H, W, 2]`` field."""
    import cv2

    x, y = cv2.split(v)
    x *= x
    y *= y
    return x.__iadd__(y)


def warp(image: np.ndarray, flow_back: np.ndarray, border: str = "replicate", maps=None) -> np.ndarray:
    """Pull ``image`` (the previous frame, ``[H, W, C]``) onto the current frame along ``flow_back``
    (bilinear). Same dtype as ``image``. ``maps``: ``FlowPair.maps`` of that flow, if at hand."""
    import cv2

    mx, my = maps if maps is not None else _grid(flow_back)
    mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
    return cv2.remap(image, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=mode)


def occlusion_mask(back: np.ndarray, fwd: np.ndarray, alpha: float = 0.01, beta: float = 0.5, maps=None) -> np.ndarray:
    """Forward-backward check (Sundaram et al. 2010): a pixel of the current frame is trusted when going
    back along ``back`` and forward again along ``fwd`` returns it to itself,
    ``|b + f(x + b)|^2 <= alpha (|b|^2 + |f(x + b)|^2) + beta``, and its match lies inside the frame.
    ``[H, W]`` float32, 1 = trusted."""
    import cv2

    mx, my = maps if maps is not None else _grid(back)
    f_at = cv2.remap(fwd, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    err = _sq_norm(back + f_at)
    bound = _sq_norm(back)
    bound += _sq_norm(f_at)
    bound *= alpha
    bound += beta
    H, W = back.shape[:2]
    inside = (mx >= 0) & (mx <= W - 1) & (my >= 0) & (my <= H - 1)
    return ((err <= bound) & inside).astype(np.float32)


def warp_error(prev_out: np.ndarray, cur_out: np.ndarray, pair: FlowPair) -> float:
    """Mean absolute difference (pixel values in [0, 1]) between ``cur_out`` and ``prev_out`` warped onto
    it by the input's flow, over the trusted (non-occluded) pixels only."""
    import cv2

    w = warp(prev_out, pair.back, maps=pair.maps)
    if w.dtype != cur_out.dtype:
        w, cur_out = w.astype(np.float32), cur_out.astype(np.float32)
    m = (pair.mask > 0.5).astype(np.uint8)
    if not m.any():
        return float("nan")
    d = cv2.absdiff(np.ascontiguousarray(cur_out), np.ascontiguousarray(w))
    per_channel = cv2.mean(d, mask=m)[: d.shape[2] if d.ndim == 3 else 1]  # means over the trusted pixels
    scale = 255.0 if cur_out.dtype == np.uint8 else 1.0
    return float(sum(per_channel) / len(per_channel) / scale)
