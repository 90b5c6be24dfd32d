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

The modules, by job: ``routes`` (the handlers above), ``validation`` (uploads, form fields, the objective
objects checked against the backbone), ``onnx_info`` (what the Live tab needs to know about the filter),
``middleware`` (the Host check, Starlette's ``TrustedHostMiddleware``; security headers), ``jobs`` (the
queue and its worker), ``live`` (the Live tab's dream mode).
"""
from __future__ import annotations

import contextlib
import dataclasses
import pathlib

from starlette.applications import Starlette
from starlette.middleware import Middleware

from fastdream.web.jobs import JobQueue
from fastdream.web.middleware import HostCheck, SecurityHeaders
from fastdream.web.onnx_info import filter_info
from fastdream.web.routes import STATIC, VENDOR, make_routes  # noqa: F401  (VENDOR: the vendored runtime)
from fastdream.web.validation import BadRequest, build_request, parse_settings  # noqa: F401

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_FILTER = HERE.parent / "filters" / "default.onnx"


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


def create_app(config: ServerConfig | None = None) -> Starlette:
    from fastdream.convert import resolve_device
    from fastdream.web.live import LiveSlot

    cfg = config or ServerConfig()
    device = resolve_device(cfg.device)
    queue = JobQueue(device, max_queued=cfg.max_queued, timeout=cfg.job_timeout, ttl=cfg.ttl, backbone=cfg.backbone)
    fpath = pathlib.Path(cfg.filter_path) if cfg.filter_path else DEFAULT_FILTER
    finfo = filter_info(fpath)
    live_slot = LiveSlot(max_waiting=cfg.max_queued)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        queue.shutdown()

    app = Starlette(routes=make_routes(cfg, queue, device, finfo, fpath, live_slot), lifespan=lifespan,
                    middleware=[Middleware(HostCheck, allowed_hosts=cfg.allowed_hosts), Middleware(SecurityHeaders)])
    app.state.queue = queue
    app.state.config = cfg
    app.state.filter = finfo
    app.state.live = live_slot
    return app
