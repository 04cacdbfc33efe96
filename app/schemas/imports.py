"""Roster imports (导入): the answer to an upload, dry run or commit."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ImportRowError(BaseModel):
    row: int = Field(description="the row as Excel numbers it: the header is row 1 (0: the file as a whole)")
    column: str = Field(description="the column's header, e.g. 手机号")
    message: str = Field(description="what is wrong, in Chinese")


class ImportOut(BaseModel):
    kind: str
    dry_run: bool
    rows: int = Field(description="data rows read (blank lines skipped)")
    created: int = Field(description="rows that create a record (dry run: would create)")
    updated: int = Field(description="rows that change a record found by its key (dry run: would change)")
    unchanged: int = Field(description="rows identical to what is stored")
    error_count: int = Field(description="row errors found")
    errors: list[ImportRowError] = Field(
        description="row errors (the first 1000), by row; a commit with any answers 422 instead"
    )
