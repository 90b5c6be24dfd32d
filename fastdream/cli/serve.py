"""fastdream serve: a local web page to dream photos (live progress) and run the dream filter on the webcam."""
from __future__ import annotations

import ipaddress
import re
import sys

from fastdream.cli.common import number
from fastdream.errors import FastdreamError, InputError


def add_parser(sub):
    p = sub.add_parser("serve", help="a local web page: dream photos, the dream filter on the webcam",
                       description=(
                           "Serve a web page on this computer: dream a photo with live progress (one job at a time, "
                           "in a bounded queue), and run the distilled ONNX dream filter on the webcam inside the "
                           "browser (ONNX Runtime Web, served from the package). Listens on loopback unless --host "
                           "says otherwise. Needs the 'web' extra: pip install 'fastdream[web]'."))
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer only)")
    p.add_argument("--port", type=number(int, 0, 65535), default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--filter", help="the ONNX dream filter for the Live tab: a file or a shipped filter's name "
                                    "(default: the packaged one, if any)")
    p.add_argument("--device", default="auto", help="where dreams run: auto, cpu or cuda")
    p.add_argument("--backbone", help="default: the embedded EfficientNet-Lite0; or a checkpoint file")
    p.add_argument("--max-upload-mb", type=number(float, 0.01, 1024), default=20.0,
                   help="largest request (picture + guide) in MB (default 20)")
    p.add_argument("--max-pixels", type=number(int, 1, 180_000_000), default=40_000_000,
                   help="largest uploaded picture in pixels (default 40 Mpx)")
    p.add_argument("--max-side", type=number(int, 16, 1 << 16), default=2048,
                   help="dreams run with the longest side at most this (detail added back at full size; default 2048)")
    p.add_argument("--queue", type=number(int, 1, 1000), default=4, help="jobs that may wait (default 4)")
    p.add_argument("--job-timeout", type=number(float, 1, 86400), default=600.0,
                   help="seconds a dream may run before it is stopped (default 600)")
    p.add_argument("--keep", type=number(float, 1, 86400), default=600.0,
                   help="seconds a finished result waits for download before it is deleted (default 600)")
    p.set_defaults(func=run)
    return p


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run(args) -> int:
    try:
        import uvicorn

        from fastdream.web.app import ServerConfig, create_app
    except ImportError as e:
        raise FastdreamError(f"the web server needs the 'web' extra (pip install 'fastdream[web]'): {e}") from None
    if args.filter is not None:
        from fastdream.distill.runtime import resolve_filter

        try:
            path = resolve_filter(args.filter)
        except InputError as e:
            raise InputError(f"--filter {e}") from None
        if not path.is_file():
            raise InputError(f"--filter {args.filter}: is a folder, not an ONNX filter")
        args.filter = str(path)
    loopback = _is_loopback(args.host)
    cfg = ServerConfig(device=args.device, filter_path=args.filter, max_upload_mb=args.max_upload_mb,
                       max_pixels=args.max_pixels, max_side=args.max_side, max_queued=args.queue,
                       job_timeout=args.job_timeout, ttl=args.keep, backbone=args.backbone,
                       allowed_hosts=["127.0.0.1", "localhost", "::1"] if loopback else None)
    app = create_app(cfg)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    # uvicorn logs a failed bind itself and exits (code 3); keep its start-up errors for one line of ours
    import logging

    startup_errors: list[str] = []

    def _hold(record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and not server.started:
            startup_errors.append(record.getMessage())
            return False
        return True

    logging.getLogger("uvicorn.error").addFilter(_hold)

    async def announce():
        import asyncio

        while not server.started:
            await asyncio.sleep(0.05)
        for s in server.servers:
            for sock in s.sockets:
                host, port = sock.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                print(f"fastdream serve: http://{shown}:{port}/ (Ctrl+C to stop)", flush=True)
        if not loopback:
            print("fastdream serve: warning: listening beyond this computer; anyone who can reach it can "
                  "upload pictures and run dreams", file=sys.stderr, flush=True)
        f = app.state.filter
        if not f.get("available"):
            print("fastdream serve: " + f["message"], file=sys.stderr, flush=True)

    import asyncio

    async def main():
        task = asyncio.create_task(announce())
        await server.serve()
        task.cancel()

    try:
        asyncio.run(main())
    except OSError as e:
        raise FastdreamError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    except SystemExit:
        if server.started:
            raise
        why = startup_errors[-1] if startup_errors else "the server did not start"
        m = re.search(r"\[Errno \d+\] .*?: (.+)$", why)  # "[Errno 98] error while attempting to bind ...: address already in use"
        why = m.group(1) if m else why
        hint = "; another program is using it (choose another --port)" if "in use" in why else ""
        raise FastdreamError(f"cannot listen on {args.host}:{args.port}: {why}{hint}") from None
    return 0
