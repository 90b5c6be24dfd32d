"""The web app behind ``fastdream serve``: a Starlette application (served by uvicorn).

Routes::

    GET  /                          the page (Dream and Live tabs)
    GET  /api/options               presets, layers, classes, limits, whether a filter is loaded
    POST /api/jobs                  multipart form: image (+ guide) and dream settings -> {id, position}
    GET  /api/jobs/{id}             the job's state as JSON
    GET  /api/jobs/{id}/events      server-sent events: state, octave (a JPEG preview), done
                                    (closing this stream before the job ends cancels the job)
    POST /api/jobs/{id}/cancel      stop the job (or forget a finished one)
    GET  /api/jobs/{id}/result      the result PNG; the server forgets the job afterwards
    GET  /api/jobs/{id}/report      the job's report (JSON), while the result is still kept
    GET  /api/status                queue and job counts
    GET  /filter.onnx               the ONNX dream filter the Live tab runs in the browser
    WS   /api/live                  the Live tab's dream mode: webcam JPEGs in, live dream out
                                    (fastdream.web.live; one stream at a time, others queued)
    GET  /static/...                the page's scripts; ONNX Runtime Web under static/vendor/

Uploads are checked before anything else happens: the request size (``max_upload_mb``), then the
picture's header (a known picture format, at most ``max_pixels``), then a full decode with
``fastdream.imageio.open_image``. Client file names are never used.
"""
from __future__ import annotations

import asyncio
import contextlib
import base64
import dataclasses
import json
import math
import os
import pathlib
import re
import tempfile
import warnings

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from fastdream.errors import FastdreamError, InputError
from fastdream.web.jobs import FINAL, FORM_FIELDS, DreamRequest, JobQueue, QueueFull

HERE = pathlib.Path(__file__).resolve().parent
STATIC = HERE / "static"
VENDOR = STATIC / "vendor" / "onnxruntime-web"
DEFAULT_FILTER = HERE.parent / "filters" / "default.onnx"

# Picture formats an upload may have (Pillow's names), whatever the client says its type is.
UPLOAD_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}
_NAME = re.compile(r"[A-Za-z0-9_.]{1,64}")
_CLASS = re.compile(r"[A-Za-z0-9 _'\-,.()]{1,64}")
_KINDS = ("l2", "mean", "l1", "abs_l2")


@dataclasses.dataclass
class ServerConfig:
    device: str = "auto"
    filter_path: str | None = None        # None: the packaged default filter when present
    max_upload_mb: float = 20.0           # whole request (picture + guide + fields)
    max_pixels: int = 40_000_000          # per uploaded picture
    max_side: int = 2048                  # longest side a dream runs at (larger pictures: max_size)
    max_steps: int = 200
    max_queued: int = 4
    job_timeout: float = 600.0            # seconds a job may run
    ttl: float = 600.0                    # seconds a finished result is kept for download
    backbone: str | None = None
    allowed_hosts: list[str] | None = None   # Host headers accepted (DNS-rebinding guard); None: any


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


# -- filter ------------------------------------------------------------------------------------------
def filter_info(path: pathlib.Path | None) -> dict:
    """What the Live tab needs to know about the ONNX filter: where, how big, which size multiple."""
    if path is None or not path.is_file():
        where = f" ({path})" if path is not None else ""
        return {"available": False,
                "message": ("No dream filter is installed" + where + ". Start the server with "
                            "`fastdream serve --filter FILE.onnx` (make one with `fastdream distill` and "
                            "`fastdream export`).")}
    info = {"available": True, "url": "/filter.onnx", "name": path.name, "bytes": path.stat().st_size,
            "pad_multiple": 1, "metadata": {}}
    try:
        import onnx

        m = onnx.load(str(path), load_external_data=False)
        meta = {p.key: p.value for p in m.metadata_props}
        info["metadata"] = {k: v for k, v in meta.items() if k in ("fastdream.format", "fastdream.version",
                                                                   "fastdream.pad_multiple")}
        info["pad_multiple"] = max(1, int(meta.get("fastdream.pad_multiple", "1")))
        info["input"] = m.graph.input[0].name
        info["output"] = m.graph.output[0].name
    except ImportError:
        pass
    except Exception as e:
        return {"available": False, "message": f"The dream filter {path.name} cannot be read: {e}"}
    return info


