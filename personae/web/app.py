"""The ASGI app of ``personae serve``: read-only pages over one database.

Every page has a stable address and answers ``?format=json`` with the dict it renders
(``pages.py``). Only GET and HEAD exist. Every response carries a Content-Security-Policy that
allows scripts from this server's ``/static`` only (no inline script), so model text — escaped by
the templates anyway — could not run even if it reached the page as HTML. Beyond loopback an
access token guards every address (``access.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from personae.errors import UserError
from personae.limits import INT64_MAX
from personae.store.repo import Store
from personae.web.access import SecurityHeaders, TokenGate
from personae.web.pages import RunFilters, memory_page, run_page, runs_page, search_page, turn_page
from personae.web.render import page, script_json
from personae.web.sweeps import batch_page, batches_page, eval_page, evals_page

STATIC = Path(__file__).parent / "static"


@dataclass
class Viewer:
    """What the routes share: the read-only store, and each run's quality score by its turn
    count (scoring reads the whole transcript; a run that has not moved is not scored again)."""

    store: Store
    scores: dict[int, tuple[int, float | None]] = field(default_factory=dict)

    def quality(self) -> dict[int, float | None]:
        from personae.quality import summarize
        from personae.quality.runs import score_run

        result: dict[int, float | None] = {}
        for run in self.store.runs():
            known = self.scores.get(run.id)
            if known is None or known[0] != run.turns:
                summary = summarize(score_run(self.store, run.id)) if run.turns else None
                known = (run.turns, summary.good_ratio if summary and summary.replies else None)
                self.scores[run.id] = known
            result[run.id] = known[1]
        return result


def wants_json(request: Request) -> bool:
    return request.query_params.get("format") == "json"


def respond(request: Request, template: str, data: dict[str, Any], **extra: Any) -> Response:
    if wants_json(request):
        return JSONResponse(data)
    return HTMLResponse(page(template, page=data, **extra))


def not_found(request: Request, message: str) -> Response:
    if wants_json(request):
        return JSONResponse({"error": message}, status_code=404)
    return HTMLResponse(page("error.html", status="Not found", message=message), status_code=404)


def int_param(request: Request, name: str, default: int = 0) -> int:
    value = request.query_params.get(name, "")
    return int(value) if value.isdigit() and len(value) < 19 else default


def make_app(store: Store, *, token: str | None = None) -> Starlette:
    """The viewer over ``store`` (opened read-only by the caller, closed by the caller).
    ``token``: required on every request (beyond loopback); None: loopback only."""
    viewer = Viewer(store)

    def row_id(request: Request, name: str, what: str) -> int:
        value = int(request.path_params[name])
        if value > INT64_MAX:
            raise UserError(f"No {what} {value}: {what} ids are 64-bit integers.")
        return value

    def run_id(request: Request) -> int:
        return row_id(request, "run_id", "run")

    async def runs(request: Request) -> Response:
        q = request.query_params
        filters = RunFilters(q.get("scenario", ""), q.get("status", ""), q.get("model", ""))
        return respond(request, "runs.html", runs_page(store, filters, viewer.quality()))

    async def run(request: Request) -> Response:
        return respond(request, "run.html", run_page(store, run_id(request), int_param(request, "after")))

    async def turn(request: Request) -> Response:
        number = min(int(request.path_params["turn"]), INT64_MAX)
        data = turn_page(store, run_id(request), number)
        if data is None:
            return not_found(request, f"Run {run_id(request)} has no turn {number}.")
        return respond(request, "turn.html", data)

    async def memory(request: Request) -> Response:
        data = memory_page(store, run_id(request))
        return respond(request, "memory.html", data, graph_json=script_json(data["graph"]))

    async def search(request: Request) -> Response:
        only = int_param(request, "run") or None
        return respond(request, "search.html", search_page(store, request.query_params.get("q", ""), only))

    async def batch_list(request: Request) -> Response:
        return respond(request, "batches.html", batches_page(store))

    async def batch_one(request: Request) -> Response:
        return respond(request, "batch.html", batch_page(store, row_id(request, "batch_id", "batch")))

    async def eval_list(request: Request) -> Response:
        return respond(request, "evals.html", evals_page(store))

    async def eval_one(request: Request) -> Response:
        return respond(request, "eval.html", eval_page(store, row_id(request, "eval_id", "eval")))

    async def user_error(request: Request, error: Exception) -> Response:
        return not_found(request, str(error))  # an unknown run, batch or eval: the reader's sentence

    routes = [
        Route("/", runs),
        Route("/runs/{run_id:int}", run),
        Route("/runs/{run_id:int}/turns/{turn:int}", turn),
        Route("/runs/{run_id:int}/memory", memory),
        Route("/search", search),
        Route("/batches", batch_list),
        Route("/batches/{batch_id:int}", batch_one),
        Route("/evals", eval_list),
        Route("/evals/{eval_id:int}", eval_one),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders, loopback_only=token is None)]
    if token is not None:
        middleware.append(Middleware(TokenGate, token=token))
    return Starlette(
        routes=routes, middleware=middleware, exception_handlers={UserError: user_error}
    )
