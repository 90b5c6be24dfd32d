"""The Live tab's "dream" mode: webcam frames over a WebSocket, the live dream (fastdream.video.live)
back. One live stream per server at a time; the others wait in line and are told their position.

Protocol on ``/api/live`` (one connection = one stream)::

    client -> {"preset": "classic", "layer": null, "class": null, "steps_per_frame": 1}     (text, first)
    server -> {"type": "queued", "position": N}        while others stream (again when N changes)
    server -> {"type": "ready", "steps_per_frame": K, "precision": "bf16", "device": "cpu"}
    client -> a JPEG (binary), one at a time           the newest camera frame, sent when the last came back
    server -> a JPEG (binary)                          its live dream
    server -> {"type": "error", "message": ...}        then the connection closes (bad settings or frame)

The client sends a frame only when the previous dream came back, so a slow dream never builds a
backlog: the page always sends the newest camera frame (the same "drop to the newest" pacing as
``video --live`` on a camera). Frames are checked (a JPEG or PNG, at most ``max_side`` pixels per side
and ``max_frame_bytes``) before they are decoded in full.
"""
from __future__ import annotations

import asyncio
import json
import time

import numpy as np

from fastdream.errors import FastdreamError

MAX_STEPS_PER_FRAME = 8


class LiveSlot:
    """One live stream at a time; others queue (first come, first served) and hear their position."""

    def __init__(self, max_waiting: int = 4):
        self.max_waiting = max_waiting
        self.active: object | None = None
        self.waiting: list = []
        self.cond = asyncio.Condition()
        self.served = 0

    def position(self, who) -> int:
        """0 = streaming now; N = N-th in line."""
        if who is self.active:
            return 0
        return self.waiting.index(who) + 1

    async def acquire(self, who, on_position) -> None:
        """Wait for the slot; ``await on_position(n)`` whenever the line moves. Raises FastdreamError
        when the line is full."""
        async with self.cond:
            if self.active is None and not self.waiting:
                self.active = who
                return
            if len(self.waiting) >= self.max_waiting:
                raise FastdreamError(f"the live stream is busy and {len(self.waiting)} are waiting; try again later")
            self.waiting.append(who)
        try:
            last = None
            while True:
                async with self.cond:
                    if self.active is None and self.waiting and self.waiting[0] is who:
                        self.waiting.pop(0)
                        self.active = who
                        self.cond.notify_all()
                        return
                    pos = self.position(who)
                if pos != last:
                    await on_position(pos)
                    last = pos
                async with self.cond:
                    try:
                        await asyncio.wait_for(self.cond.wait(), timeout=1.0)
                    except asyncio.TimeoutError:
                        pass
        except BaseException:
            async with self.cond:
                if who in self.waiting:
                    self.waiting.remove(who)
                self.cond.notify_all()
            raise

    async def release(self, who) -> None:
        async with self.cond:
            if self.active is who:
                self.active = None
                self.served += 1
            elif who in self.waiting:
                self.waiting.remove(who)
            self.cond.notify_all()

    def stats(self) -> dict:
        return {"live_active": self.active is not None, "live_waiting": len(self.waiting), "live_served": self.served}


def parse_live_settings(msg: str) -> dict:
    """The first message: dream settings as JSON (names and numbers only, checked)."""
    from fastdream.web.validation import BadRequest, class_name, layer_name, preset_name

    try:
        s = json.loads(msg)
    except ValueError:
        raise FastdreamError("the first message must be the settings as JSON") from None
    if not isinstance(s, dict):
        raise FastdreamError("the settings must be a JSON object")
    try:
        preset = preset_name(s.get("preset") or None)
        layer = layer_name(s.get("layer") or None, "layer: expected a layer name such as block9")
        cls = class_name(s.get("class") or None)
    except BadRequest as e:
        raise FastdreamError(str(e)) from None
    k = s.get("steps_per_frame", 1)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_STEPS_PER_FRAME:
        raise FastdreamError(f"steps_per_frame: a whole number from 1 to {MAX_STEPS_PER_FRAME}, got {str(k)[:20]!r}")
    return {"preset": preset, "layer": layer, "class": cls, "steps_per_frame": k}


