"""Serving the app: bind the socket first (so a taken port is a one-line error and port 0 picks a
free one to print), then hand it to uvicorn, which serves until Ctrl-C or SIGTERM."""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from runner.ui.security import Access, new_token

DEFAULT_PORT = 8731
PORT_TRIES = 20  # with no --port: the default, then the next ones, as Jupyter does


class ServeError(OSError):
    """The server cannot start (port taken, no such address); one line saying what to change."""


@dataclass(frozen=True)
class Bound:
    sock: socket.socket
    host: str
    port: int

    def url(self, token: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        return f"http://{host}:{self.port}/?token={token}"


def bind(host: str, port: int | None) -> Bound:
    """A listening socket on `host`:`port` (None: DEFAULT_PORT or the next free ones; 0: any)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ServeError(f"--host {host!r}: not an address of this machine ({exc.strerror})"
                         ) from None
    family = infos[0][0]
    candidates = [port] if port is not None else list(range(DEFAULT_PORT,
                                                            DEFAULT_PORT + PORT_TRIES))
    for candidate in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE and port is None:
                continue
            if exc.errno == errno.EADDRINUSE:
                raise ServeError(f"--port {port}: the port is in use; choose another, or "
                                 "--port 0 for any free one") from None
            raise ServeError(f"cannot listen on {host}:{candidate}: {exc.strerror}") from None
        sock.listen(128)
        sock.set_inheritable(True)
        return Bound(sock, host, sock.getsockname()[1])
    raise ServeError(f"ports {candidates[0]}-{candidates[-1]} are all in use; pass --port N "
                     "(or --port 0 for any free one)")


def serve(out_root: Path, bound: Bound, announce: Callable[[str], None],
          token: str | None = None) -> None:
    """Serve the app over `out_root` on the bound socket until stopped; `announce` gets the URL
    (with the session's token) once the server is ready to answer it."""
    from runner.ui.app import create_app

    token = token or new_token()
    app = create_app(out_root, Access(token, bound.host))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=2, server_header=False,
                            proxy_headers=False)
    server = Announcing(config, lambda: announce(bound.url(token)))
    threading.Thread(target=_import_ahead, daemon=True, name="tvo-ui-imports").start()
    server.run(sockets=[bound.sock])


def _import_ahead() -> None:
    """Import what the first requests need (polars, pyarrow, the report's readers, scipy's t
    quantiles: about a second on two cores) while the user opens the page."""
    import scipy.special  # noqa: F401

    import runner.ui.service  # noqa: F401


class Announcing(uvicorn.Server):
    """uvicorn's server, calling `on_ready` once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.on_ready()
