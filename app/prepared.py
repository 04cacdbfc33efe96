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

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import greenlet_spawn

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

    Returned to the pool however the block ends, shielded so a cancelled request cannot keep it; no
    SQLAlchemy transaction was begun on it, so returning it sends nothing to the server.
    """
    proxied = await engine.raw_connection()
    driver = proxied.driver_connection
    assert isinstance(driver, asyncpg.Connection)

    async def invalidate() -> None:
        await greenlet_spawn(proxied.invalidate)

    try:
        yield RawConnection(driver, engine.dialect, invalidate)
    finally:
        with anyio.CancelScope(shield=True):
            if driver.is_in_transaction():  # nothing here begins one; never hand one on to the next user
                await invalidate()
            await greenlet_spawn(proxied.close)


_BEGIN = text("SELECT 1")


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the bind parameter behind $1, $2, …
    defaults: Mapping[str, Any]  # values written into the statement itself
    bind: tuple[Processor, ...]
    results: tuple[tuple[str, Processor], ...]


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
        names = tuple(compiled.positiontup or ())
        binds = compiled.binds
        columns: Sequence[Any] = getattr(self.statement, "selected_columns", ())
        return _Compiled(
            sql=compiled.string,
            names=names,
            defaults={name: bind.value for name, bind in binds.items() if bind.value is not None},
            bind=tuple(binds[name].type.bind_processor(dialect) for name in names),
            results=tuple((column.key, column.type.result_processor(dialect, None)) for column in columns),
        )

    def _args(self, compiled: _Compiled, params: Mapping[str, Any]) -> list[Any]:
        args = []
        for name, process in zip(compiled.names, compiled.bind, strict=True):
            value = params[name] if name in params else compiled.defaults.get(name)
            args.append(process(value) if process is not None and value is not None else value)
        return args

    async def fetchrow(self, db: RawConnection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row as a dict keyed by column key, result types applied; ``None`` if none."""
        compiled = self._for(db.dialect)
        row = await _guarded(db, db.driver.fetchrow(compiled.sql, *self._args(compiled, params)))
        if row is None:
            return None
        return {
            key: process(value) if process is not None and value is not None else value
            for (key, process), value in zip(compiled.results, row.values(), strict=True)
        }

    async def execute(self, db: RawConnection, params: Mapping[str, Any]) -> None:
        compiled = self._for(db.dialect)
        await _guarded(db, db.driver.execute(compiled.sql, *self._args(compiled, params)))


async def _guarded(db: RawConnection, call: Awaitable[T]) -> T:
    """Await ``call``; a connection found dead is handed back to SQLAlchemy to retire, as its own
    statements would be, before the error goes on (and is answered 503)."""
    try:
        result: T = await call
    except (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError):
        await db.invalidate()
        raise
    return result
