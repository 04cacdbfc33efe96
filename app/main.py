"""``create_app()``: routers, error handlers, and the lifespan that owns the engine and HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from app import console
from app.config import Settings, get_settings
from app.db import (
    RequestSessions,
    create_engine,
    create_read_sessionmaker,
    create_sessionmaker,
    resolve_database_url,
    to_async_url,
)
from app.errors import install_error_handlers
from app.lane import ActionLane
from app.limits import BodySizeLimit
from app.observability import ObservabilityMiddleware, process_exiting, watch_pool
from app.openapi import TAG_DESCRIPTIONS, SidanAPI, install_docs, operation_id
from app.routers import (
    activities,
    admin,
    admin_directory,
    admin_dispatch,
    auth,
    certificates,
    imports,
    ledger,
    notifications,
    ops,
    orders,
    presence_codes,
    public,
    qualifications,
    standing,
    stats,
    supermarket,
    unmet,
    volunteer,
)
from app.services import presence
from app.services.throttle import LoginThrottle
from app.worker import run_worker

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, database_url: str | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = database_url if database_url else await asyncio.to_thread(resolve_database_url, settings)
        engine = create_engine(url, settings)
        app.state.engine = engine
        pool_gauges = asyncio.create_task(watch_pool(engine, settings))
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.read_sessionmaker = create_read_sessionmaker(engine)
        # Statistics and exports: a replica's own pool when SIDAN_READ_DATABASE_URL names one.
        reports = (
            create_engine(to_async_url(settings.read_database_url), settings) if settings.read_database_url else engine
        )
        app.state.report_engine = reports
        app.state.report_sessionmaker = create_sessionmaker(reports)
        app.state.http = httpx.AsyncClient()
        prepare_routes(app)
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
            pool_gauges.cancel()
            if worker is not None:
                await worker
            await app.state.http.aclose()
            if reports is not engine:
                await reports.dispose()
            await engine.dispose()
            process_exiting()

    app = SidanAPI(
        title="Sidan API",  # ASCII: SDK generators make package names of it (app.openapi)
        version="0.1.0",
        summary="Sidan 四单: 群众点单 · 中心派单 · 志愿者接单 · 群众评单",
        description="新时代文明实践中心的四单服务. Every error is `{error: {code, message, details}}`.",
        openapi_tags=[{"name": name, "description": text} for name, text in TAG_DESCRIPTIONS.items()],
        generate_unique_id_function=operation_id,
        docs_url=None,  # served from the installed package by install_docs, not a CDN
        redoc_url=None,
        lifespan=lifespan,
        # Metrics and logs are ours (app.observability); FastAPI's own OpenTelemetry hooks otherwise
        # look the OTel providers up on every request (3 µs) to find them unconfigured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    presence.configure(
        settings.token_secret, settings.presence_code_seconds, settings.presence_code_attempts
    )  # 签到码 key (app.services.presence)
    app.state.login_throttle = LoginThrottle(
        settings.login_failures_per_account, settings.login_attempts_per_address, settings.login_window_seconds
    )
    if settings.action_lane:  # transport only: the action endpoints' parsing and apply (app.lane)
        app.add_middleware(ActionLane, api_prefix=API_PREFIX, routes=orders.router.routes)
    app.add_middleware(RequestSessions)  # closes the session ``get_session`` opened for the request
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        prefix_limits={f"{API_PREFIX}/admin/imports/": settings.import_max_bytes},
    )
    install_error_handlers(app)
    for module in (
        auth,
        public,
        orders,
        volunteer,
        admin,
        admin_dispatch,
        admin_directory,
        ledger,
        supermarket,
        stats,
        unmet,
    ):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(notifications.router, prefix=API_PREFIX)  # WeChat subscription consents
    app.include_router(imports.router, prefix=API_PREFIX)
    for module in (presence_codes, activities):
        app.include_router(module.router, prefix=API_PREFIX)
    for extra in (standing, qualifications, certificates):  # issue 16
        app.include_router(extra.router, prefix=API_PREFIX)
    if settings.enable_dev_token and settings.environment != "production":
        app.include_router(auth.dev_router, prefix=API_PREFIX)
    app.include_router(ops.router)
    console.install(app)  # 工作台 at /console (app.console)
    install_docs(app)
    # Request id, log context, metrics and the access log line (see app.observability).
    app.add_middleware(ObservabilityMiddleware, api_prefix=API_PREFIX)
    return app


def prepare_routes(app: FastAPI) -> None:
    """Have every route ready before the first request: FastAPI prepares an included router's routes
    (their parameters and models) the first time a request is matched against it, ~0.25 s of CPU for
    all of Sidan's, which the first burst of requests after a start would otherwise pay (the grab storm
    of ``bench.load (b)`` on a fresh process: 0.5 s of its CPU, py-spy). Matching a request that no
    route serves, through ``BaseRoute.matches``, prepares them all."""
    probe: dict[str, Any] = {"type": "http", "path": "/", "method": "GET", "root_path": "", "headers": []}
    for route in app.router.routes:
        route.matches(probe)
