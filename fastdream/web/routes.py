"""The routes of the web app (``fastdream.web.app`` lists them): the page, options, dream jobs and
their event streams, results and reports, the ONNX filter, ONNX Runtime Web's files and the Live tab's
WebSocket."""
from __future__ import annotations

import asyncio
import base64
import json
import pathlib
import re

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from fastdream.errors import FastdreamError
from fastdream.web.jobs import FINAL, QueueFull
from fastdream.web.live import serve_live
from fastdream.web.validation import BadRequest, build_request, load_upload, parse_settings, read_limited

HERE = pathlib.Path(__file__).resolve().parent
STATIC = HERE / "static"
VENDOR = STATIC / "vendor" / "onnxruntime-web"


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def make_routes(cfg, queue, device, finfo: dict, fpath: pathlib.Path, live_slot) -> list:
    """The app's routes for a server of ``cfg`` (ServerConfig) with its job ``queue``, on ``device``,
    serving the filter at ``fpath`` (``finfo``: its ``filter_info``) and one live stream at a time
    through ``live_slot``."""
    limit = int(cfg.max_upload_mb * 1e6)
    state: dict = {}

    def backbone():
        from fastdream.backbones import get_backbone

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
            body = await read_limited(request, limit)

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
                picture = load_upload(data, "photo", cfg.max_pixels)
                guide = load_upload(gdata, "guide picture", cfg.max_pixels) if gdata else None
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

    return [
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
