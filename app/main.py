"""``create_app()``: routers, error handlers, and the lifespan that owns the engine and HTTP client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response
from prometheus_client import Counter, Histogram

from app.config import Settings, get_settings
from app.db import create_engine, create_sessionmaker, resolve_database_url
from app.errors import install_error_handlers
from app.routers import (
    admin,
    admin_directory,
    admin_dispatch,
    auth,
    ledger,
    ops,
    orders,
    public,
    supermarket,
    volunteer,
)
from app.worker import run_worker

API_PREFIX = "/api/v1"

REQUESTS = Counter("sidan_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("sidan_http_request_seconds", "HTTP request latency", ["method", "route"])


def create_app(settings: Settings | None = None, database_url: str | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = database_url if database_url else await asyncio.to_thread(resolve_database_url, settings)
        engine = create_engine(url, settings)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.http = httpx.AsyncClient()
        stop = asyncio.Event()
        worker = (
            asyncio.create_task(run_worker(app.state.sessionmaker, settings, app.state.http, stop))
            if settings.run_worker
            else None
        )
        try:
            yield
        finally:
            stop.set()
            if worker is not None:
                await worker
            await app.state.http.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Sidan 四单 API",
        version="0.1.0",
        summary="群众点单 · 中心派单 · 志愿者接单 · 群众评单",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    for module in (auth, public, orders, volunteer, admin, admin_dispatch, admin_directory, ledger, supermarket):
        app.include_router(module.router, prefix=API_PREFIX)
    if settings.enable_dev_token and settings.environment != "production":
        app.include_router(auth.dev_router, prefix=API_PREFIX)
    app.include_router(ops.router)

    @app.middleware("http")
    async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        LATENCY.labels(request.method, template).observe(time.perf_counter() - started)
        REQUESTS.labels(request.method, template, str(response.status_code)).inc()
        return response

    return app
