"""Running the viewer: the store opened read-only, a token beyond loopback, uvicorn.

Kept apart from ``app.py`` so the app can be tested in-process (Starlette's client, or uvicorn in
a thread) and the CLI stays a thin shell over ``serve``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, replace

from personae.errors import UserError
from personae.store.repo import Store
from personae.web.access import is_loopback, new_token


@dataclass(frozen=True)
class Address:
    """Where the viewer listens, and the address to open (with the token, if one is needed)."""

    host: str
    port: int
    token: str | None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"  # what to type on this machine; any of its addresses works
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")


def address(host: str, port: int) -> Address:
    """Loopback: no token (only this machine can connect). Anything else: a new random token."""
    return Address(host, port, None if is_loopback(host) else new_token())


def listen(where: Address) -> tuple[socket.socket, Address]:
    """The listening socket, bound here so a busy port is our error, not the server's exit;
    port 0 picks a free one, and the address returned has the port actually bound."""
    family = socket.AF_INET6 if ":" in where.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((where.host, where.port))
        sock.listen(128)  # connections queue from now on, before uvicorn takes the socket
    except (OSError, OverflowError) as error:
        sock.close()
        reason = getattr(error, "strerror", None) or error
        raise UserError(
            f"Cannot listen on {where.host}:{where.port}: {reason}. Choose another --port (or --host)."
        ) from None
    return sock, replace(where, port=sock.getsockname()[1])


def serve(db: str | None, where: Address, announce: Callable[[str, Address], None]) -> None:
    """Serve until interrupted. ``announce`` is told the database and the address (with the
    port bound) once the store is open and the socket listens, before the first request."""
    try:
        import uvicorn

        from personae.web.app import make_app
    except ImportError as error:
        raise UserError(
            f"`personae serve` needs the web extra ({error.name} is not installed): "
            "pip install 'personae[web]'"
        ) from None
    with Store.open_readonly(db) as store:
        app = make_app(store, token=where.token)
        sock, bound = listen(where)
        with sock:
            announce(store.path, bound)
            config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
            uvicorn.Server(config).run(sockets=[sock])