def decode_frame(data: bytes, max_side: int, max_bytes: int) -> np.ndarray:
    """A JPEG/PNG frame from the browser -> ``[H, W, 3]`` uint8 RGB, checked before the full decode."""
    import cv2

    if not data:
        raise FastdreamError("an empty frame")
    if len(data) > max_bytes:
        raise FastdreamError(f"a frame of {len(data)} bytes; the limit is {max_bytes}")
    if not (data[:3] == b"\xff\xd8\xff" or data[:8] == b"\x89PNG\r\n\x1a\n"):
        raise FastdreamError("a frame must be a JPEG or PNG picture")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise FastdreamError("a frame could not be decoded")
    h, w = img.shape[:2]
    if max(h, w) > max_side or min(h, w) < 16:
        raise FastdreamError(f"a frame of {w}x{h}; live frames are 16 to {max_side} pixels per side")
    return np.ascontiguousarray(img[..., ::-1])


def encode_frame(frame: np.ndarray, quality: int = 85) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise FastdreamError("the dreamed frame could not be encoded")
    return buf.tobytes()


class LiveSession:
    """The live dreamer of one connection, built for the size of its first frame (again if it changes)."""

    def __init__(self, settings: dict, backbone, device):
        self.settings, self.backbone, self.device = settings, backbone, device
        self.live = None
        self.size = None
        self.frames = 0
        self.ms: list[float] = []

    def build(self, h: int, w: int):
        from fastdream.engine.compose import dream_objective
        from fastdream.presets import make_config, preset_objective
        from fastdream.video.live import LiveDreamer
        from fastdream.web.validation import objective_terms

        s = self.settings
        cfg, _ = make_config(s["preset"], recursions=0)
        terms = objective_terms(self.backbone, (h, w), s["layer"], s["class"])
        obj = preset_objective(s["preset"], dream_objective(terms), self.backbone, (h, w))
        self.live = LiveDreamer(self.backbone, obj, cfg, s["steps_per_frame"], flow_preset="fast",
                                flow_max_side=320, device=self.device)
        self.live.warmup(h, w, rounds=1)
        self.size = (h, w)

    def __call__(self, frame: np.ndarray) -> bytes:
        t0 = time.perf_counter()
        if self.size != frame.shape[:2]:
            self.build(*frame.shape[:2])
        out = encode_frame(self.live(frame))
        self.frames += 1
        self.ms.append(1e3 * (time.perf_counter() - t0))
        return out


async def serve_live(ws, slot: LiveSlot, backbone_fn, device, max_side: int = 640, max_frame_bytes: int = 2_000_000):
    """Run one live stream on an accepted Starlette WebSocket until the client goes away."""
    from starlette.concurrency import run_in_threadpool
    from starlette.websockets import WebSocketDisconnect

    who = object()

    async def send_json(d):
        await ws.send_text(json.dumps(d))

    try:
        try:
            first = await ws.receive()
            if first["type"] == "websocket.disconnect":
                return
            if first.get("text") is None:
                raise FastdreamError("the first message must be the settings as JSON")
            settings = parse_live_settings(first["text"])
            await slot.acquire(who, lambda n: send_json({"type": "queued", "position": n}))
            backbone = await run_in_threadpool(backbone_fn)
            session = LiveSession(settings, backbone, device)
            from fastdream.precision import resolve_precision

            await send_json({"type": "ready", "steps_per_frame": settings["steps_per_frame"], "device": str(device),
                             "precision": resolve_precision("auto", device)})
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                data = msg.get("bytes")
                if data is None:
                    continue  # text after the settings: ignored (nothing to say yet)
                frame = decode_frame(data, max_side, max_frame_bytes)
                await ws.send_bytes(await run_in_threadpool(session, frame))
        except FastdreamError as e:
            await send_json({"type": "error", "message": str(e)})
            await ws.close(code=1008)
    except (WebSocketDisconnect, RuntimeError, asyncio.CancelledError):
        pass  # the page went away
    finally:
        await slot.release(who)  # streaming or still in line: either way the line moves on
