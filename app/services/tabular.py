"""表格文件: reading an uploaded roster (XLSX or CSV) into rows of text, and writing XLSX.

Reading never evaluates anything: a formula cell, or any cell whose text starts with ``=``, is refused
as a row error (a spreadsheet would have computed it; we would store the formula). CSV may be UTF-8
(with or without BOM), UTF-16 with BOM, or GB18030/GBK (what Excel on Chinese Windows writes); anything
else gets a clear error. Sizes are bounded twice: the upload's bytes (``SIDAN_IMPORT_MAX_BYTES``, by
the body-size middleware) and its data rows (``SIDAN_IMPORT_MAX_ROWS``); an XLSX whose parts would
unpack to far more than its size (a zip bomb) is refused before it is parsed.

Writing uses openpyxl's write-only mode: rows go to a temporary file as they come, so an export of a
million rows holds one chunk in memory. Every text cell is written as a string, never as a formula.
"""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import IO, Any, Final

from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell

from app.errors import InvalidInput

XLSX_MEDIA_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA_TYPE: Final = "text/csv; charset=utf-8"
ZIP_MAGIC: Final = b"PK\x03\x04"
OLE_MAGIC: Final = b"\xd0\xcf\x11\xe0"  # .xls (Excel 97-2003)
# An XLSX of n bytes unpacks to roughly 5-10 n; far more is a zip bomb, not a roster.
MAX_UNPACK_RATIO: Final = 100
MAX_COLUMNS: Final = 64


@dataclass(frozen=True, slots=True)
class Column:
    """A column of an import file: its key in code, its header (表头) and what the notes sheet says."""

    key: str
    title: str
    required: bool
    note: str
    example: str


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem in one cell: ``row`` as Excel numbers it (the header is row 1)."""

    row: int
    column: str
    message: str


@dataclass(frozen=True, slots=True)
class Row:
    number: int
    values: dict[str, str]


@dataclass(slots=True)
class Table:
    rows: list[Row] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def file_error(message: str, column: str = "", row: int = 0) -> InvalidInput:
    """A problem with the file itself (cannot be read, a header missing): nothing can be checked."""
    return InvalidInput(message, errors=[{"row": row, "column": column, "message": message}])


# --- reading ---------------------------------------------------------------------------------------


def read_table(data: bytes, filename: str, columns: Sequence[Column], max_rows: int) -> Table:
    """The data rows of an upload, as stripped text by column key; blocking (call it in a thread)."""
    if not data:
        raise file_error("文件为空")
    if data.startswith(OLE_MAGIC):
        raise file_error("不支持 .xls 格式, 请在 Excel 中另存为 .xlsx 或 CSV (UTF-8) 后上传")
    if data.startswith(ZIP_MAGIC):
        return _from_rows(_xlsx_rows(data), columns, max_rows)
    if filename.lower().endswith((".xlsx", ".xlsm")):
        raise file_error("不是有效的 XLSX 文件 (文件损坏或不完整), 请重新导出后上传")
    return _from_rows(_csv_rows(data), columns, max_rows)


def _xlsx_rows(data: bytes) -> Iterable[list[Any]]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise file_error("不是有效的 XLSX 文件 (文件损坏或不完整), 请重新导出后上传") from exc
    if unpacked > MAX_UNPACK_RATIO * len(data) + 1_048_576:
        raise file_error("XLSX 文件解压后过大, 请删除多余的工作表或格式后重试")
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception as exc:  # openpyxl raises many kinds for a broken package (KeyError, XML errors…)
        raise file_error("不是有效的 XLSX 文件 (文件损坏或不完整), 请重新导出后上传") from exc
    try:
        if not workbook.worksheets:
            raise file_error("XLSX 文件中没有工作表")
        sheet = workbook.worksheets[0]
        # Read-only mode trusts the sheet's recorded dimensions, which some writers get wrong: read to
        # the end of the sheet instead (the row cap bounds it).
        reset_dimensions = getattr(sheet, "reset_dimensions", None)
        if reset_dimensions is not None:
            reset_dimensions()
        try:
            # With ``data_only=False`` a formula cell's value is its text, ``=…``: refused like typed text.
            for values in sheet.iter_rows(max_col=MAX_COLUMNS, values_only=True):
                yield list(values)
        except InvalidInput:
            raise
        except Exception as exc:
            raise file_error("XLSX 文件内容损坏, 无法读取全部行") from exc
    finally:
        workbook.close()


def _decode(data: bytes) -> str:
    if data.startswith(codecs.BOM_UTF8):
        encodings: tuple[str, ...] = ("utf-8-sig",)
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ("utf-16",)
    else:
        encodings = ("utf-8", "gb18030")
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise file_error("无法识别 CSV 文件的编码, 请在 Excel 中另存为「CSV UTF-8 (逗号分隔)」后上传")


def _csv_rows(data: bytes) -> Iterable[list[Any]]:
    text = _decode(data)
    if "\x00" in text:
        raise file_error("CSV 文件含有空字符, 不是文本文件或编码不正确, 请另存为 CSV UTF-8 后上传")
    try:
        for record in csv.reader(io.StringIO(text, newline="")):
            yield record[:MAX_COLUMNS]
    except csv.Error as exc:
        raise file_error(f"CSV 格式错误: {exc}") from exc


def cell_text(value: Any) -> str:
    """A cell as text: numbers Excel stored for digits (a phone typed as a number) lose the ``.0``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value).strip()


