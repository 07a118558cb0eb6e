"""Reading the files marketeers really have: CSV in UTF-8 (with or without BOM) or Windows-1252,
delimited by comma, semicolon or tab, and Excel workbooks (XLSX). Pure code, no database.

`open_table(content, file_name)` gives the header and an iterator of `(line, values)`; it raises
`FileUnreadable` (the whole file cannot be read, the message says why and what to do) before a
single row is handed out, so that an import never stops halfway over the file's format.

The value parsers (`parse_date`, `parse_datetime`, `parse_decimal`, `parse_boolean`) raise
`ValueError` with a message that says what was expected; the caller adds the column.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from xml.etree.ElementTree import iterparse

DELIMITERS = (",", ";", "\t")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
SAMPLE_LINES = 50
_DECODE_CHUNK = 1 << 20
_XLSX_MAGIC = b"PK\x03\x04"
_NOT_TEXT = "the file is not text in UTF-8 or Windows-1252 ({looks}): save it as CSV UTF-8"


class FileUnreadable(ValueError):
    """The file as a whole cannot be read; the message says why and what to do about it."""


@dataclass
class Table:
    columns: list[str]
    rows: Iterator[tuple[int, list[str]]]  # (line number in the file, values as text)
    format: str  # "csv" or "xlsx"
    encoding: str = ""
    delimiter: str = ""

    def describe(self) -> str:
        if self.format == "xlsx":
            return "Excel workbook (first sheet)"
        return f"CSV, {self.encoding}, {DELIMITER_NAMES.get(self.delimiter, self.delimiter)}-delimited"


def open_table(content: bytes, file_name: str = "") -> Table:
    """The header and rows of a CSV or XLSX file, or FileUnreadable saying why not."""
    if content.startswith(_XLSX_MAGIC) or file_name.lower().endswith((".xlsx", ".xlsm")):
        return _open_xlsx(content)
    return _open_csv(content)


# --- CSV ----------------------------------------------------------------------------------


def detect_encoding(content: bytes) -> str:
    """'utf-8-sig', 'utf-8' or 'cp1252'; FileUnreadable for UTF-16 and binary data."""
    if content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileUnreadable(_NOT_TEXT.format(looks="looks like UTF-16"))
    head = content[:4096]
    if b"\x00" in head:
        # UTF-16 without a BOM: every other byte of plain text is NUL.
        nuls_odd = head[1::2].count(0)
        nuls_even = head[0::2].count(0)
        looks_utf16 = max(nuls_odd, nuls_even) > len(head) // 4 and min(nuls_odd, nuls_even) < len(head) // 40 + 1
        raise FileUnreadable(_NOT_TEXT.format(looks="looks like UTF-16" if looks_utf16 else "looks like binary data"))
    if content.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif _decodes(content, "utf-8"):
        return "utf-8"
    else:
        encoding = "cp1252"
    if not _decodes(content, encoding):
        raise FileUnreadable(_NOT_TEXT.format(looks="it has bytes that are neither"))
    if b"\x00" in content:
        raise FileUnreadable(_NOT_TEXT.format(looks="it contains NUL bytes, like binary data"))
    return encoding


def _decodes(content: bytes, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    view = memoryview(content)
    try:
        for start in range(0, len(content), _DECODE_CHUNK):
            decoder.decode(view[start : start + _DECODE_CHUNK])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def sniff_delimiter(sample_lines: list[str]) -> str:
    """The delimiter that splits the sample's lines into the same number of fields as its header.

    csv.Sniffer alone is misled by decimal commas in semicolon files; counting fields per line
    with each candidate and taking the one that splits every line alike (most fields wins) is not.
    Sniffer decides only when no candidate is consistent.
    """
    lines = [line for line in sample_lines if line.strip()]
    if not lines:
        return ","
    best, best_fields = None, 1
    for delimiter in DELIMITERS:
        try:
            counts = [len(row) for row in csv.reader(lines, delimiter=delimiter)]
        except csv.Error:
            continue  # e.g. a field over csv's size limit: reading the rows says where
        header = counts[0]
        consistent = sum(count == header for count in counts) >= max(1, int(len(counts) * 0.9))
        if consistent and header > best_fields:
            best, best_fields = delimiter, header
    if best:
        return best
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        return max(DELIMITERS, key=lambda d: lines[0].count(d)) if any(d in lines[0] for d in DELIMITERS) else ","


def _open_csv(content: bytes) -> Table:
    encoding = detect_encoding(content)
    text = io.TextIOWrapper(io.BytesIO(content), encoding=encoding, newline="")
    sample = []
    for _ in range(SAMPLE_LINES):
        line = text.readline()
        if not line:
            break
        sample.append(line)
    if not any(line.strip() for line in sample):
        raise FileUnreadable("the file is empty: it has no header row")
    delimiter = sniff_delimiter(sample)
    text.seek(0)
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader)
    except csv.Error as error:
        raise FileUnreadable(f"the header row cannot be read: {error}") from error
    columns = _header(header, lambda index: f"column {index + 1}")
    return Table(columns, _csv_rows(reader, len(columns)), "csv", encoding, delimiter)


def _csv_rows(reader, width: int) -> Iterator[tuple[int, list[str]]]:
    previous = reader.line_num
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            # An unterminated quote swallows the rest of the file: say where it started.
            raise FileUnreadable(f"line {previous + 1}: {error} (check the quotes on that line)") from error
        line, previous = previous + 1, reader.line_num
        if not values or (len(values) == 1 and not values[0].strip() and width > 1):
            continue  # blank line
        if previous > line and len(values) != width:
            values = SpannedRow(values)
            values.last_line = previous
        yield line, values


class SpannedRow(list):
    """A record that ran over several lines (a quoted field with line breaks, or a quote that
    was never closed); `last_line` is where it ended."""

    last_line = 0


def _header(cells: list, name_for_blank) -> list[str]:
    columns = [str(cell).strip().lstrip("\ufeff") if cell is not None else "" for cell in cells]
    while columns and not columns[-1]:
        columns.pop()
    if not columns:
        raise FileUnreadable("the first row is empty: the first row must name the columns")
    seen: dict[str, int] = {}
    for index, column in enumerate(columns):
        if not column:
            columns[index] = column = name_for_blank(index)
        if column.lower() in seen:
            first = seen[column.lower()]
            raise FileUnreadable(
                f"the column {column!r} appears twice in the header ({column_letter(first)} and "
                f"{column_letter(index)}): rename one"
            )
        seen[column.lower()] = index
    return columns


def column_letter(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA: how a spreadsheet names a column."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


# --- XLSX ---------------------------------------------------------------------------------


def _open_xlsx(content: bytes) -> Table:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        raise FileUnreadable(f"the file is not an Excel workbook (.xlsx) that can be read: {error}") from error
    if not workbook.worksheets:
        raise FileUnreadable("the workbook has no sheets")
    sheet = workbook.worksheets[0]
    merged = [ref for ref in _merged_ranges(workbook, sheet) if _touches_first_row(ref)]
    if merged:
        raise FileUnreadable(f"header cells {', '.join(merged)} are merged; unmerge them")
    rows = sheet.iter_rows(values_only=True)
    header = next(rows, None)
    if header is None:
        raise FileUnreadable("the first sheet is empty: it has no header row")
    columns = _header(list(header), lambda index: f"column {column_letter(index)}")
    return Table(columns, _xlsx_rows(rows, workbook), "xlsx")


def _merged_ranges(workbook, sheet) -> list[str]:
    # Read-only worksheets do not expose merged cells: read <mergeCell ref="B1:C1"/> ourselves.
    path = getattr(sheet, "_worksheet_path", None)
    archive = getattr(workbook, "_archive", None)
    if not path or archive is None:
        return []
    refs = []
    with archive.open(path) as xml:
        for _event, element in iterparse(xml):  # noqa: S314 - the workbook's own sheet XML, refs only
            if element.tag.endswith("}mergeCell"):
                refs.append(element.get("ref", ""))
            element.clear()
    return refs


def _touches_first_row(ref: str) -> bool:
    match = re.match(r"^[A-Z]+(\d+)(?::[A-Z]+(\d+))?$", ref)
    return bool(match) and int(match.group(1)) == 1


def _xlsx_rows(rows, workbook) -> Iterator[tuple[int, list[str]]]:
    try:
        for line, values in enumerate(rows, start=2):
            texts = [cell_text(value) for value in values]
            if any(texts):
                yield line, texts
    finally:
        workbook.close()


def cell_text(value) -> str:
    """An Excel cell as the text a CSV would have held (dates in ISO, whole numbers without .0)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ") if value.time() != dt.time() else value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).strip()


