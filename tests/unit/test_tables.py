"""Reading uploads: formats, encodings, delimiters, and a clear error for every bad input."""

from __future__ import annotations

import gzip
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlcycle.domain.tables import read_table, read_upload
from mlcycle.errors import BadInputError

CSV = b"city,temp,rain\nParis,12.5,yes\nRome,18.0,no\nOslo,3.25,yes\n"


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_reads_each_delimiter(delimiter: str) -> None:
    data = CSV.replace(b",", delimiter.encode())
    result = read_upload(data, "weather.csv")
    assert result.format == "csv"
    assert result.delimiter == delimiter
    assert result.table.column_names == ["city", "temp", "rain"]
    assert result.table.column("temp").to_pylist() == [12.5, 18.0, 3.25]
    assert result.table.column("city").to_pylist() == ["Paris", "Rome", "Oslo"]


def test_quoted_delimiters_do_not_fool_the_sniffer() -> None:
    data = b'name;city\n"Smith, John";Paris\n"Doe, Jane";Rome\n"Roe, Al";Oslo\n'
    result = read_upload(data, "people.csv")
    assert result.delimiter == ";"
    assert result.table.column("name").to_pylist() == ["Smith, John", "Doe, Jane", "Roe, Al"]


def test_quoted_newlines_are_values() -> None:
    table = read_table(b'id,comment,score\n1,"two\nlines",3\n2,plain,4\n', "c.csv")
    assert table.column("comment").to_pylist() == ["two\nlines", "plain"]
    assert table.column("score").to_pylist() == [3, 4]


def test_infers_types_and_na_tokens_are_null() -> None:
    data = (
        b"n,x,s,d\n1,1.5,a,2024-01-31\nNA,N/A,null,\n3,NaN,?,2024-02-01\n"
        b"-,nan,NULL,2024-02-02\n5,2.5,b,2024-02-03\n"
    )
    table = read_table(data, "t.csv")
    assert table.column("n").to_pylist() == [1, None, 3, None, 5]
    assert pa.types.is_integer(table.schema.field("n").type)
    assert table.column("x").to_pylist() == [1.5, None, None, None, 2.5]
    assert table.column("s").to_pylist() == ["a", None, None, None, "b"]
    # dates become timestamps so pandas sees datetime64, not Python date objects
    assert pa.types.is_timestamp(table.schema.field("d").type)
    assert str(table.to_pandas()["d"].dtype).startswith("datetime64")


def test_negative_numbers_are_not_the_dash_null_token() -> None:
    table = read_table(b"a,b\n-1,-\n-2.5,3\n", "t.csv")
    assert table.column("a").to_pylist() == [-1.0, -2.5]
    assert table.column("b").to_pylist() == [None, 3]


def test_utf8_bom_is_stripped() -> None:
    data = "\ufeffcity,n\nZürich,1\nGenève,2\n".encode()
    result = read_upload(data, "cities.csv")
    assert result.encoding == "utf-8-sig"
    assert result.table.column_names == ["city", "n"]
    assert result.table.column("city").to_pylist() == ["Zürich", "Genève"]


def test_latin1_falls_back_and_says_so() -> None:
    data = "city;n\nZürich;1\nGenève;2\n".encode("latin-1")
    result = read_upload(data, "cities.csv")
    assert result.encoding in ("cp1252", "latin-1")
    assert result.table.column("city").to_pylist() == ["Zürich", "Genève"]
    assert any("not UTF-8" in note for note in result.notes)


def test_invalid_utf8_after_the_sample_is_transcoded() -> None:
    data = b"city,n\n" + b"Paris,1\n" * 40_000 + "Zürich,2\n".encode("latin-1")
    result = read_upload(data, "cities.csv")
    assert result.encoding == "cp1252"
    assert result.table.column("city")[-1].as_py() == "Zürich"
    assert result.table.num_rows == 40_001


def test_bytes_undefined_in_cp1252_fall_back_to_latin1() -> None:
    data = "a;b\n1;Zürich\n".encode("latin-1") + b"2;x\x81y\n"
    result = read_upload(data, "t.csv")
    assert result.encoding == "latin-1"
    assert result.table.column("b").to_pylist() == ["Zürich", "x\x81y"]


def test_broken_utf16() -> None:
    with pytest.raises(BadInputError, match="not valid UTF-16"):
        read_table(b"\xff\xfea\x00,\x00b\x00\n\x00x", "t.csv")


def test_utf16_is_transcoded() -> None:
    result = read_upload("a\tb\n1\tZürich\n".encode("utf-16"), "excel.txt")
    assert (result.encoding, result.delimiter) == ("utf-16", "\t")
    assert result.table.to_pylist() == [{"a": 1, "b": "Zürich"}]


def test_decimal_commas_with_semicolons() -> None:
    result = read_upload(b"a;b\n1,5;x\n2,25;y\n", "eu.csv")
    assert result.table.column("a").to_pylist() == [1.5, 2.25]
    assert any("decimal comma" in note for note in result.notes)


def test_gzip_is_detected_by_content_not_name() -> None:
    result = read_upload(gzip.compress(CSV), "weather.csv")
    assert result.compression == "gzip"
    assert result.table.num_rows == 3
    assert read_table(gzip.compress(CSV), "weather.csv.gz").equals(result.table)