# -- uploads -----------------------------------------------------------------------------------------
async def _read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it grows past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"the upload is {int(declared) / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(f"the upload is larger than the limit of {limit / 1e6:.0f} MB", 413)
    return bytes(body)


def _load_upload(data: bytes, what: str, max_pixels: int):
    """Bytes from the client -> ``[1, 3, H, W]`` tensor, with the same checks as files on disk."""
    import io

    from PIL import Image, UnidentifiedImageError

    from fastdream.imageio import load_image

    if not data:
        raise InputError(f"{what}: the file is empty")
    try:  # the header only: format and size, before anything is decoded
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                fmt, (w, h) = im.format, im.size
    except Image.DecompressionBombError:  # Pillow's own check, above any max_pixels this server takes
        raise InputError(f"{what}: the picture is more than the limit of {max_pixels / 1e6:.0f} Mpx "
                         "(a decompression bomb?)") from None
    except UnidentifiedImageError:
        raise InputError(f"{what}: this file is not a picture (send a JPEG, PNG, WebP, GIF, BMP or TIFF)") from None
    except Exception as e:
        raise InputError(f"{what}: the file cannot be read ({type(e).__name__})") from None
    if fmt not in UPLOAD_FORMATS:
        raise InputError(f"{what}: a {fmt} file; send a JPEG, PNG, WebP, GIF, BMP or TIFF picture")
    if w * h > max_pixels:
        raise InputError(f"{what}: {w}x{h} pixels is more than the limit of {max_pixels / 1e6:.0f} Mpx "
                         "(a decompression bomb?)")
    # A server-chosen name in a private folder, removed at once: the client's file name is never used.
    fd, tmp = tempfile.mkstemp(prefix="fastdream-upload-", suffix=".img")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            x, _meta = load_image(tmp)
        except InputError as e:
            raise InputError(f"{what}: " + str(e).split(": ", 1)[-1]) from None
    finally:
        os.unlink(tmp)
    return x


def _field(form, name: str, default=None):
    v = form.get(name)
    if v is None or isinstance(v, UploadFile):
        return default
    v = v.strip()
    return v if v != "" else default


def _num(form, name: str, kind, lo, hi, default=None):
    v = _field(form, name)
    if v is None:
        return default
    try:
        x = kind(v)
    except ValueError:
        raise BadRequest(f"{name}: expected {'a whole number' if kind is int else 'a number'}, got {v[:20]!r}")
    if isinstance(x, float) and not math.isfinite(x) or not lo <= x <= hi:
        raise BadRequest(f"{name}: must be between {lo} and {hi}, got {v[:20]}")
    return x


def _region(form) -> str | None:
    v = _field(form, "region")
    if v is None:
        return None
    try:
        box = [float(p) for p in v.split(",")]
    except ValueError:
        box = []
    if len(box) != 4 or not all(math.isfinite(b) and 0 <= b <= 1 for b in box) \
            or not (box[0] < box[2] and box[1] < box[3]):
        raise BadRequest(f"region: expected x0,y0,x1,y1 as fractions of the picture (0..1), got {v[:60]!r}")
    return ",".join(f"{b:.4f}" for b in box)


