"""Reading an upload from a local file as a stream of chunks: memory stays one chunk's whatever
the file's size (batch scoring's plan). The formats, checks and messages are `read_upload`'s.

- gzip: decompressed to a file beside it with pyarrow's gzip stream, then read as below (a
  plain file can be re-read: the encoding fallback and the serial re-parse need that, and
  Parquet needs random access to its footer).
- Parquet: `ParquetFile.iter_batches`, cut into chunks of `chunk_rows`.
- CSV: the dialect (encoding, delimiter, decimal comma), the header and each column's type are
  read off the head of the file with `read_upload` itself; the file is then parsed with
  pyarrow's streaming reader, every column as text, and each chunk converted to the head's
  type. A chunk whose values do not all convert (text in a numeric column past the head) gets
  the next type that fits, text at worst, as `read_upload` types a whole file; scoring then
  quarantines just the rows it cannot use. Invalid UTF-8 past the head restarts the read in
  cp1252 (then latin-1), as `read_upload` falls back, so a restart yields the first chunk again.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mlcycle.domain import tables
from mlcycle.domain.tables import NA_TOKENS, read_upload
from mlcycle.errors import BadInputError

HEAD_BYTES = 1 << 20  # what the dialect and the types are read from (the sniffers use 256 KB)
MAX_HEAD_BYTES = 64 << 20  # a head grows (x4) until it holds a data row, up to this
BLOCK_BYTES = 4 << 20  # the CSV reader's block: a few tens of thousands of rows
_COPY_BYTES = 8 << 20
# What a column of text may become, in the order pyarrow's CSV inference tries them.
_INFERRED = (
    pa.int64(),
    pa.bool_(),
    pa.timestamp("s"),
    pa.timestamp("s", tz="UTC"),
    pa.timestamp("ns"),
    pa.timestamp("ns", tz="UTC"),
    pa.float64(),
)
# 3,14 -> 3.14 (for a decimal-comma file; pyarrow's cast knows only the dot)
_COMMA_NUMBER = r"^([-+]?\d*),(\d+([eE][-+]?\d+)?)$"


@dataclass
class UploadStream:
    """An upload being read chunk by chunk; `columns` are known before the first chunk."""

    path: Path
    name: str
    chunk_rows: int
    format: Literal["csv", "parquet"]
    columns: list[str]
    compression: Literal["gzip"] | None = None
    delimiter: str | None = None
    encoding: str | None = None
    notes: list[str] = field(default_factory=list)
    decimal_point: str = "."
    _raw: list[str] = field(default_factory=list)  # CSV: the header as written
    _types: dict[str, pa.DataType] = field(default_factory=dict)  # CSV: the head's types

    def chunks(self) -> Iterator[tuple[int, pa.Table]]:
        """(offset of its first row, 0-based; the chunk) for each chunk, in file order."""
        if self.format == "parquet":
            yield from _parquet_chunks(self)
        else:
            yield from _csv_chunks(self)


def open_upload(
    path: Path, filename: str, *, chunk_rows: int, head_bytes: int | None = None
) -> UploadStream:
    """Detect the upload's format (by content) and read what comes before its rows; the
    CSV head is `head_bytes` (`HEAD_BYTES`) long."""
    name = filename.rsplit("/", 1)[-1] or "the upload"
    notes: list[str] = []
    compression: Literal["gzip"] | None = None
    if path.stat().st_size == 0:
        raise BadInputError(f"{name}: the file is empty")
    with path.open("rb") as file:
        magic = file.read(4)
    if magic.startswith(b"\x1f\x8b"):
        path = _gunzip(path, name)
        compression = "gzip"
        if path.stat().st_size == 0:
            raise BadInputError(f"{name}: the file is empty (after gzip decompression)")
        with path.open("rb") as file:
            magic = file.read(4)
    if magic == b"PAR1":
        if not compression and filename.lower().endswith(".gz"):
            notes.append(f"{name} is named .gz but is not gzip-compressed; read it as is")
        columns = _parquet_columns(path, name, notes)
        return UploadStream(path, name, chunk_rows, "parquet", columns, compression, notes=notes)
    head = _head(path, head_bytes or HEAD_BYTES)
    # the pipeline's detection, checks and messages (and its note on a .gz name), on the head
    unzipped = filename[:-3] if compression and filename.lower().endswith(".gz") else filename
    result = read_upload(head, unzipped)
    encoding = result.encoding or "utf-8"
    delimiter = result.delimiter or ","
    sample = tables.decode_sample(head, encoding)
    decimal_point = tables.sniff_decimal_point(tables.sniff_delimiter(sample)[1], delimiter)
    raw = _header(head, encoding, delimiter)
    return UploadStream(
        path,
        name,
        chunk_rows,
        "csv",
        result.table.column_names,
        compression,
        delimiter,
        encoding,
        result.notes,
        decimal_point,
        raw,
        dict(zip(result.table.column_names, result.table.schema.types, strict=True)),
    )


def _gunzip(path: Path, name: str) -> Path:
    plain = path.with_name(path.name + ".plain")
    try:
        with pa.input_stream(str(path), compression="gzip") as source, plain.open("wb") as sink:
            while block := source.read(_COPY_BYTES):
                sink.write(block)
    except (OSError, pa.ArrowException) as exc:
        raise BadInputError(f"{name}: the gzip data is corrupt or truncated ({exc})") from exc
    return plain


# --- Parquet -----------------------------------------------------------------------------


def _parquet_file(path: Path, name: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(str(path))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise BadInputError(f"{name}: the Parquet file is corrupt or truncated ({exc})") from exc


def _parquet_columns(path: Path, name: str, notes: list[str]) -> list[str]:
    """The validated column names, from the first row (or the no-rows error)."""
    file = _parquet_file(path, name)
    first = next(file.iter_batches(batch_size=1), None)
    if first is None:
        empty = file.schema_arrow.empty_table()
        tables.validated(empty, name, "parquet", notes)  # raises: columns but no rows
    table = tables.validated(pa.Table.from_batches([first]), name, "parquet", notes)
    return table.column_names


def _parquet_chunks(upload: UploadStream) -> Iterator[tuple[int, pa.Table]]:
    file = _parquet_file(upload.path, upload.name)
    batches = file.iter_batches(batch_size=min(upload.chunk_rows, 64 * 1024))
    offset = 0
    try:
        for table in _rechunk(batches, upload.chunk_rows):
            yield offset, tables.validated(table, upload.name, "parquet", [])
            offset += table.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise BadInputError(
            f"{upload.name}: the Parquet file is corrupt or truncated ({exc})"
        ) from exc


def _rechunk(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Tables of exactly `rows` rows (the last may be shorter) from batches of any size."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows).combine_chunks()
            rest = table.slice(rows)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending).combine_chunks()


# --- CSV ---------------------------------------------------------------------------------


def _head(path: Path, head_bytes: int) -> bytes:
    """The file's first bytes, cut after a whole line (not inside a quoted value), with at
    least one data row when the file has one; the whole file when it is that small."""
    size = path.stat().st_size
    wanted = head_bytes
    while True:
        with path.open("rb") as file:
            data = file.read(wanted)
        if len(data) >= size:
            return data
        cut = _cut(data)
        if data.count(b"\n", 0, cut) >= 2 or wanted >= MAX_HEAD_BYTES:
            return data[:cut] if cut else data
        wanted *= 4


def _cut(data: bytes) -> int:
    """The end of the last whole line of `data` outside quotes (0 if none)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        newline = "\n".encode("utf-16-le" if data.startswith(codecs.BOM_UTF16_LE) else "utf-16-be")
        position = len(data) - len(data) % 2
        while (position := data.rfind(newline, 0, position)) > 0:
            if position % 2 == 0:
                return position + 2
        return 0
    position = len(data)
    for _ in range(10_000):  # a line break inside quotes: try the one before
        position = data.rfind(b"\n", 0, position)
        if position < 0:
            return 0
        if data.count(b'"', 0, position) % 2 == 0:
            return position + 1
    return 0