def test_parquet_plain_and_gzipped() -> None:
    table = pa.table({"a": [1, 2], "b": ["x", "y"]})
    result = read_upload(parquet_bytes(table), "t.parquet")
    assert result.format == "parquet"
    assert result.table.equals(table)
    assert read_table(gzip.compress(parquet_bytes(table)), "t.bin").equals(table)


def test_trailing_delimiter_column_is_dropped() -> None:
    result = read_upload(b"a,b,\n1,2,\n3,4,\n", "t.csv")
    assert result.table.column_names == ["a", "b"]
    assert any("unnamed empty column" in note for note in result.notes)


def test_spaces_around_names_are_stripped() -> None:
    assert read_table(b" a , b\n1,2\n", "t.csv").column_names == ["a", "b"]


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (b"", "t.csv", "t.csv: the file is empty"),
        (gzip.compress(b""), "t.csv.gz", "the file is empty (after gzip decompression)"),
        (b"a,b,c\n", "t.csv", "t.csv: the file has a header but no data rows"),
        (b"a,b,c\r\n\r\n", "t.csv", "has a header but no data rows"),
        (b"\x00\x01\x02\x03garbage\xff\xfe" * 50, "t.csv", "not a CSV, gzip or Parquet file"),
        (b"PK\x03\x04" + b"\x00" * 40, "book.xlsx", "ZIP archive (an Excel .xlsx"),
        (b"%PDF-1.7\n...", "t.csv", "not a CSV, gzip or Parquet file: it is a PDF"),
        (b"a,b,a,c\n1,2,3,4\n", "t.csv", "duplicate column names: 'a'"),
        (b" a,b,a\n1,2,3\n", "t.csv", "duplicate column names: ' a' and 'a', both 'a' once"),
        (b"a,,c\n1,2,3\n", "t.csv", "column(s) 2 have no name"),
        (b"1,2,3\n4,5,6\n", "t.csv", "the first line looks like data, not a header"),
        (b"\x1f\x8b\x08\x00corrupt", "t.csv.gz", "the gzip data is corrupt or truncated"),
        (gzip.compress(CSV)[:-12], "t.csv.gz", "the gzip data is corrupt or truncated"),
        (b"a,b\n1,2\n", "t.parquet", "not a Parquet file"),
        (b'a,b\n1,"never closed\n2,3\n', "t.csv", "is never closed"),
    ],
)
def test_bad_inputs_name_the_problem(data: bytes, filename: str, message: str) -> None:
    with pytest.raises(BadInputError) as caught:
        read_table(data, filename)
    assert message in str(caught.value)


def test_ragged_row_names_its_line() -> None:
    data = b"a,b,c,d\n" + b"1,2,3,4\n" * 55 + b"1,2,3,4,5\n" + b"1,2,3,4\n" * 3
    with pytest.raises(BadInputError) as caught:
        read_table(data, "t.csv")
    assert str(caught.value) == "t.csv: line 57 has 5 fields, the header has 4: '1,2,3,4,5'"


def test_ragged_row_deep_in_a_big_file_names_its_line() -> None:
    # big enough to be parsed in parallel blocks, where pyarrow does not know row numbers
    data = b"a,b,c\n" + b"1,2,3\n" * 300_000 + b"4,5\n"
    with pytest.raises(BadInputError, match=r"line 300002 has 2 fields, the header has 3"):
        read_table(data, "t.csv")


def test_corrupt_parquet() -> None:
    data = parquet_bytes(pa.table({"a": list(range(100))}))
    with pytest.raises(BadInputError, match=r"t.parquet: the Parquet file is corrupt"):
        read_table(data[: len(data) // 2], "t.parquet")


def test_empty_parquet() -> None:
    data = parquet_bytes(pa.table({"a": pa.array([], pa.int64())}))
    with pytest.raises(BadInputError, match="the Parquet file has columns but no rows"):
        read_table(data, "t.parquet")


def test_duplicate_parquet_columns() -> None:
    table = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["x", "x"])
    with pytest.raises(BadInputError, match="duplicate column names: 'x'"):
        read_table(parquet_bytes(table), "t.parquet")


def test_dictionary_encoding_keeps_the_values() -> None:
    data = b"city,n,code\n" + b"Paris,1,A1\nRome,2,B2\n,3,C3\nParis,4,D4\n" * 20
    plain = read_table(data, "t.csv")
    encoded = read_table(data, "t.csv", dictionary_encode=True)
    assert pa.types.is_dictionary(encoded.schema.field("city").type)
    assert encoded.column("city").to_pylist() == plain.column("city").to_pylist()
    assert encoded.column("n").equals(plain.column("n"))


def test_dictionary_encoding_still_detects_invalid_utf8() -> None:
    data = b"city,n\n" + b"Paris,1\n" * 40_000 + "Zürich,2\n".encode("latin-1")
    result = read_upload(data, "cities.csv", dictionary_encode=True)
    assert result.encoding == "cp1252"
    assert result.table.column("city")[-1].as_py() == "Zürich"
