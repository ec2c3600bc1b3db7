"""The guard in front of every request of `clarity ui`: who may talk to the page, and the headers every
answer carries. An ASGI middleware, so it sees each request before any route and each answer's headers.

What holds, for every HTTP request, in this order:
- **Host.** The `Host` header must be exactly `127.0.0.1:<port>` (the address and port the page is bound
  to). Anything else (a DNS-rebinding page whose name now points at 127.0.0.1, `localhost`, another
  port) is answered 403 and reaches nothing.
- **Token to cookie.** A request carrying `?token=<the token>` gets the token as a cookie
  (`HttpOnly; SameSite=Strict; Path=/`, named after the port: cookies are shared by every port of a host)
  and a 303 redirect to the same path without the query, so the token leaves the address bar and the
  history entry it came with. A wrong token is answered 401.
- **Cookie.** Every other request must carry that cookie; without it: 401, with one line that says to
  open the URL `clarity ui` printed. Compared in constant time.
- **Writes.** Only GET, HEAD and POST are served (405 otherwise); a POST must carry `Origin:
  http://127.0.0.1:<port>` and the header `X-CSRF-Token` equal to the page's CSRF token (which only a
  same-origin script can read, from `/api/session`): else 403, and nothing runs.
- **Headers.** Every answer, refusals included, carries a Content-Security-Policy that allows scripts,
  styles, images and connections from the page's own origin only (no inline script, no `eval`, no
  frames), plus `nosniff`, `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY` and `Cache-Control:
  no-store`.

Not guaranteed: secrecy from other processes of the same user (they can read this process's memory and
its stdout), nor from other local servers on 127.0.0.1 that this browser visits (cookies do not tell
ports apart; the cookie's name does, its value would still be sent to them).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class Secrets:
    """The page's two secrets: `token` (in the printed URL, then the cookie) and `csrf` (sent by the
    page's script on every write)."""

    token: str
    csrf: str

    @classmethod
    def new(cls) -> Secrets:
        return cls(token=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32))


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


class Guard:
    """The middleware: `Guard(app, secrets, port)` (see the module docstring for what it enforces)."""

    def __init__(self, app: ASGIApp, keys: Secrets, port: int) -> None:
        self.app = app
        self.keys = keys
        self.host = f"127.0.0.1:{port}"
        self.origin = f"http://{self.host}"
        self.cookie = f"clarity_ui_{port}"

    @property
    def url(self) -> str:
        """The address to open: the page with the token."""
        return f"{self.origin}/?token={self.keys.token}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan; no websocket route exists
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, text, extra = refusal
            await _plain(send, status, text, extra)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """(status, text, extra headers) of the answer that refuses this request, or None to serve it."""
        if headers.get("host") != self.host:
            return 403, f"refused: this page answers only to Host {self.host}", []
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if "token" in query:
            if not _same(query["token"], self.keys.token):
                return 401, "refused: wrong token; open the URL that `clarity ui` printed", []
            cookie = f"{self.cookie}={self.keys.token}; HttpOnly; SameSite=Strict; Path=/"
            return 303, "signed in", [(b"location", (scope.get("path") or "/").encode()),
                                      (b"set-cookie", cookie.encode())]
        if not _same(_cookie(headers.get("cookie", ""), self.cookie), self.keys.token):
            return 401, "refused: open the URL that `clarity ui` printed (it signs this browser in)", []
        method = scope.get("method", "GET")
        if method in SAFE_METHODS:
            return None
        if method != "POST":
            return 405, f"refused: method {method} is not served", [(b"allow", b"GET, HEAD, POST")]
        if headers.get("origin") != self.origin:
            return 403, f"refused: a write must come from {self.origin}", []
        if not _same(headers.get(CSRF_HEADER), self.keys.csrf):
            return 403, "refused: missing or wrong CSRF token; reload the page", []
        return None


def _cookie(header: str, name: str) -> str | None:
    """The value of cookie `name` in a Cookie header (by hand: one malformed cookie of another local
    site must not hide ours, as it can in `http.cookies`)."""
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


async def _plain(send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *extra, *HEADERS]})
    await send({"type": "http.response.body", "body": body})
