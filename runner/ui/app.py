"""The HTTP side of `tvo ui` (Starlette): the page and its assets, and the JSON API the page
calls. Each route parses its request, calls the Service, and turns the library's one-line
errors into JSON answers `{"error": "Error: ..."}` with a status that says whose fault it is."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from runner.cli.console import one_line
from runner.dispatch.cancel import CancelError
from runner.dispatch.outdir import OutDirError
from runner.ui.launch import StartError
from runner.ui.metrics import QueryError, chart_metrics, metric_descriptions
from runner.ui.security import (
    TOKEN_COOKIE,
    Access,
    Guard,
    PathError,
    request_token,
)
from runner.ui.service import NoResults, Service

STATIC = Path(__file__).parent / "static"
# The only files served besides the API: name -> (file, media type). Nothing else on disk is
# reachable through a URL.
ASSETS = {name: (STATIC / name, media_type) for name, media_type in (
    ("app.js", "text/javascript"), ("charts.js", "text/javascript"),
    ("grid.js", "text/javascript"), ("app.css", "text/css"))}
MAX_BODY_BYTES = 2_000_000  # a grid file (at most 1 MB) and the words around it
TOKEN_META = '<meta name="tvo-token" content="{token}">'
# The page runs only this server's scripts and talks only to it; plotly draws with inline
# styles, its WebGL charts (parallel coordinates, through regl) compile their shader code with
# `new Function`, and its downloads are data: and blob: URLs. No frame may hold it (clickjacking).
CONTENT_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-eval'; "
                  "style-src 'self' 'unsafe-inline'; "
                  "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
                  "base-uri 'none'; form-action 'none'")

# exception -> HTTP status: the request's fault (400), a name with nothing behind it (404),
# a grid without results yet (409)
STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (PathError, 404), (NoResults, 409), (StartError, 400), (QueryError, 400),
    (OutDirError, 400), (CancelError, 400))

Handler = Callable[[Request], Awaitable[Response]]


def api(work: Callable[..., Any]) -> Handler:
    """A route whose `work(request, body)` runs off the event loop and answers JSON."""

    @functools.wraps(work)
    async def route(request: Request) -> Response:
        body = None
        if request.method == "POST":
            raw = await request.body()
            if len(raw) > MAX_BODY_BYTES:
                return _error(413, f"the request is larger than {MAX_BODY_BYTES:,} bytes")
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return _error(400, "the request body is not JSON")
        try:
            answer = await run_in_threadpool(work, request, body)
        except Exception as exc:
            status = next((code for kind, code in STATUS_OF if isinstance(exc, kind)), None)
            if status is None:
                raise
            return _error(status, str(exc))
        return JSONResponse(answer, headers={"cache-control": "no-store"})

    return route


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": f"Error: {one_line(message)}"}, status_code=status,
                        headers={"cache-control": "no-store"})


def _service(request: Request) -> Service:
    return request.app.state.service


def _int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if not value.lstrip("-").isdigit():
        raise QueryError(f"{name}: got {value[:20]!r}; expected a whole number")
    return int(value)


def _keys(request: Request) -> list[str] | None:
    """?by=strategy,lr -> the settings; no `by` at all -> None (the default grouping)."""
    if "by" not in request.query_params:
        return None
    return [key for key in request.query_params["by"].split(",") if key]


# -- routes ------------------------------------------------------------------------------------


@api
def session(request: Request, body: Any) -> dict[str, Any]:
    from cluster.backends import BACKENDS
    from runner.grid.files import shipped_grids

    service = _service(request)
    return {"out_root": str(service.out_root), "metrics": list(chart_metrics()),
            "metric_descriptions": metric_descriptions(),
            "backends": list(BACKENDS), "shipped": list(shipped_grids()),
            "read_ahead_done": service.read_ahead_done}


@api
def grid_list(request: Request, body: Any) -> Any:
    return {"grids": _service(request).grid_list()}


@api
def grid(request: Request, body: Any) -> Any:
    return _service(request).grid(request.path_params["name"])


@api
def grid_curves(request: Request, body: Any) -> Any:
    query = request.query_params
    return _service(request).curves(request.path_params["name"], query.get("metric"),
                                    _keys(request), query.get("seeds") in ("1", "true"))


@api
def grid_table(request: Request, body: Any) -> Any:
    query = request.query_params
    filters = {key[2:]: value for key, value in query.items() if key.startswith("f.")}
    return _service(request).table(
        request.path_params["name"], query.get("metric"), query.get("level", "job"),
        _keys(request), query.get("sort") or None, query.get("desc") in ("1", "true"), filters,
        _int(request, "offset", 0), _int(request, "limit", 50))


@api
def grid_parallel(request: Request, body: Any) -> Any:
    return _service(request).parallel(request.path_params["name"],
                                      request.query_params.get("metric"))


@api
def grid_comparison(request: Request, body: Any) -> Any:
    return _service(request).comparison(request.path_params["name"])


@api
def grid_jobs(request: Request, body: Any) -> Any:
    return _service(request).jobs(request.path_params["name"], request.query_params.get("state"),
                                  _int(request, "offset", 0))


@api
def job(request: Request, body: Any) -> Any:
    return _service(request).job(request.path_params["name"], request.path_params["job_id"])


@api
def plan(request: Request, body: Any) -> Any:
    return _service(request).plan(body)


@api
def start(request: Request, body: Any) -> Any:
    return _service(request).start(body)


@api
def cancel(request: Request, body: Any) -> Any:
    return _service(request).cancel(request.path_params["name"], body)


async def page(request: Request) -> Response:
    """The app's one page. Opened with the right token (the printed URL, or the cookie that
    URL set), it carries the token for the page's requests; otherwise it says where to find it."""
    access: Access = request.app.state.access
    header, given = request_token(request.scope, {k.lower(): v for k, v in request.headers.items()})
    authorised = access.token_ok(given) or access.token_ok(header)
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    html = html.replace("<!--token-->", TOKEN_META.format(token=access.token) if authorised
                        else "")
    response = HTMLResponse(html, headers={"cache-control": "no-store",
                                           "content-security-policy": CONTENT_POLICY,
                                           "x-frame-options": "DENY",
                                           "referrer-policy": "no-referrer"})
    if authorised and access.token_ok(request.query_params.get("token")):
        response.set_cookie(TOKEN_COOKIE, access.token, httponly=True, samesite="strict",
                            path="/")
    return response


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name == "plotly.min.js":
        return Response(_plotly_js(), media_type="text/javascript",
                        headers={"cache-control": "private, max-age=86400"})
    if name not in ASSETS:
        return _error(404, f"no asset {name[:60]!r}")
    path, media_type = ASSETS[name]
    return Response(path.read_bytes(), media_type=media_type,
                    headers={"cache-control": "no-cache"})