def _header_key(title: str, columns: Sequence[Column]) -> str | None:
    cleaned = title.strip().removesuffix("(必填)").removesuffix("（必填）").rstrip("*＊ ").strip()
    for column in columns:
        if column.title == cleaned:
            return column.key
    return None


def _from_rows(rows: Iterable[list[Any]], columns: Sequence[Column], max_rows: int) -> Table:
    iterator = iter(rows)
    header = next(iterator, None)
    if header is None:
        raise file_error("文件为空, 第1行应为表头")
    keys: list[str | None] = []
    for value in header:
        key = _header_key(cell_text(value), columns)
        if key is not None and key in keys:
            raise file_error(f"表头「{cell_text(value)}」重复", column=cell_text(value), row=1)
        keys.append(key)
    found = {k for k in keys if k is not None}
    missing = [c for c in columns if c.required and c.key not in found]
    if missing:
        titles = "、".join(f"「{c.title}」" for c in missing)
        hint = "" if found else " (若表头显示为乱码, 请另存为 CSV UTF-8 或 XLSX)"
        raise InvalidInput(
            f"缺少必填列 {titles}{hint}",
            errors=[{"row": 1, "column": c.title, "message": f"缺少必填列「{c.title}」"} for c in missing],
        )
    titles_by_key = {c.key: c.title for c in columns}
    table = Table()
    number = 1
    for cells in iterator:
        number += 1
        values: dict[str, str] = {}
        errors_before = len(table.errors)
        for value, key in zip(cells, keys, strict=False):
            if key is None:
                continue
            text = cell_text(value)
            if text.startswith("="):  # typed, or a formula (its text: nothing is ever evaluated)
                table.errors.append(RowError(number, titles_by_key[key], "不能是公式, 请改为文本或数值"))
                text = ""
            elif any(ord(ch) < 32 and ch not in "\t\n\r" for ch in text):
                table.errors.append(RowError(number, titles_by_key[key], "含有控制字符"))
                text = ""
            values[key] = text
        if not any(values.values()) and len(table.errors) == errors_before:
            continue  # a blank line
        if len(table.rows) >= max_rows:
            raise InvalidInput(f"文件超过 {max_rows} 行数据, 请分批导入", max_rows=max_rows)
        table.rows.append(Row(number, values))
    return table


# --- writing ---------------------------------------------------------------------------------------


def text_cell(sheet: Any, value: str | int | float) -> Any:
    """A write-only cell holding ``value`` as it is: a string stays a string even if it starts with
    ``=`` (the exports prefix such text with ``'`` anyway: the same cells as their CSV)."""
    cell = WriteOnlyCell(sheet, value=value)
    if isinstance(value, str):
        cell.data_type = "s"
    return cell


def new_workbook() -> Workbook:
    return Workbook(write_only=True)


def append_rows(sheet: Any, rows: Iterable[Sequence[str | int | float]]) -> None:
    for row in rows:
        sheet.append([text_cell(sheet, value) for value in row])


def save(workbook: Workbook, target: IO[bytes]) -> None:
    workbook.save(target)
