"""SQLAlchemy Core statements run straight on the asyncpg connection, for the hottest paths.

A statement is still written in Core against the models (so it is type-checked and cannot drift from
the schema); ``Prepared`` compiles it once for the engine's dialect and then sends it with asyncpg's
own ``fetch``, which keeps a prepared statement per connection. That skips SQLAlchemy's per-execution
work (execution context, cursor adaptation, result metadata), which on this service's transition
endpoints cost more CPU than PostgreSQL spent running the statements. Bind and result types are
still applied (``bind_processor`` / ``result_processor``: JSON, encrypted phones).

Statements run in the session's transaction (``raw_connection``), so they commit or roll back with
everything the ORM does in the same request; or, on a connection of the pool taken without a session
(``checkout``), each on its own (autocommit), for work done in one statement.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import greenlet_spawn

from app.errors import connection_lost

Processor = Callable[[Any], Any] | None
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RawConnection:
    """An asyncpg connection of the engine's pool, the dialect to compile for, and how to tell the pool
    the connection is dead (it is then closed and replaced)."""

    driver: asyncpg.Connection
    dialect: Dialect
    invalidate: Callable[[], Awaitable[None]]


async def raw_connection(session: AsyncSession) -> RawConnection:
    """The session's asyncpg connection, its transaction begun on the server.

    Requests arrive here with the transaction already open (``current_actor`` read the caller in
    it); elsewhere a trivial statement through SQLAlchemy makes it send ``BEGIN``.
    """
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    assert isinstance(driver, asyncpg.Connection)
    if not driver.is_in_transaction():
        await connection.execute(_BEGIN)
    return RawConnection(driver, connection.dialect, connection.invalidate)


@asynccontextmanager
async def checkout(engine: AsyncEngine) -> AsyncIterator[RawConnection]:
    """A connection of the engine's pool with no transaction: each statement commits on its own.

    Returned to the pool however the block ends. No SQLAlchemy transaction was begun on it, so
    returning it sends nothing and cannot be cut short; a connection whose statement a cancellation
    interrupted (or that was left in a transaction) is retired instead, never handed on.
    """
    async with KeptConnections(engine, keep=0).connection() as db:
        yield db


class KeptConnections:
    """Connections of the engine's pool that the action lane (``app.lane``) holds on to: up to
    ``hold`` at once, in use or not, of which up to ``keep`` idle between requests, each for at most
    ``KEEP_SECONDS`` unused, then returned to the pool.

    Taking a connection from the pool and giving it back costs SQLAlchemy's queue, a greenlet (whose
    start maps and unmaps a frame stack) and a timeout per request: under load ~75 µs of CPU, a tenth
    of a transition request's. A lane request finishing hands its connection straight to the next
    lane request waiting (a future set), else keeps it idle; a lane request arriving takes an idle
    one, else one more from the pool while the lane holds fewer than ``hold``, else waits for the next
    handed on (in order, at most the pool's own timeout). Requests on other routes come first: while
    one waits for the pool, every connection the lane is done with goes back to it, and ``keep``
    leaves the rest of the pool to them when the lane is quiet. A held connection found closed (the
    server restarted) is retired, not used; one that failed mid-statement is never held again.
    """

    KEEP_SECONDS = 1.0

    def __init__(self, engine: AsyncEngine, keep: int, hold: int | None = None) -> None:
        self.engine, self.keep = engine, keep
        self.hold = keep if hold is None else hold
        self._idle: list[tuple[float, PoolProxiedConnection]] = []  # (since, connection), oldest first
        self._held = 0  # taken from the pool for the lane: in use or idle, or being taken
        self._to_pool = 0  # lane requests with a place in the lane, on their way to the pool for it
        # Lane requests waiting, since when: each is handed a connection, or ``None`` (its place in the
        # lane, to take one from the pool), or the pool's timeout error (``expire``).
        self._waiters: deque[tuple[float, asyncio.Future[PoolProxiedConnection | None]]] = deque()

    def __len__(self) -> int:
        return len(self._idle)

    def connection(self) -> _Lease:
        """A connection with no transaction (see ``checkout``): a held one, else one from the pool."""
        return _Lease(self)

    async def _done_with(self, proxied: PoolProxiedConnection, driver: asyncpg.Connection, held: bool) -> None:
        """A request is done with ``proxied`` (its asyncpg connection: ``driver``, even if invalidated
        since); ``held``: one of the lane's."""
        if driver.is_in_transaction():  # nothing here begins one
            with anyio.CancelScope(shield=True):
                await greenlet_spawn(proxied.invalidate)
            await greenlet_spawn(proxied.close)
            self._let_go(held)
        elif held and proxied.is_valid and not driver.is_closed():
            await self._release(proxied)
        else:
            await _give_back(proxied)
            self._let_go(held)

    def _wanted(self) -> bool:
        """Whether a request waits for a connection of the pool (it gets this one first, fairly);
        ``True`` if the pool cannot tell (SQLAlchemy's queue, an ``asyncio.Queue``, keeps its waiters)."""
        queue = getattr(getattr(self.engine.sync_engine.pool, "_pool", None), "_queue", None)
        waiters = getattr(queue, "_getters", None)
        return waiters is None or any(not waiter.done() for waiter in waiters)

    async def _take(self) -> tuple[PoolProxiedConnection, bool]:
        """A connection, and whether the lane holds it (else it goes straight back to the pool)."""
        await self.expire()
        while self._idle:
            _, proxied = self._idle.pop()
            if _usable(proxied):
                return proxied, True
            await self._retire(proxied)
        if self._held >= self.hold > 0:
            handed = await self._wait()
            if handed is not None:
                return handed, True
        elif self._held < self.hold:
            self._held += 1
            self._to_pool += 1
        else:
            return await self.engine.raw_connection(), False
        try:  # the lane's own once taken
            return await self.engine.raw_connection(), True
        except BaseException:
            self._let_go(True)
            raise
        finally:
            self._to_pool -= 1

    async def _wait(self) -> PoolProxiedConnection | None:
        """The next connection a lane request is done with, or ``None``: one went back to the pool, and
        its place in the lane is this request's, to take from the pool. ``sqlalchemy.exc.TimeoutError``
        once waiting longer than the pool's own timeout, as the pool would (``expire``)."""
        waiter: asyncio.Future[PoolProxiedConnection | None] = asyncio.get_running_loop().create_future()
        entry = (time.monotonic(), waiter)
        self._waiters.append(entry)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed one just as this request went away: pass it on.
                handed = waiter.result()
                if handed is None:
                    self._to_pool -= 1
                    self._let_go(True)
                else:
                    with anyio.CancelScope(shield=True):
                        await self._release(handed)
            elif entry in self._waiters:  # else already passed over
                self._waiters.remove(entry)
            raise

    def _let_go(self, held: bool) -> None:
        """A held connection went back to the pool or was closed: its place in the lane goes to the
        first lane request waiting (which takes one from the pool), else is free."""
        if not held:
            return
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._to_pool += 1
                return
        self._held -= 1

    async def _release(self, proxied: PoolProxiedConnection) -> None:
        """A lane request is done with a held connection in good order: to the pool if a request waits
        there or is on its way (or the lane holds more than it may), else to the next lane request,
        else kept idle."""
        if self._held <= self.hold and not self._to_pool and not self._wanted():
            while self._waiters:
                _, waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(proxied)
                    return
            if len(self._idle) < self.keep:
                self._idle.append((time.monotonic(), proxied))
                return
        await _give_back(proxied)
        self._let_go(True)

    async def _retire(self, proxied: PoolProxiedConnection) -> None:
        with anyio.CancelScope(shield=True):
            await greenlet_spawn(proxied.invalidate)
            await greenlet_spawn(proxied.close)
        self._let_go(True)

    async def expire(self, older_than: float | None = None) -> None:
        """Give back to the pool the idle connections unused for ``older_than`` seconds (default
        ``KEEP_SECONDS``; 0: all of them), and fail the lane requests waiting longer than the pool's
        timeout."""
        now = time.monotonic()
        limit = now - (self.KEEP_SECONDS if older_than is None else older_than)
        while self._idle and self._idle[0][0] <= limit:
            _, proxied = self._idle.pop(0)
            await _give_back(proxied)
            self._let_go(True)
        if self._waiters:
            limit = now - self.engine.sync_engine.pool.timeout()  # type: ignore[attr-defined]
            while self._waiters and self._waiters[0][0] <= limit:
                _, waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(PoolTimeoutError("no database connection free within the pool's timeout"))

    async def expire_every(self, seconds: float) -> None:
        """``expire`` now and then, so connections the lane stopped using go back (a background task)."""
        while True:
            await asyncio.sleep(seconds)
            await self.expire()


class _Lease:
    """``KeptConnections.connection()``: an async context manager, without a generator's frame."""

    __slots__ = ("driver", "held", "kept", "proxied")

    def __init__(self, kept: KeptConnections) -> None:
        self.kept = kept

    async def __aenter__(self) -> RawConnection:
        self.proxied, self.held = await self.kept._take()
        driver = self.proxied.driver_connection
        assert isinstance(driver, asyncpg.Connection)
        self.driver = driver
        return RawConnection(driver, self.kept.engine.dialect, self._invalidate)

    async def _invalidate(self) -> None:
        with anyio.CancelScope(shield=True):
            await greenlet_spawn(self.proxied.invalidate)

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, _: object) -> None:
        if isinstance(error, asyncio.CancelledError):  # cut short mid-statement: never handed on
            await self._invalidate()
        await self.kept._done_with(self.proxied, self.driver, self.held)