def _header(head: bytes, encoding: str, delimiter: str) -> list[str]:
    """The column names as pyarrow's reader reads them (before `read_upload` strips them)."""
    reader = pacsv.open_csv(
        pa.BufferReader(head),
        read_options=pacsv.ReadOptions(encoding=_arrow_encoding(encoding), use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
    )
    return list(reader.schema.names)


def _arrow_encoding(encoding: str) -> str:
    return "utf-8" if encoding == "utf-8-sig" else encoding  # pyarrow skips a UTF-8 BOM


def _csv_chunks(upload: UploadStream) -> Iterator[tuple[int, pa.Table]]:
    encoding = upload.encoding or "utf-8"
    fallbacks = list(tables.ENCODING_FALLBACKS.get(encoding, (encoding,)))
    while True:
        try:
            yield from _csv_pass(upload, fallbacks[0])
            return
        except (UnicodeDecodeError, pa.ArrowInvalid) as exc:
            if not _is_decode_error(exc) or len(fallbacks) < 2:
                raise BadInputError(
                    f"{upload.name}: cannot parse the CSV ({tables.arrow_message(exc)})"
                ) from exc
            fallbacks.pop(0)
            upload.encoding = fallbacks[0]
            upload.notes = [n for n in upload.notes if "not UTF-8" not in n]
            upload.notes.append(f"the file is not UTF-8; decoded it as {fallbacks[0]}")


def _is_decode_error(exc: Exception) -> bool:
    return isinstance(exc, UnicodeDecodeError) or "invalid UTF8" in str(exc)


def _csv_pass(upload: UploadStream, encoding: str) -> Iterator[tuple[int, pa.Table]]:
    handler = tables.FirstInvalidRow()
    offset = 0
    last: pa.Table | None = None
    try:
        reader = pacsv.open_csv(  # reads the first block already
            str(upload.path),
            # serial: measured faster here than threaded, and it knows a ragged row's line
            read_options=pacsv.ReadOptions(
                encoding=_arrow_encoding(encoding), use_threads=False, block_size=BLOCK_BYTES
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=upload.delimiter or ",",
                newlines_in_values=True,  # measured at no cost when streaming
                invalid_row_handler=handler,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in upload._raw},
                null_values=NA_TOKENS,
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
        for text in _rechunk(iter(reader), upload.chunk_rows):
            last = _typed(upload, text, offset)
            yield offset, last
            offset += text.num_rows
    except pa.ArrowInvalid as exc:
        if handler.row is not None:
            raise BadInputError(tables.ragged_message(upload.name, handler)) from exc
        raise
    if last is not None:
        _reject_unclosed_quote(upload, last, offset, encoding)


def _typed(upload: UploadStream, text: pa.Table, offset: int) -> pa.Table:
    """A chunk of text columns with the names and types `read_upload` gives them."""
    columns: list[pa.Array] = []
    names: list[str] = []
    for i, raw in enumerate(upload._raw):
        column = text.column(i)
        name = raw.strip()
        if not name:  # an unnamed column, empty in the head: it must stay empty
            if column.null_count != len(column):
                raise BadInputError(
                    f"{upload.name}: column(s) {i + 1} have no name in the header; every "
                    f"column needs a name (row {offset + 1 + _first_valid(column)} has a value)"
                )
            continue
        names.append(name)
        columns.append(_convert(column, upload._types[name], upload.decimal_point == ","))
    return pa.Table.from_arrays(columns, names=names)


def _first_valid(column: pa.ChunkedArray) -> int:
    return int(pc.index(pc.is_valid(column), True).as_py())


def _convert(column: pa.ChunkedArray, head: pa.DataType, decimal_comma: bool) -> pa.Array:
    """The column in the first type that holds all its values: the head's, then pyarrow's
    inference order, then text (a decimal comma made a dot, for scoring to read the number)."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_string(head) or array.null_count == len(array):
        return array if pa.types.is_string(head) else pa.nulls(len(array), head)
    trimmed = pc.utf8_trim_whitespace(array)  # pyarrow's CSV converters skip the spaces too
    numeric = (
        pc.replace_substring_regex(trimmed, _COMMA_NUMBER, r"\1.\2") if decimal_comma else None
    )
    candidates = [head] if not pa.types.is_null(head) else []
    candidates += [t for t in _INFERRED if t != head]
    if pa.types.is_floating(head):  # nothing after float in the order holds what float cannot
        candidates = [head]
    for typ in candidates:
        source = numeric if numeric is not None and pa.types.is_floating(typ) else trimmed
        try:
            converted: pa.Array = pc.cast(source, typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return converted
    if numeric is not None and (pa.types.is_floating(head) or pa.types.is_integer(head)):
        return numeric
    return array


def _reject_unclosed_quote(upload: UploadStream, last: pa.Table, rows: int, encoding: str) -> None:
    """pyarrow reads a never-closed quote as one value running to the end of the file: the
    last row's value holding a line break is the file's end, with no closing quote."""
    if encoding == "utf-16" or not last.num_rows:
        return
    row = last.slice(last.num_rows - 1).to_pylist()[0]
    multiline = {k: v for k, v in row.items() if isinstance(v, str) and "\n" in v}
    if not multiline:
        return
    longest = max(len(v.encode(encoding, errors="replace")) for v in multiline.values())
    size = upload.path.stat().st_size
    with upload.path.open("rb") as file:
        file.seek(max(0, size - longest - 1024))
        tail = file.read()
    end = len(tail.rstrip())  # trailing whitespace ignored
    if tail.endswith(b'"', 0, end):
        return
    for column, value in multiline.items():
        if tail.endswith(value.rstrip().encode(encoding, errors="replace"), 0, end):
            raise BadInputError(
                f"{upload.name}: a quote in column {column!r} of the last row (row "
                f"{rows}) is never closed, so it swallows the rest of the file"
            )
