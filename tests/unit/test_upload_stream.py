"""Streaming an upload in chunks reads what `read_upload` reads (formats, encodings, delimiters,
decimal commas, gzip, Parquet), with the same errors, whatever the head and chunk sizes."""

from __future__ import annotations

import gzip
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlcycle.domain.tables import read_upload
from mlcycle.domain.upload_stream import UploadStream, open_upload
from mlcycle.errors import BadInputError
from tests.unit.test_tables import CSV, parquet_bytes

# (head bytes, chunk rows): the whole file as head, and heads cut short with tiny chunks
SIZES = [(None, 200_000), (16, 2), (64, 7)]
TABLE = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
READABLE = {
    "comma": (CSV, "w.csv"),
    "semicolon": (CSV.replace(b",", b";"), "w.csv"),
    "tab": (CSV.replace(b",", b"\t"), "w.tsv"),
    "pipe": (CSV.replace(b",", b"|"), "w.csv"),
    "quoted delimiters": (b'name;city\n"Smith, John";Paris\n"Doe, Jane";Rome\n', "p.csv"),
    "quoted newlines": (b'id,comment,score\n1,"two\nlines",3\n2,plain,4\n3,"a\n\nb",5\n', "c.csv"),
    "na tokens and dates": (
        b"n,x,s,d\n1,1.5,a,2024-01-31\nNA,N/A,null,\n3,NaN,?,2024-02-01\n"
        b"-,nan,NULL,2024-02-02\n5,2.5,b,2024-02-03\n",
        "t.csv",
    ),
    "negative numbers": (b"a,b\n-1,-\n-2.5,3\n", "t.csv"),
    "utf-8 bom": ("\ufeffcity,n\nZürich,1\nGenève,2\n".encode(), "c.csv"),
    "latin-1": ("city;n\nZürich;1\nGenève;2\n".encode("latin-1"), "c.csv"),
    "undefined in cp1252": ("a;b\n1;Zürich\n".encode("latin-1") + b"2;x\x81y\n", "t.csv"),
    "utf-16": ("a\tb\n1\tZürich\n2\tGenève\n".encode("utf-16"), "excel.txt"),
    "decimal commas": (b"a;b\n1,5;x\n2,25;y\n-0,5;z\n", "eu.csv"),
    "gzip": (gzip.compress(CSV), "w.csv"),
    "gzip named so": (gzip.compress(CSV), "w.csv.gz"),
    "named gzip, plain": (CSV, "w.csv.gz"),
    "parquet named gzip": (parquet_bytes(TABLE), "t.parquet.gz"),
    "parquet": (parquet_bytes(TABLE), "t.parquet"),
    "gzip parquet": (gzip.compress(parquet_bytes(TABLE)), "t.bin"),
    "trailing delimiter": (b"a,b,\n1,2,\n3,4,\n", "t.csv"),
    "spaced names": (b" a , b\n1,2\n3,4\n", "t.csv"),
    "padded numbers": (b"a,b\n 1 ,x\n2 ,y\n", "t.csv"),
}
BAD = {
    "empty": (b"", "t.csv"),
    "empty gzip": (gzip.compress(b""), "t.csv.gz"),
    "header only": (b"a,b,c\n", "t.csv"),
    "binary": (b"\x00\x01\x02\x03garbage\xff\xfe" * 50, "t.csv"),
    "xlsx": (b"PK\x03\x04" + b"\x00" * 40, "book.xlsx"),
    "duplicates": (b"a,b,a,c\n1,2,3,4\n", "t.csv"),
    "unnamed": (b"a,,c\n1,2,3\n", "t.csv"),
    "no header": (b"1,2,3\n4,5,6\n", "t.csv"),
    "corrupt gzip": (b"\x1f\x8b\x08\x00corrupt", "t.csv.gz"),
    "not parquet": (b"a,b\n1,2\n", "t.parquet"),
    "never closed": (b'a,b\n1,"never closed\n2,3\n', "t.csv"),
    "ragged": (b"a,b,c,d\n" + b"1,2,3,4\n" * 55 + b"1,2,3,4,5\n" + b"1,2,3,4\n" * 3, "t.csv"),
    "corrupt parquet": (parquet_bytes(pa.table({"a": list(range(100))}))[:300], "t.parquet"),
    "empty parquet": (parquet_bytes(pa.table({"a": pa.array([], pa.int64())})), "t.parquet"),
}


def _stream(
    tmp_path: Path, data: bytes, filename: str, head: int | None, rows: int
) -> tuple[UploadStream, list[tuple[int, pa.Table]]]:
    path = tmp_path / "upload"
    path.write_bytes(data)
    upload = open_upload(path, filename, chunk_rows=rows, head_bytes=head)
    return upload, list(upload.chunks())