def _usable(proxied: PoolProxiedConnection) -> bool:
    driver = proxied.driver_connection
    return isinstance(driver, asyncpg.Connection) and not driver.is_closed()


async def _give_back(proxied: PoolProxiedConnection) -> None:
    """Return a connection holding no transaction to the pool."""
    if getattr(proxied.dbapi_connection, "_transaction", True) is None:
        # SQLAlchemy's adapter holds no transaction either: returning the connection awaits nothing
        # (no rollback to send), so it needs no greenlet, whose start maps and unmaps a frame stack.
        proxied.close()
    else:
        await greenlet_spawn(proxied.close)


_BEGIN = text("SELECT 1")


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    binds: tuple[tuple[str, Any], ...]  # behind $1, $2, …: name, default value
    processed: tuple[tuple[int, Callable[[Any], Any]], ...]  # the binds that need processing, by position
    keys: tuple[str, ...]  # the result columns' keys
    results: tuple[tuple[str, Callable[[Any], Any]], ...]  # the result columns that need processing


class Prepared:
    """One Core statement, compiled on first use, run on asyncpg (see the module docstring)."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[int, _Compiled] = {}

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(id(dialect))
        if compiled is None:
            compiled = self._compile(dialect)
            self._compiled[id(dialect)] = compiled
        return compiled

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        # Expanding parameters (``in_()`` of a list) are filled in per execution by SQLAlchemy only.
        assert "POSTCOMPILE" not in compiled.string, "Prepared statements take no expanding parameters"
        binds = compiled.binds
        names = compiled.positiontup or ()
        processors = ((i, binds[name].type.bind_processor(dialect)) for i, name in enumerate(names))
        columns: Sequence[Any] = getattr(self.statement, "selected_columns", ())
        results = ((column.key, column.type.result_processor(dialect, None)) for column in columns)
        return _Compiled(
            sql=compiled.string,
            binds=tuple((name, binds[name].value) for name in names),
            processed=tuple((i, process) for i, process in processors if process is not None),
            keys=tuple(column.key for column in columns),
            results=tuple((key, process) for key, process in results if process is not None),
        )

    @staticmethod
    def _args(compiled: _Compiled, params: Mapping[str, Any]) -> list[Any]:
        args = [params.get(name, default) for name, default in compiled.binds]
        for i, process in compiled.processed:
            if args[i] is not None:
                args[i] = process(args[i])
        return args

    async def fetchrow(self, db: RawConnection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row as a dict keyed by column key, result types applied; ``None`` if none."""
        compiled = self._for(db.dialect)
        row = await _guarded(db, db.driver.fetchrow(compiled.sql, *self._args(compiled, params)))
        if row is None:
            return None
        values = dict(zip(compiled.keys, row.values(), strict=True))
        for key, process in compiled.results:
            value = values[key]
            if value is not None:
                values[key] = process(value)
        return values

    async def execute(self, db: RawConnection, params: Mapping[str, Any]) -> None:
        compiled = self._for(db.dialect)
        await _guarded(db, db.driver.execute(compiled.sql, *self._args(compiled, params)))


async def _guarded(db: RawConnection, call: Awaitable[T]) -> T:
    """Await ``call``; a connection that cannot be trusted with another statement is handed back to
    SQLAlchemy to retire, as its own statements' would be, before the error goes on (answered 503).

    An error the server reports about the statement (a constraint, a lock or statement timeout)
    leaves the connection ready for the next one; the server going away (``AdminShutdown`` after a
    stop, class 08), a dropped socket or a protocol out of step does not.
    """
    try:
        result: T = await call
    except asyncpg.PostgresError as exc:
        if db.driver.is_closed() or connection_lost(exc):
            await db.invalidate()
        raise
    except Exception:
        await db.invalidate()
        raise
    return result