# --- Values -------------------------------------------------------------------------------

_DUTCH_DATE = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_ISO_DATE = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)
DATE_FORMATS = "22-11-2026, 22/11/2026 or 2026-11-22"


def _date_parts(text: str):
    match = _DUTCH_DATE.match(text)
    if match:
        day, month, year, hour, minute, second = match.groups()
        return int(year), int(month), int(day), hour, minute, second, None
    match = _ISO_DATE.match(text)
    if match:
        year, month, day, hour, minute, second, offset = match.groups()
        return int(year), int(month), int(day), hour, minute, second, offset
    raise ValueError(f"{text!r} is not a date (expected {DATE_FORMATS})")


def parse_date(text: str) -> dt.date:
    """22-11-2026, 22/11/2026, 22.11.2026 or 2026-11-22, with an optional time that is ignored."""
    year, month, day, *_ = _date_parts(text.strip())
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a date that exists (day-month-year)") from None


def parse_datetime(text: str, tzinfo: dt.tzinfo) -> dt.datetime:
    """A date with an optional time (and ISO offset); without an offset it is local time in tzinfo."""
    stripped = text.strip()
    year, month, day, hour, minute, second, offset = _date_parts(stripped)
    try:
        value = dt.datetime(year, month, day, int(hour or 0), int(minute or 0), int(second or 0))  # noqa: DTZ001
    except ValueError:
        raise ValueError(f"{stripped!r} is not a date and time that exists") from None
    if offset:
        parsed = dt.datetime.fromisoformat(stripped.replace(" ", "T"))
        return parsed.replace(microsecond=0) if parsed.tzinfo else value.replace(tzinfo=tzinfo)
    return value.replace(tzinfo=tzinfo)


