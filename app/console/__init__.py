"""工作台: the staff console at ``/console`` — server-rendered Jinja2 pages with htmx and ECharts
(``static/``, shipped in the package; no build step, no CDN), on the API's own services."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from app.console import routes_auth, routes_more, routes_orders, routes_stats
from app.console.web import HERE

PREFIX = "/console"


def install(app: FastAPI) -> None:
    """Mount the console's pages and static files on ``app`` (``create_app`` calls this)."""
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    for module in (routes_auth, routes_orders, routes_stats, routes_more):
        router.include_router(module.router)
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