@pytest.mark.parametrize(("head", "rows"), SIZES)
@pytest.mark.parametrize("case", READABLE)
def test_the_chunks_are_what_read_upload_reads(
    tmp_path: Path, case: str, head: int | None, rows: int
) -> None:
    data, filename = READABLE[case]
    expected = read_upload(data, filename)
    upload, chunks = _stream(tmp_path, data, filename, head, rows)
    assert (upload.format, upload.compression) == (expected.format, expected.compression)
    assert (upload.delimiter, upload.encoding) == (expected.delimiter, expected.encoding)
    assert upload.notes == expected.notes
    assert upload.columns == expected.table.column_names
    assert [offset for offset, _ in chunks] == list(range(0, expected.table.num_rows, rows))
    assert all(t.num_rows == rows for _, t in chunks[:-1])
    got = pa.concat_tables([t for _, t in chunks])
    assert got.schema == expected.table.schema
    assert got.to_pylist() == expected.table.to_pylist()


@pytest.mark.parametrize(("head", "rows"), SIZES)
@pytest.mark.parametrize("case", BAD)
def test_bad_uploads_fail_as_read_upload_fails(
    tmp_path: Path, case: str, head: int | None, rows: int
) -> None:
    data, filename = BAD[case]
    with pytest.raises(BadInputError) as expected:
        read_upload(data, filename)
    with pytest.raises(BadInputError) as caught:
        _stream(tmp_path, data, filename, head, rows)
    # the same sentence; the codec's own words after it may differ
    assert str(caught.value).split(" (")[0] == str(expected.value).split(" (")[0]


def test_a_ragged_row_deep_in_the_file_names_its_line(tmp_path: Path) -> None:
    data = b"a,b,c\n" + b"1,2,3\n" * 300_000 + b"4,5\n"
    with pytest.raises(BadInputError, match=r"line 300002 has 2 fields, the header has 3: '4,5'"):
        _stream(tmp_path, data, "t.csv", None, 100_000)


def test_invalid_utf8_past_the_head_restarts_the_read_in_cp1252(tmp_path: Path) -> None:
    data = b"city,n\n" + b"Paris,1\n" * 1000 + "Zürich,2\n".encode("latin-1")
    upload, chunks = _stream(tmp_path, data, "c.csv", 256, 300)
    assert upload.encoding == "cp1252"
    assert upload.notes == ["the file is not UTF-8; decoded it as cp1252"]
    assert [offset for offset, _ in chunks] == [0, 300, 600, 900]  # once, after the restart
    assert chunks[-1][1].column("city").to_pylist()[-2:] == ["Paris", "Zürich"]


def test_a_chunk_with_text_in_a_numeric_column_keeps_that_chunk_as_text(tmp_path: Path) -> None:
    rows = [f"{i},{i / 2}" for i in range(100)]
    rows[70] = "oops,35.0"
    data = ("a,b\n" + "\n".join(rows) + "\n").encode()
    _, chunks = _stream(tmp_path, data, "t.csv", 64, 30)
    types = [t.schema.field("a").type for _, t in chunks]
    assert types == [pa.int64(), pa.int64(), pa.string(), pa.int64()]
    assert chunks[2][1].column("a").to_pylist()[10:12] == ["oops", "71"]
    assert all(t.schema.field("b").type == pa.float64() for _, t in chunks)


def test_decimal_commas_stay_numbers_in_a_chunk_that_falls_back_to_text(tmp_path: Path) -> None:
    data = b"a;b\n" + b"1,5;x\n" * 20 + b"abc;y\n" + b"2,25;z\n" * 5
    _, chunks = _stream(tmp_path, data, "eu.csv", 32, 10)
    assert chunks[0][1].column("a").to_pylist() == [1.5] * 10
    # scoring reads "1.5" as a number and quarantines "abc" alone
    assert chunks[2][1].column("a").to_pylist() == ["abc", "2.25", "2.25", "2.25", "2.25", "2.25"]


def test_a_column_empty_in_the_head_is_typed_by_its_values(tmp_path: Path) -> None:
    data = b"a,b\n" + b"1,\n" * 50 + b"2,2024-05-31\n" + b"3,2024-06-01 12:00:00\n"
    _, chunks = _stream(tmp_path, data, "t.csv", 32, 50)
    assert [t.schema.field("b").type for _, t in chunks] == [pa.null(), pa.timestamp("s")]
    assert chunks[1][1].column("b").to_pylist()[1] == datetime(2024, 6, 1, 12)


def test_parquet_row_groups_are_cut_into_exact_chunks(tmp_path: Path) -> None:
    table = pa.table({"a": list(range(1000)), "b": [str(i) for i in range(1000)]})
    path = tmp_path / "upload"
    pq.write_table(table, path, row_group_size=170)
    upload = open_upload(path, "t.parquet", chunk_rows=300)
    chunks = list(upload.chunks())
    assert [(o, t.num_rows) for o, t in chunks] == [(0, 300), (300, 300), (600, 300), (900, 100)]
    assert pa.concat_tables([t for _, t in chunks]).equals(table)