_CURRENCY_NOISE = str.maketrans("", "", " \u00a0€$£'")


# Beyond this a number is a mistake, not an amount, a count or a score (and Python refuses to
# write an integer of more than 4,300 digits as text).
MAX_DIGITS = 18


def parse_decimal(text: str) -> Decimal:
    """1.234,56 / 1234,56 / 1234.56 / € 12,50 / -3. With both separators the last one is the decimal
    mark; a lone comma is a decimal comma; a lone dot is a decimal point unless it repeats."""
    compact = text.strip().translate(_CURRENCY_NOISE)
    comma, dot = compact.rfind(","), compact.rfind(".")
    if comma >= 0 and dot >= 0:
        last_is_comma = comma > dot
        compact = compact.replace(".", "").replace(",", ".") if last_is_comma else compact.replace(",", "")
    elif comma >= 0:
        compact = compact.replace(",", "") if compact.count(",") > 1 else compact.replace(",", ".")
    elif dot >= 0 and compact.count(".") > 1:
        compact = compact.replace(".", "")
    try:
        value = Decimal(compact)
    except InvalidOperation:
        raise ValueError(f"{text.strip()!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{text.strip()!r} is not a number")
    if value.adjusted() >= MAX_DIGITS:
        raise ValueError(f"{text.strip()[:40]!r} is too large a number (at most {MAX_DIGITS} digits)")
    return value


TRUE_WORDS = frozenset({"ja", "j", "yes", "y", "true", "1", "waar", "x"})
FALSE_WORDS = frozenset({"nee", "n", "no", "false", "0", "onwaar"})


def parse_boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{text.strip()!r} is not yes or no (ja/nee, yes/no, true/false, 1/0, waar/onwaar)")
