"""导出 (XLSX): the CSV exports' rows in a workbook, written in openpyxl's write-only mode.

Rows come chunk by chunk from ``exports.export_chunks`` (the CSV's own source: same columns, filters
and cells, formula-looking text already prefixed with ``'``) and go straight to openpyxl's temporary
file; the finished workbook is spooled (memory up to 8 MiB, then disk) and sent in 64 KiB pieces. An
XLSX is a zip whose directory comes last, so the response starts once the workbook is complete; a
database error before then is an ordinary error answer, never a truncated file.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from typing import IO, Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.services.exports import FILE_TITLES, ExportPlan, export_chunks
from app.services.tabular import append_rows, new_workbook

SPOOL_BYTES: Final = 8 * 1_048_576
PIECE_BYTES: Final = 65_536


async def build_xlsx(sessionmaker: async_sessionmaker[AsyncSession], plan: ExportPlan) -> IO[bytes]:
    """The XLSX of ``plan`` in a spooled temporary file, positioned at its start."""
    header, chunks = export_chunks(sessionmaker, plan)
    workbook = new_workbook()
    sheet = workbook.create_sheet(FILE_TITLES[plan.kind])
    append_rows(sheet, [header])
    async for rows in chunks:
        await asyncio.to_thread(append_rows, sheet, rows)
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (closed by stream_file)
    try:
        await asyncio.to_thread(workbook.save, spool)
        await asyncio.to_thread(spool.seek, 0)
    except BaseException:
        spool.close()
        raise
    return spool


async def stream_file(spool: IO[bytes]) -> AsyncIterator[bytes]:
    """The file's bytes in pieces, read off the event loop; closes (deletes) it at the end."""
    try:
        while piece := await asyncio.to_thread(spool.read, PIECE_BYTES):
            yield piece
    finally:
        spool.close()
