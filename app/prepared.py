"""SQLAlchemy Core statements run straight on the asyncpg connection, for the hottest paths.

A statement is still written in Core against the models (so it is type-checked and cannot drift from
the schema); ``Prepared`` compiles it once for the engine's dialect and then sends it with asyncpg's
own ``fetch``, which keeps a prepared statement per connection. That skips SQLAlchemy's per-execution
work (execution context, cursor adaptation, result metadata), which on this service's transition
endpoints cost more CPU than PostgreSQL spent running the statements. Bind and result types are
still applied (``bind_processor`` / ``result_processor``: JSON, encrypted phones).

Statements run on a connection of the engine's pool (``raw_of``): in the transaction SQLAlchemy has
open on it, so they commit or roll back with everything else done in it, or else each on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from app.errors import classify_database_error, connection_lost

Processor = Callable[[Any], Any] | None
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RawConnection:
    """An asyncpg connection of the engine's pool, the dialect to compile for, and how to tell the pool
    the connection is dead (it is then closed and replaced); ``engine``: the pool's, where known
    (``pooled``), for reads on a connection of their own."""

    driver: asyncpg.Connection
    dialect: Dialect
    invalidate: Callable[[], Awaitable[None]]
    engine: AsyncEngine | None = None


@asynccontextmanager
async def pooled(engine: AsyncEngine) -> AsyncIterator[RawConnection]:
    """A connection of ``engine``'s pool for statements that each commit on their own, taken with
    ``AsyncEngine.raw_connection()`` and given back with ``close()``: no SQLAlchemy ``Connection``
    around it, whose construction and return through greenlets cost 66 µs of CPU a request against
    18 µs (measured, loop of 20,000). SQLAlchemy begins no transaction on it, so giving it back sends
    nothing. A connection cut short mid-statement (cancelled) or left in a transaction is closed by
    the pool instead of handed on."""
    try:
        proxied = await engine.raw_connection()
    except Exception as exc:
        # Without a SQLAlchemy ``Connection`` a failed connect surfaces as the driver adapter's own
        # error, not wrapped in ``DBAPIError``: the same classification answers it (503, 409 busy).
        refused = classify_database_error(exc)
        if refused is None:
            raise
        raise refused from exc
    driver = proxied.driver_connection
    assert isinstance(driver, asyncpg.Connection)

    async def invalidate() -> None:
        proxied.invalidate()

    try:
        yield RawConnection(driver, engine.dialect, invalidate, engine)
    except asyncio.CancelledError:
        proxied.invalidate()
        raise
    finally:
        if proxied.is_valid and driver.is_in_transaction():
            proxied.invalidate()
        proxied.close()


async def raw_of(connection: AsyncConnection) -> RawConnection:
    """The asyncpg connection under ``connection`` (SQLAlchemy's): statements sent on it run in the
    transaction ``connection`` has begun, if any (sending ``BEGIN`` now if SQLAlchemy has not yet: it
    begins on the server at the first statement), else each on its own."""
    driver = (await connection.get_raw_connection()).driver_connection
    assert isinstance(driver, asyncpg.Connection)
    if connection.in_transaction() and not driver.is_in_transaction():
        await connection.execute(_BEGIN)
    return RawConnection(driver, connection.dialect, connection.invalidate)


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

    async def fetch(self, db: RawConnection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every row, as ``fetchrow`` gives one."""
        compiled = self._for(db.dialect)
        rows = await _guarded(db, db.driver.fetch(compiled.sql, *self._args(compiled, params)))
        result = []
        for row in rows:
            values = dict(zip(compiled.keys, row.values(), strict=True))
            for key, process in compiled.results:
                value = values[key]
                if value is not None:
                    values[key] = process(value)
            result.append(values)
        return result

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
