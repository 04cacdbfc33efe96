from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from app.errors import ServiceUnavailable
from app.observability import metrics_payload, observe_pool
from app.routers.deps import errors

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses=errors(503))
async def readyz(request: Request) -> dict[str, str]:
    """The database answers."""
    try:
        async with request.app.state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        raise ServiceUnavailable("数据库不可用") from exc
    return {"status": "ready"}


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics (the outbox and sweeper gauges are measured by the background worker); under
    ``--workers N``, every worker's."""
    engine = getattr(request.app.state, "engine", None)  # absent until the lifespan has started
    if engine is not None:
        observe_pool(engine, request.app.state.settings)
    return Response(metrics_payload(), media_type=CONTENT_TYPE_LATEST)
