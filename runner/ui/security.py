"""Who may talk to `tvo ui`, and which paths it may touch.

A local server that starts processes is a target for any web page the user opens, so (as
Jupyter does):
- every API request carries the session's token: the `tvo_token` cookie that opening the printed
  URL sets (SameSite=Strict, HttpOnly), or the X-TVO-Token header the page sends; a request that
  changes state (POST) needs the header, which no other site's page can set without our consent
  (a custom header makes the browser ask first, and we never answer yes);
- the Host header must name this machine: a loopback name or address, the host the server is
  bound to, or (bound to every interface) an IP address or this machine's name. A page of
  evil.example whose name is rebound to 127.0.0.1 (DNS rebinding) still says Host: evil.example;
- an Origin header, when a browser sends one, must be this server's own: another site's page may
  not post here (CSRF), nor read here;
- a grid is named by its folder name under OUT_ROOT only; the name is checked before any path is
  built, and the resolved folder (symlinks followed) must sit directly in the resolved root.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import secrets
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN_COOKIE = "tvo_token"
TOKEN_HEADER = "x-tvo-token"
TOKEN_QUERY = "token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
# Pages and assets anyone on an allowed Host may load: they hold no data (the page asks the API,
# which needs the token). Everything else needs the token.
PUBLIC_PATHS = frozenset({"/", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NO_SNIFF = (b"x-content-type-options", b"nosniff")

# Grid folders are grid names (runner.grid.expand's rule) or `train`; job ids are 12 hex digits.
_GRID_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_JOB_ID = re.compile(r"[0-9a-f]{12}")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def new_token() -> str:
    return secrets.token_hex(24)


class PathError(ValueError):
    """A grid or job name that does not name one under OUT_ROOT; one line, said to the user."""


def grid_dir(out_root: Path, name: str) -> Path:
    """The folder of grid `name` under `out_root`, or PathError.

    The name is a plain folder name (no separators, no `..`, no leading dot), and the folder,
    resolved, must be a direct child of the resolved root: a symlink that leads out is refused.
    """
    if not _GRID_NAME.fullmatch(name) or ".." in name:
        raise PathError(f"no grid {name[:60]!r}: a grid is named by its folder under the output "
                        "root (letters, digits, '-', '_', '.'; no '/' or '..')")
    root = out_root.resolve()
    folder = (root / name).resolve()
    if folder.parent != root or not folder.is_dir():
        raise PathError(f"no grid {name!r} under {out_root}")
    return folder


def check_job_id(job_id: str) -> str:
    if not _JOB_ID.fullmatch(job_id):
        raise PathError(f"no job {job_id[:60]!r}: a job id is 12 hex digits, as `tvo status` "
                        "lists them")
    return job_id


@dataclass(frozen=True)
class Access:
    """The session's token and the host names it answers to."""

    token: str
    bound_host: str

    def host_allowed(self, host_header: str) -> bool:
        name = _host_name(host_header)
        if name is None:
            return False
        if name in LOOPBACK_NAMES or name == self.bound_host.lower():
            return True
        if self.bound_host in WILDCARD_HOSTS:  # reachable from the network on purpose
            return _is_ip(name) or name in _machine_names()
        return False

    def token_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


def _host_name(host_header: str) -> str | None:
    """The name in a Host header without its port ("[::1]:80" -> "::1"), lower case."""
    try:
        parts = urlsplit(f"//{host_header}")
        name = parts.hostname
        _ = parts.port  # raises on a port that is no number
    except ValueError:
        return None
    return name.lower() if name else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _machine_names() -> set[str]:
    return {socket.gethostname().lower(), socket.getfqdn().lower()}


def _headers(scope: Scope) -> dict[str, str]:
    return {key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in scope.get("headers", [])}


def request_token(scope: Scope, headers: dict[str, str]) -> tuple[str | None, str | None]:
    """(token from the header, token from the cookie or the URL's ?token=)."""
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:  # http.cookies raises CookieError (and worse) on junk: no cookie then
        cookie = SimpleCookie()
    from_cookie = cookie[TOKEN_COOKIE].value if TOKEN_COOKIE in cookie else None
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    from_query = query.get(TOKEN_QUERY, [None])[0]
    return headers.get(TOKEN_HEADER), from_query or from_cookie


class Guard:
    """ASGI middleware: refuse foreign Hosts and Origins, and requests without the token."""

    def __init__(self, app: App, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async def send_sealed(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":  # no response read as another type
                message["headers"] = [*message.get("headers", []), NO_SNIFF]
            await send(message)

        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send_sealed)
            return
        status, message = refusal
        body = json.dumps({"error": message}).encode()
        await send_sealed({"type": "http.response.start", "status": status,
                           "headers": [(b"content-type", b"application/json"),
                                       (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, message) when the request is refused, else None."""
        headers = _headers(scope)
        host = headers.get("host", "")
        if not self.access.host_allowed(host):
            return 403, (f"Host {host[:80]!r} is not this server's: open the URL that `tvo ui` "
                         "printed (requests for other host names are refused against DNS "
                         "rebinding)")
        origin = headers.get("origin")
        if origin is not None and not _same_origin(origin, host):
            return 403, (f"Origin {origin[:80]!r} is not this server's: another site's page may "
                         "not use tvo ui")
        path = scope.get("path", "")
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return None
        header_token, other_token = request_token(scope, headers)
        if scope.get("method", "GET") in STATE_CHANGING:
            if not self.access.token_ok(header_token):
                return 401, ("this request changes state and needs the session's token in the "
                             "X-TVO-Token header (the page sends it; the token is in the URL "
                             "that `tvo ui` printed)")
            return None
        if self.access.token_ok(header_token) or self.access.token_ok(other_token):
            return None
        return 401, ("no valid token: open the URL that `tvo ui` printed "
                     "(http://HOST:PORT/?token=...)")


def _same_origin(origin: str, host_header: str) -> bool:
    """Whether a browser's Origin is this server as the request addressed it (scheme http)."""
    parts = urlsplit(origin)
    return parts.scheme == "http" and parts.netloc.lower() == host_header.lower() != ""
