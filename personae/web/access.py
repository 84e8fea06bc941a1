"""Who may look, and what a page may do: the access token and the security headers.

On loopback (the default) the viewer answers only requests addressed to a loopback name, so a
web page elsewhere cannot reach it through DNS rebinding. Beyond loopback every request needs the
token printed at start (as Jupyter does): ``?token=…`` once (it becomes an HttpOnly cookie and
the address is cleaned), or an ``Authorization: Bearer …`` header for scripts. Missing: 401;
wrong: 403. Both are plain ASGI middleware, so they guard static files and every route alike.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "personae_token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# Scripts only from this server's /static: no inline script, no eval, nothing from elsewhere.
CONTENT_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = (
    (b"content-security-policy", CONTENT_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
)


def new_token() -> str:
    return secrets.token_urlsafe(24)


def host_name(header: str) -> str:
    """The name in a Host header, without its port: ``[::1]:8765`` -> ``[::1]``."""
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0]


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


async def plain(send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = text.encode("utf-8")
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


class SecurityHeaders:
    """The headers above on every response; on loopback, requests for any other host refused."""

    def __init__(self, app: ASGIApp, *, loopback_only: bool = False) -> None:
        self.app = app
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        if self.loopback_only:
            if not is_loopback(host_name(_header(scope, b"host"))):
                await plain(with_headers, 403, "This viewer answers on loopback only (127.0.0.1).\n")
                return
        await self.app(scope, receive, with_headers)


class TokenGate:
    """Every request carries the token: in the cookie, an Authorization header, or ``?token=``."""

    def __init__(self, app: ASGIApp, *, token: str) -> None:
        self.app = app
        self.token = token

    def _matches(self, given: str) -> bool:
        return secrets.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = parse_qsl(bytes(scope.get("query_string", b"")).decode("latin-1"), keep_blank_values=True)
        in_query = [v for k, v in query if k == "token"]
        if in_query:
            if not self._matches(in_query[0]):
                await plain(send, 403, "Wrong access token: use the address `personae serve` printed.\n")
                return
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = scope.get("path", "/") + (f"?{rest}" if rest else "")
            cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            await plain(send, 303, "Signed in.\n", [(b"location", location.encode("latin-1")),
                                                   (b"set-cookie", cookie.encode())])
            return
        given = ""
        authorization = _header(scope, b"authorization")
        if authorization.lower().startswith(("bearer ", "token ")):
            given = authorization.split(" ", 1)[1].strip()
        else:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(_header(scope, b"cookie"))
            except Exception:  # noqa: BLE001 - a malformed cookie header is no token
                pass
            given = jar[COOKIE].value if COOKIE in jar else ""
        if not given:
            await plain(send, 401, "This viewer needs its access token: open the address "
                        "`personae serve` printed (it ends in ?token=…).\n",
                        [(b"www-authenticate", b'Bearer realm="personae"')])
            return
        if not self._matches(given):
            await plain(send, 403, "Wrong access token: use the address `personae serve` printed.\n")
            return
        await self.app(scope, receive, send)
