"""Spreadsheets (XLSX) and delimited text (CSV, TSV) as tables, streamed row by row.

openpyxl reads in read-only mode (rows are streamed from the sheet XML, cached values rather than
formulas). Each sheet is a page with its name as a level-1 heading; blank rows split a sheet into
separate tables, each headed by its first row. CSV dialects are sniffed from the first 64 KiB.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import PurePath
from typing import Any

from socle.knowledge.ingest.errors import DocumentTooLargeError
from socle.knowledge.ingest.formats._common import TextBudget, table_blocks
from socle.knowledge.ingest.model import Attachment, Block, DocumentInfo, ParseLimits
from socle.knowledge.ingest.sniff import text_encoding
from socle.knowledge.ingest.source import Source

__all__ = ["parse_csv", "parse_xlsx"]

csv.field_size_limit(16 * 1024 * 1024)


def parse_xlsx(source: Source, info: DocumentInfo, limits: ParseLimits) -> Iterator[Block | Attachment]:
    import openpyxl

    with source.open() as file:
        workbook = openpyxl.load_workbook(file, read_only=True, data_only=True)
        try:
            info.title = (workbook.properties.title or "").strip() or PurePath(info.filename).stem
            if workbook.properties.creator:
                info.metadata["author"] = workbook.properties.creator
            sheets = workbook.worksheets
            if len(sheets) > limits.max_pages:
                raise DocumentTooLargeError(f"{info.filename}: {len(sheets)} sheets", filename=info.filename)
            info.pages = len(sheets)
            budget = TextBudget(info, limits)
            for number, sheet in enumerate(sheets, start=1):
                name = str(sheet.title)
                yield Block("heading", name, 1, (name,), number)
                rows: Iterable[Sequence[Any]] = sheet.iter_rows(values_only=True)
                for block in _tables(rows, (name,), number):
                    yield budget(block)
        finally:
            workbook.close()


def _tables(rows: Iterable[Sequence[Any]], path: tuple[str, ...], page: int | None) -> Iterator[Block]:
    """Split rows into tables at blank rows; trim empty leading and trailing columns."""
    current: list[list[Any]] = []
    for row in rows:
        values = [_value(v) for v in row]
        if any(values):
            current.append(values)
            continue
        if current:
            yield from table_blocks(_trim(current), section_path=path, page=page)
            current = []
    if current:
        yield from table_blocks(_trim(current), section_path=path, page=page)


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _trim(rows: list[list[str]]) -> list[list[str]]:
    used = [i for row in rows for i, v in enumerate(row) if v]
    first, last = min(used), max(used)
    return [row[first : last + 1] for row in rows]


def parse_csv(source: Source, info: DocumentInfo, limits: ParseLimits) -> Iterator[Block | Attachment]:
    head = source.head(65536)
    encoding = text_encoding(head[:8192]) or "cp1252"
    sample = head.decode(encoding, errors="ignore")
    try:
        dialect: Any = csv.Sniffer().sniff(sample[:32768], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if PurePath(info.filename).suffix.lower() == ".tsv" else csv.excel
    budget = TextBudget(info, limits)
    with source.open() as raw, io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="") as text:
        reader = csv.reader(text, dialect)
        for block in _tables(reader, (), None):
            yield budget(block)
