"""Reading an uploaded table (CSV, gzip'd CSV or Parquet) from bytes into Arrow.

Every malformed input raises `BadInputError` with a message naming the problem; no raw
pyarrow or codec error escapes.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mlcycle.errors import BadInputError

NA_TOKENS = ["", "NA", "N/A", "null", "NULL", "NaN", "nan", "-", "?"]
DELIMITERS = (",", ";", "\t", "|")
SAMPLE_BYTES = 256 * 1024
SNIFF_ROWS = 50

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
# Files people upload by mistake, named in the error so they know what to export instead.
_KNOWN_BINARY = (
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook is one): export it as CSV"),
    (b"\xd0\xcf\x11\xe0", "a legacy Excel/Office document: export it as CSV"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"BZh", "bzip2-compressed data: use gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data: use gzip"),
    (b"\xfd7zXZ", "xz-compressed data: use gzip"),
    (b"SQLite format 3", "an SQLite database"),
)
# pyarrow decodes UTF-8 natively (and skips its BOM); other encodings are transcoded
ENCODING_FALLBACKS = {
    "utf-8": ("utf-8", "cp1252", "latin-1"),
    "utf-8-sig": ("utf-8", "cp1252", "latin-1"),
    "cp1252": ("cp1252", "latin-1"),
    "latin-1": ("latin-1",),
}
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\f")
_NUMBER = re.compile(r"^\s*[-+]?(\d+([.,]\d*)?|[.,]\d+)([eE][-+]?\d+)?\s*$")
_COMMA_DECIMAL = re.compile(r"^-?\d+,\d+$")
_DOT_DECIMAL = re.compile(r"^-?\d+\.\d+$")


@dataclass
class ReadResult:
    """A table read from an upload, with what was detected on the way."""

    table: pa.Table
    format: Literal["csv", "parquet"]
    compression: Literal["gzip"] | None = None
    delimiter: str | None = None  # CSV only
    encoding: str | None = None  # CSV only: utf-8, utf-8-sig, utf-16, cp1252 or latin-1
    notes: list[str] = field(default_factory=list)


def read_table(data: bytes, filename: str, *, dictionary_encode: bool = False) -> pa.Table:
    """The table in an uploaded file; see `read_upload` for what was detected."""
    return read_upload(data, filename, dictionary_encode=dictionary_encode).table


def read_upload(data: bytes, filename: str, *, dictionary_encode: bool = False) -> ReadResult:
    """Read CSV (any of `, ; TAB |`), gzip'd CSV or Parquet, detected by content.

    With `dictionary_encode`, CSV text columns with few distinct values come back
    dictionary-encoded (same values; a quarter faster to read, and cheap to process).
    """
    name = filename.rsplit("/", 1)[-1] or "the upload"
    notes: list[str] = []
    compression: Literal["gzip"] | None = None
    if not data:
        raise BadInputError(f"{name}: the file is empty")
    if data.startswith(_GZIP_MAGIC):
        data = _gunzip(data, name)
        compression = "gzip"
        if not data:
            raise BadInputError(f"{name}: the file is empty (after gzip decompression)")
    elif filename.lower().endswith(".gz"):
        notes.append(f"{name} is named .gz but is not gzip-compressed; read it as is")

    if data.startswith(_PARQUET_MAGIC):
        table = _read_parquet(data, name)
        result = ReadResult(table, "parquet", compression, notes=notes)
    else:
        if filename.lower().endswith((".parquet", ".parquet.gz", ".pq")):
            raise BadInputError(f"{name}: not a Parquet file (it lacks the PAR1 magic bytes)")
        _reject_binary(data, name)
        table, delimiter, encoding = _read_csv(data, name, notes, dictionary_encode)
        result = ReadResult(table, "csv", compression, delimiter, encoding, notes)
    result.table = validated(result.table, name, result.format, notes)
    return result


def _gunzip(data: bytes, name: str) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise BadInputError(f"{name}: the gzip data is corrupt or truncated ({exc})") from exc


def _read_parquet(data: bytes, name: str) -> pa.Table:
    try:
        return pq.ParquetFile(pa.BufferReader(data)).read()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise BadInputError(f"{name}: the Parquet file is corrupt or truncated ({exc})") from exc


def _reject_binary(data: bytes, name: str) -> None:
    head = data[:8192]
    for magic, what in _KNOWN_BINARY:
        if head.startswith(magic):
            raise BadInputError(f"{name}: not a CSV, gzip or Parquet file: it is {what}")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    if b"\x00" in head or controls > len(head) * 0.05:
        raise BadInputError(
            f"{name}: not a CSV, gzip or Parquet file: it holds binary data "
            f"(first bytes {head[:8]!r})"
        )


def _read_csv(
    data: bytes, name: str, notes: list[str], dictionary_encode: bool = False
) -> tuple[pa.Table, str, str]:
    encoding = _sniff_encoding(data)
    sample = decode_sample(data, encoding)
    delimiter, rows = sniff_delimiter(sample)
    decimal_point = sniff_decimal_point(rows, delimiter)
    if decimal_point == ",":
        notes.append("numbers use a decimal comma (e.g. 3,14); read them as numbers")
    if encoding == "utf-16":
        try:
            table = _parse_csv(data, name, delimiter, encoding, decimal_point, dictionary_encode)
            return table, delimiter, encoding
        except UnicodeDecodeError as exc:
            raise BadInputError(
                f"{name}: starts with a UTF-16 byte order mark but is not valid UTF-16 "
                f"({exc.reason})"
            ) from exc
    # latin-1 decodes any byte, so the loop always returns
    for candidate in ENCODING_FALLBACKS[encoding]:
        try:
            table = _parse_csv(data, name, delimiter, candidate, decimal_point, dictionary_encode)
        except UnicodeDecodeError:
            continue
        # pyarrow types a column holding invalid UTF-8 as binary instead of failing
        if candidate == "utf-8" and any(_is_binary(t) for t in table.schema.types):
            continue
        if candidate == "utf-8":
            return table, delimiter, encoding
        notes.append(f"the file is not UTF-8; decoded it as {candidate}")
        return table, delimiter, candidate
    raise AssertionError("unreachable: latin-1 decodes every byte")  # pragma: no cover


def _is_binary(typ: pa.DataType) -> bool:
    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    return bool(pa.types.is_binary(typ))


def _sniff_encoding(data: bytes) -> str:
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    head = data[:SAMPLE_BYTES]
    for encoding in ("utf-8", "cp1252"):
        try:
            codecs.getincrementaldecoder(encoding)().decode(head, final=False)
        except UnicodeDecodeError:
            continue
        return encoding
    return "latin-1"


def decode_sample(data: bytes, encoding: str) -> str:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    text: str = decoder.decode(data[:SAMPLE_BYTES], final=len(data) <= SAMPLE_BYTES)
    if len(data) > SAMPLE_BYTES:  # the last line is cut short
        text = text[: text.rfind("\n") + 1] or text
    return text.lstrip("\ufeff")


def sniff_delimiter(sample: str) -> tuple[str, list[list[str]]]:
    """The delimiter whose rows most consistently match the header's field count.

    csv.reader honours quotes, so a comma inside "Smith, John" does not count.
    """
    best: tuple[float, int] = (-1.0, 0)
    best_delimiter, best_rows = ",", [[sample]]
    for delimiter in DELIMITERS:
        try:
            reader = csv.reader(io.StringIO(sample), delimiter=delimiter, strict=False)
            rows = [row for _, row in zip(range(SNIFF_ROWS), reader, strict=False) if row]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        body = rows[1:] or rows
        score = (sum(len(r) == width for r in body) / len(body), width)
        if score > best:
            best, best_delimiter, best_rows = score, delimiter, rows
    return best_delimiter, best_rows


def sniff_decimal_point(rows: list[list[str]], delimiter: str) -> str:
    """A comma when the sample writes numbers as 3,14 (European exports), else a dot."""
    if delimiter == ",":
        return "."
    cells = [c.strip() for row in rows[1:] for c in row]
    commas = sum(bool(_COMMA_DECIMAL.match(c)) for c in cells)
    dots = sum(bool(_DOT_DECIMAL.match(c)) for c in cells)
    return "," if commas and not dots else "."


class FirstInvalidRow:
    """Remembers the first ragged row and stops the parse there."""

    def __init__(self) -> None:
        self.row: pacsv.InvalidRow | None = None

    def __call__(self, row: pacsv.InvalidRow) -> str:
        if self.row is None or (self.row.number is None and row.number is not None):
            self.row = row
        return "error"


def _parse_csv(
    data: bytes,
    name: str,
    delimiter: str,
    encoding: str,
    decimal_point: str,
    dictionary_encode: bool = False,
) -> pa.Table:
    def parse(use_threads: bool, handler: FirstInvalidRow) -> pa.Table:
        return pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(encoding=encoding, use_threads=use_threads),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                # quote-aware chunking costs ~25%; only quoted values can hold newlines
                newlines_in_values=quoted,
                invalid_row_handler=handler,
            ),
            convert_options=pacsv.ConvertOptions(
                null_values=NA_TOKENS,
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                decimal_point=decimal_point,
                auto_dict_encode=dictionary_encode,
            ),
        )

    quoted = b'"' in data
    handler = FirstInvalidRow()
    try:
        table = parse(True, handler)
    except pa.ArrowException as exc:
        if handler.row is None:
            raise BadInputError(f"{name}: cannot parse the CSV ({arrow_message(exc)})") from exc
        if handler.row.number is None:  # parallel parsing does not know row numbers
            retry = FirstInvalidRow()
            try:
                parse(False, retry)
            except pa.ArrowInvalid:
                handler = retry
        raise BadInputError(ragged_message(name, handler)) from exc
    _reject_unclosed_quote(table, data, name, encoding)
    return table


def ragged_message(name: str, handler: FirstInvalidRow) -> str:
    row = handler.row
    assert row is not None
    where = f"line {row.number}" if row.number is not None else "a row"
    text = row.text if len(row.text) <= 80 else row.text[:77] + "..."
    return (
        f"{name}: {where} has {row.actual_columns} fields, the header has "
        f"{row.expected_columns}: {text!r}"
    )


def arrow_message(exc: Exception) -> str:
    return str(exc).removeprefix("CSV parse error: ").splitlines()[0]


def _reject_unclosed_quote(table: pa.Table, data: bytes, name: str, encoding: str) -> None:
    """pyarrow reads a never-closed quote as one value running to the end of the file."""
    tail = data[-1024:]
    end = len(data) - (len(tail) - len(tail.rstrip()))  # ignore trailing whitespace
    if table.num_rows == 0 or encoding == "utf-16" or data.endswith(b'"', 0, end):
        return
    last = table.slice(table.num_rows - 1).to_pylist()[0]
    for column, value in last.items():
        if (
            isinstance(value, str)
            and "\n" in value
            and data.endswith(value.rstrip().encode(encoding, errors="replace"), 0, end)
        ):
            raise BadInputError(
                f"{name}: a quote in column {column!r} of the last row (row "
                f"{table.num_rows}) is never closed, so it swallows the rest of the file"
            )


def validated(table: pa.Table, name: str, fmt: str, notes: list[str]) -> pa.Table:
    """Check the header; normalize names and date columns."""
    names = [str(n) for n in table.column_names]
    if not names:
        raise BadInputError(f"{name}: no columns found")
    stripped = [n.strip() for n in names]
    if stripped != names:
        notes.append("stripped spaces around column names")
    unnamed = [i for i, n in enumerate(stripped) if not n]
    # A trailing delimiter on every line makes an empty, unnamed last column: harmless.
    droppable = [i for i in unnamed if table.column(i).null_count == table.num_rows]
    if droppable and table.num_rows:
        notes.append(f"dropped {len(droppable)} unnamed empty column(s)")
        keep = [i for i in range(len(stripped)) if i not in droppable]
        table = table.select(keep)
        names = [names[i] for i in keep]
        stripped = [stripped[i] for i in keep]
        unnamed = [i for i, n in enumerate(stripped) if not n]
    named = [n for n in stripped if n]
    if named and all(_NUMBER.match(n) for n in named):
        raise BadInputError(
            f"{name}: the first line looks like data, not a header "
            f"({', '.join(stripped[:5])}); add a header line naming the columns"
        )
    if unnamed:
        positions = ", ".join(str(i + 1) for i in unnamed)
        raise BadInputError(
            f"{name}: column(s) {positions} have no name in the header; every column needs a name"
        )
    duplicates = sorted(n for n, count in Counter(stripped).items() if count > 1)
    if duplicates:
        # Name every header involved: ' a' and 'a' only collide once the spaces are stripped.
        clashes = []
        for d in duplicates:
            originals = [o for o in names if o.strip() == d]
            clashes.append(
                repr(d)
                if all(o == d for o in originals)
                else " and ".join(map(repr, originals)) + f", both {d!r} once stripped"
            )
        raise BadInputError(f"{name}: duplicate column names: {'; '.join(clashes)}")
    if table.num_rows == 0:
        if fmt == "parquet":
            raise BadInputError(f"{name}: the Parquet file has columns but no rows")
        raise BadInputError(f"{name}: the file has a header but no data rows")
    table = table.rename_columns(stripped)
    # Dates arrive as date32; timestamps keep pandas conversion uniform (datetime64).
    for i, typ in enumerate(table.schema.types):
        if pa.types.is_date(typ):
            table = table.set_column(i, stripped[i], table.column(i).cast(pa.timestamp("s")))
    return table