@functools.cache
def _plotly_js() -> bytes:
    """plotly.js from the installed plotly package, as report.html embeds it: no CDN."""
    from runner.report.html import plotly_js

    return plotly_js().encode()


async def favicon(request: Request) -> Response:
    return Response(status_code=204)


ROUTES = [
    Route("/", page), Route("/favicon.ico", favicon), Route("/static/{name}", asset),
    Route("/api/session", session), Route("/api/grids", grid_list),
    Route("/api/grids/{name}", grid), Route("/api/grids/{name}/curves", grid_curves),
    Route("/api/grids/{name}/table", grid_table),
    Route("/api/grids/{name}/parallel", grid_parallel),
    Route("/api/grids/{name}/comparison", grid_comparison),
    Route("/api/grids/{name}/jobs", grid_jobs), Route("/api/grids/{name}/jobs/{job_id}", job),
    Route("/api/grids/{name}/cancel", cancel, methods=["POST"]),
    Route("/api/plan", plan, methods=["POST"]), Route("/api/start", start, methods=["POST"]),
]


def create_app(out_root: Path, access: Access, *, read_ahead: bool = True) -> Guard:
    """The app over `out_root`, behind the guard (Host, Origin, token); with `read_ahead`, a
    thread reads the grids while the user opens the page."""
    app = Starlette(routes=ROUTES)
    app.state.service = Service(out_root)
    app.state.access = access
    if read_ahead:
        threading.Thread(target=app.state.service.read_ahead, daemon=True,
                         name="tvo-ui-read-ahead").start()
    return Guard(app, access)
