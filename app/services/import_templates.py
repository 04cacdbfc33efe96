"""导入模板: a file per import kind with the header row, an example row and, in XLSX, a notes sheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Final

from app.services.importing import KIND_TITLES, ImportKind
from app.services.tabular import Column, append_rows, new_workbook

GENERAL_NOTES: Final = (
    "第 1 行为表头, 请勿修改列名; 从第 2 行起每行一条记录 (示例行请删除或替换)。",
    "带 * 的列必须填写; 其余列可留空或整列删除。",
    "不要使用公式: 以 = 开头的单元格会被拒绝。手机号请设为「文本」格式, 以免被显示为科学计数法。",
    "先用「试导入」检查 (dry_run=true): 返回每行的错误和将新增、更新的条数, 不写入任何数据。",
    "正式导入时, 只要有一行出错, 整个文件都不会写入; 修正后重新上传即可。重复上传同一文件不会产生重复记录。",
    "也可另存为 CSV 上传: UTF-8 (Excel「CSV UTF-8」) 或 GBK/GB18030 编码均可。",
)


def template_xlsx(kind: ImportKind, columns: Sequence[Column]) -> bytes:
    workbook = new_workbook()
    data = workbook.create_sheet(f"{KIND_TITLES[kind]}导入")
    append_rows(data, [[_header(c) for c in columns], [c.example for c in columns]])
    notes = workbook.create_sheet("填写说明")
    rows: list[list[str]] = [["列名", "是否必填", "说明", "示例"]]
    rows += [[c.title, "是" if c.required else "否", c.note, c.example] for c in columns]
    rows += [[], ["注意事项"], *([note] for note in GENERAL_NOTES)]
    append_rows(notes, rows)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def template_csv(columns: Sequence[Column]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([_header(c) for c in columns])
    writer.writerow([c.example for c in columns])
    return "\ufeff".encode() + buffer.getvalue().encode("utf-8")


def _header(column: Column) -> str:
    return f"{column.title}*" if column.required else column.title
