"""The server's ASGI middleware: the Host check (Starlette's ``TrustedHostMiddleware``, a guard against
DNS rebinding) and the headers every response carries."""
from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse


def host_patterns(allowed_hosts) -> list[str] | None:
    """Host names as ``TrustedHostMiddleware`` compares them: IPv6 literals in brackets (``::1`` ->
    ``[::1]``, the form of a Host header), names in lower case."""
    if allowed_hosts is None:
        return None
    return [f"[{h}]" if ":" in h and not h.startswith("[") else h.lower() for h in allowed_hosts]


class HostCheck:
    """Refuse requests whose Host header is not one of ``allowed_hosts`` (None: any).

    ``TrustedHostMiddleware`` decides (its parsing of the header, its patterns, no ``www.`` redirect);
    only its refusal is given in this server's form: a JSON ``{"error"}`` with status 400, or closing a
    WebSocket with 1008 (policy violation)."""

    PASSED = "fastdream.host_ok"   # set in the scope when TrustedHostMiddleware lets a request through

    def __init__(self, app, allowed_hosts=None):
        self.app = app
        self.check = TrustedHostMiddleware(self._passed, allowed_hosts=host_patterns(allowed_hosts),
                                           www_redirect=False)

    async def _passed(self, scope, receive, send):
        scope[self.PASSED] = True
        await self.app(scope, receive, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or self.check.allow_any:
            return await self.app(scope, receive, send)
        refused = False

        async def send_or_refuse(message):
            nonlocal refused
            if scope.get(self.PASSED):
                return await send(message)
            if refused:
                return  # the rest of TrustedHostMiddleware's own refusal
            refused = True
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            host = Headers(scope=scope).get("host", "")
            await JSONResponse({"error": f"unexpected Host header {host[:60]!r}"}, status_code=400)(
                scope, receive, send)

        await self.check(scope, receive, send_or_refuse)


class SecurityHeaders:
    """Headers on every HTTP response. Cross-origin isolation (COOP + COEP) lets ONNX Runtime Web use
    threads."""

    HEADERS = [(b"cross-origin-opener-policy", b"same-origin"), (b"cross-origin-embedder-policy", b"require-corp"),
               (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + self.HEADERS}
            await send(message)

        await self.app(scope, receive, send_with_headers)
