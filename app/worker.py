"""The background worker: the deadline sweeper, the standing-order sweeper (常态化服务), the notification
sender and the pruning of spent rate limit counters, in a loop.

Runs inside ``sidan serve`` (one per process; many are safe together) and alone as ``sidan worker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.observability import measure_backlog
from app.services.delivery import Channel, default_channels, deliver_due
from app.services.sms_state import prune_daily_counts
from app.services.standing_spawn import spawn_due
from app.services.sweeper import sweep
from app.services.throttle import prune_counters
from app.workflow import DUE_ACTIONS

log = logging.getLogger(__name__)


async def run_worker(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    http: httpx.AsyncClient,
    stop: asyncio.Event,
    channels: list[Channel] | None = None,
) -> None:
    channels = channels if channels is not None else default_channels(settings, http, sessionmaker)
    while not stop.is_set():
        try:
            fired = await sweep(sessionmaker)
            fired += await spawn_due(sessionmaker, settings)  # 常态化服务: occurrences due to be placed
            stats = await deliver_due(sessionmaker, channels)
            await prune_counters(sessionmaker)
            if settings.sms_enabled:  # the per-phone SMS counts of days gone by
                await prune_daily_counts(sessionmaker, datetime.now(ZoneInfo(settings.sms_timezone)).date())
            if fired or stats.sent or stats.retried or stats.failed or stats.deferred:
                log.info("worker: %s due transitions, outbox %s", fired, stats)
        except Exception:  # the loop must survive a database blip; the next round retries
            log.exception("worker round failed")
        try:  # after the round: what it left behind (a sweeper that keeps failing shows as growing lag)
            await measure_backlog(sessionmaker, [s.value for s in DUE_ACTIONS])
        except Exception as exc:
            log.warning("worker could not measure the backlog: %s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.worker_interval_seconds)