def parse_settings(form, cfg: ServerConfig) -> dict:
    """Dream settings from the form, validated; only names and numbers, never paths."""
    from fastdream.presets import PRESETS

    preset = _field(form, "preset")
    if preset is not None and preset not in PRESETS:
        raise BadRequest(f"preset: unknown preset {preset[:40]!r}; choose from {', '.join(PRESETS)}")
    layer = _field(form, "layer")
    if layer is not None:
        name, _, kind = layer.partition(":")
        if not _NAME.fullmatch(name) or (kind and kind not in _KINDS):
            raise BadRequest(f"layer: expected a layer name such as block9 (optionally :l2, :mean...), got {layer[:40]!r}")
    cls = _field(form, "class")
    if cls is not None and not _CLASS.fullmatch(cls):
        raise BadRequest(f"class: expected an ImageNet class name or index, got {cls[:40]!r}")
    overrides = {
        "octaves": _num(form, "octaves", int, 1, 12),
        "octave_scale": _num(form, "octave_scale", float, 1.01, 4.0),
        "steps": _num(form, "steps", int, 0, cfg.max_steps),
        "step_size": _num(form, "step_size", float, 1e-6, 10.0),
        "jitter": _num(form, "jitter", int, 0, 512),
        "seed": _num(form, "seed", int, 0, 2**31 - 1, 0),
        # the page's "dream size" is for speed: no steps at full size unless asked (the CLI's --max-size
        # finishes with half the steps there by default)
        "finish_steps": _num(form, "finish_steps", int, 0, cfg.max_steps, 0),
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    max_size = _num(form, "max_size", int, 16, cfg.max_side, None)
    return {"preset": preset, "layer": layer, "class": cls, "region": _region(form), "overrides": overrides,
            "max_size": max_size, "guide_weight": _num(form, "guide_weight", float, -100, 100, 1.0)}


def build_request(settings: dict, picture, guide, cfg: ServerConfig, backbone) -> DreamRequest:
    """A DreamRequest with objective strings checked against the backbone now (a 400, not a failed job)."""
    from fastdream.api import make_config
    from fastdream.engine.spec import build_objective

    H, W = picture.shape[-2:]
    if max(H, W) > cfg.max_side and (settings["max_size"] is None or settings["max_size"] > cfg.max_side):
        settings["max_size"] = cfg.max_side  # the server's cap; the detail is added back at full size
    if max(H, W) > cfg.max_side:  # no step runs above the server's cap: no finishing steps at full size
        settings["overrides"]["finish_steps"] = 0
    cfg_, preset_layers = make_config(settings["preset"], **settings["overrides"])
    at = f"@{settings['region']}" if settings["region"] else ""
    layers = [settings["layer"] + at] if settings["layer"] else []
    classes = [settings["class"] + at] if settings["class"] else []
    if at and not layers and not classes and guide is None:
        layers = [name + at for name in preset_layers]  # a region with the preset's objective
    build_objective(backbone, (H, W), layers=layers, classes=classes, flags=FORM_FIELDS)  # raises on unknown names
    params = {k: settings[k] for k in ("preset", "layer", "class", "region", "max_size")}
    params.update(settings["overrides"])
    params["guide"] = guide is not None
    return DreamRequest(picture=picture, preset=settings["preset"], layers=layers, classes=classes, guide=guide,
                        guide_spec=f"*{settings['guide_weight']}{at}", overrides=settings["overrides"],
                        max_size=settings["max_size"], params=params)


# -- the app -----------------------------------------------------------------------------------------
def create_app(config: ServerConfig | None = None) -> Starlette:
    from fastdream.convert import resolve_device

    cfg = config or ServerConfig()
    device = resolve_device(cfg.device)
    queue = JobQueue(device, max_queued=cfg.max_queued, timeout=cfg.job_timeout, ttl=cfg.ttl, backbone=cfg.backbone)
    fpath = pathlib.Path(cfg.filter_path) if cfg.filter_path else DEFAULT_FILTER
    finfo = filter_info(fpath)
    limit = int(cfg.max_upload_mb * 1e6)
    state: dict = {}

    def backbone():
        from fastdream.api import get_backbone

        return get_backbone(cfg.backbone, device)

    def options_payload():
        if "options" not in state:
            from fastdream.presets import DEFAULT_PRESET, PRESETS

            bb = backbone()
            state["options"] = {
                "presets": [{"name": k, "description": v["description"], "layers": v["layers"],
                             "config": {kk: vv for kk, vv in v["config"].items() if not isinstance(vv, tuple)}}
                            for k, v in PRESETS.items()],
                "default_preset": DEFAULT_PRESET,
                "layers": list(bb.tap_names()),
                "classes": list(bb.class_names or []),
                "limits": {"max_upload_mb": cfg.max_upload_mb, "max_pixels": cfg.max_pixels,
                           "max_side": cfg.max_side, "max_steps": cfg.max_steps, "max_queued": cfg.max_queued,
                           "job_timeout_s": cfg.job_timeout, "ttl_s": cfg.ttl},
                "device": str(device),
                "filter": finfo,
            }
        return state["options"]

    async def index(request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def options(request):
        return JSONResponse(await run_in_threadpool(options_payload))

    from fastdream.web.live import LiveSlot, serve_live

    live_slot = LiveSlot(max_waiting=cfg.max_queued)

    async def status(request):
        return JSONResponse({**queue.stats(), **live_slot.stats()})

    async def live(ws):
        # a page of another site must not stream through this server (cross-site WebSocket hijacking)
        origin, host = ws.headers.get("origin"), ws.headers.get("host", "")
        if origin is not None and origin.split("://", 1)[-1] != host:
            await ws.close(code=1008)
            return
        await ws.accept()
        await serve_live(ws, live_slot, backbone, device, max_side=min(cfg.max_side, 1280))

    async def submit(request: Request):
        try:
            ctype = request.headers.get("content-type", "")
            if not ctype.startswith("multipart/form-data"):
                raise BadRequest("send the picture as multipart/form-data (a form with an 'image' file)", 415)
            body = await _read_limited(request, limit)

            async def replay():  # hand the checked body to Starlette's multipart parser
                yield body

            from starlette.formparsers import MultiPartParser

            try:
                form = await MultiPartParser(request.headers, replay(), max_files=2, max_fields=32,
                                             max_part_size=64 * 1024).parse()
            except Exception as e:
                raise BadRequest(f"the form cannot be read: {e}")
            try:
                image = form.get("image")
                if not isinstance(image, UploadFile):
                    raise BadRequest("no picture: send a file in the form field 'image'")
                settings = parse_settings(form, cfg)
                data = await image.read()
                guide_file = form.get("guide")
                gdata = await guide_file.read() if isinstance(guide_file, UploadFile) else b""
            finally:
                await form.close()

            def prepare():
                picture = _load_upload(data, "photo", cfg.max_pixels)
                guide = _load_upload(gdata, "guide picture", cfg.max_pixels) if gdata else None
                return build_request(settings, picture, guide, cfg, backbone())

            req = await run_in_threadpool(prepare)
            job = queue.submit(req)
        except BadRequest as e:
            return _error(str(e), e.status)
        except QueueFull as e:
            return _error(str(e), 429)
        except FastdreamError as e:
            return _error(str(e), 400)
        return JSONResponse({"id": job.id, "position": queue.position(job), "events": f"/api/jobs/{job.id}/events"},
                            status_code=201)

    def job_state(job) -> dict:
        return {"id": job.id, "status": job.status, "position": queue.position(job), "done": job.done,
                "total": job.total, "message": job.message, "octaves": len(job.previews)}

    async def job_get(request):
        job = queue.get(request.path_params["id"])
        if job is None:
            return _error("no such job (finished jobs are forgotten after their result is downloaded)", 404)
        return JSONResponse(job_state(job))

    async def events(request: Request):
        job = queue.get(request.path_params["id"])
        if job is None:
            return _error("no such job", 404)

        def sse(event: str, data: dict) -> str:
            return f"event: {event}\ndata: {json.dumps(data)}\n\n"

        async def stream():
            seen, sent_previews, finished = -1, 0, False
            try:
                yield "retry: 2000\n\n"
                idle = 0.0
                while True:
                    if job.version != seen:
                        seen = job.version
                        while sent_previews < len(job.previews):
                            img = base64.b64encode(job.previews[sent_previews]).decode()
                            yield sse("octave", {"index": sent_previews, "image": "data:image/jpeg;base64," + img})
                            sent_previews += 1
                        st = job_state(job)
                        yield sse("state", st)
                        if job.status in FINAL:
                            finished = True
                            if job.status == "done":
                                yield sse("done", {"result": f"/api/jobs/{job.id}/result", "report": job.report})
                            return
                        idle = 0.0
                    await asyncio.sleep(0.1)
                    idle += 0.1
                    if idle >= 10.0:
                        yield ": keep-alive\n\n"
                        idle = 0.0
                    if await request.is_disconnected():
                        return
            finally:
                if not finished and job.status not in FINAL:
                    queue.cancel(job.id, "the page was closed", forget=True)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def cancel(request):
        # a beacon sent as the tab closes says ?gone=1: nobody will read the job's state afterwards
        ok = queue.cancel(request.path_params["id"], "cancelled by the user", forget="gone" in request.query_params)
        return JSONResponse({"cancelled": ok}, status_code=200 if ok else 404)

    async def result(request):
        got = queue.take_result(request.path_params["id"])
        if got is None:
            return _error("no result for this job (not finished, failed, already downloaded or expired)", 404)
        png, _ = got
        return Response(png, media_type="image/png",
                        headers={"Content-Disposition": 'attachment; filename="fastdream.png"',
                                 "Cache-Control": "no-store"})

    async def report(request):
        job = queue.get(request.path_params["id"])
        if job is None or job.report is None:
            return _error("no report for this job", 404)
        return Response(json.dumps(job.report, indent=2, default=str), media_type="application/json",
                        headers={"Content-Disposition": 'attachment; filename="fastdream-report.json"'})

    async def filter_file(request):
        if not finfo.get("available"):
            return _error(finfo["message"], 404)
        return FileResponse(fpath, media_type="application/octet-stream", headers={"Cache-Control": "no-cache"})

    async def vendor(request):
        """ONNX Runtime Web's files; the .wasm are stored gzipped and sent with Content-Encoding: gzip."""
        name = request.path_params["name"]
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name) or name.startswith("."):
            return _error("not found", 404)
        types = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm"}
        ctype = types.get(pathlib.Path(name).suffix)
        if ctype is None:
            return _error("not found", 404)
        p = VENDOR / name
        if p.is_file():
            return FileResponse(p, media_type=ctype, headers={"Cache-Control": "public, max-age=86400"})
        gz = VENDOR / (name + ".gz")
        if gz.is_file():
            return FileResponse(gz, media_type=ctype, headers={"Content-Encoding": "gzip",
                                                               "Cache-Control": "public, max-age=86400"})
        return _error("not found", 404)

    routes = [
        Route("/", index),
        Route("/api/options", options),
        Route("/api/status", status),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs/{id}", job_get),
        Route("/api/jobs/{id}/events", events),
        Route("/api/jobs/{id}/cancel", cancel, methods=["POST"]),
        Route("/api/jobs/{id}/result", result),
        Route("/api/jobs/{id}/report", report),
        Route("/filter.onnx", filter_file),
        WebSocketRoute("/api/live", live),
        Route("/static/vendor/onnxruntime-web/{name}", vendor),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        queue.shutdown()

    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(SecurityHeaders, allowed_hosts=cfg.allowed_hosts)])
    app.state.queue = queue
    app.state.config = cfg
    app.state.filter = finfo
    app.state.live = live_slot
    return app


class SecurityHeaders:
    """Pure ASGI middleware: refuse unexpected Host headers (DNS rebinding) and add headers to every
    response. Cross-origin isolation (COOP + COEP) lets ONNX Runtime Web use threads."""

    HEADERS = [(b"cross-origin-opener-policy", b"same-origin"), (b"cross-origin-embedder-policy", b"require-corp"),
               (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]

    def __init__(self, app, allowed_hosts=None):
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        if self.allowed_hosts is not None:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            host = host.strip("[]")
            if host not in self.allowed_hosts:
                if scope["type"] == "websocket":
                    return await send({"type": "websocket.close", "code": 1008})
                return await _error(f"unexpected Host header {host[:60]!r}", 400)(scope, receive, send)
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + self.HEADERS}
            await send(message)

        await self.app(scope, receive, send_with_headers)
