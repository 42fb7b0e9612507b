"""The bad-uploads corpus through the real pipeline (synthesized state machine under moto).

Each upload either succeeds, as a user would expect (other encodings and delimiters, gzip,
Parquet, a few bad rows quarantined, an empty column left out), or ends FAILED with a message
naming the problem and the column or line; a failed upload is kept byte for byte in
quarantine and its failure recorded in run.json and the registry's run record.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlcycle.cli import main
from mlcycle.samples import customer_churn
from tests.reliability.conftest import Run

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
RunUpload = Callable[..., Run]


def _assert_failed(run: Run, stage: str, message: str) -> None:
    """FAILED at `stage` with exactly `message`, recorded everywhere, the upload kept."""
    outcome = run.outcome
    assert outcome.status == "FAILED"
    assert outcome.error == {"stage": stage, "type": "BadInputError", "message": message}
    assert run.run_json["status"] == "FAILED"
    assert run.run_json["error"] == outcome.error
    statuses = {s["name"]: s["status"] for s in run.run_json["stages"]}
    assert statuses[stage] == "FAILED"
    assert statuses["train_model"] == "NOT_RUN"
    record = run.run_record()
    assert record["status"] == "FAILED"
    assert record["error"] == outcome.error
    quarantine = run.zone("quarantine")
    kept = quarantine / run.upload.name
    assert kept.read_bytes() == run.upload.read_bytes()
    assert record["quarantine_uri"].endswith(kept.relative_to(run.out / "lake").as_posix())
    assert json.loads((quarantine / "error.json").read_text())["message"] == message
    assert not (run.out / "lake" / "models").exists()  # nothing was trained from it


def _assert_succeeded(run: Run) -> None:
    assert run.outcome.status == "SUCCEEDED", run.outcome.error
    assert run.run_record()["status"] == "SUCCEEDED"
    assert run.outcome.model_version == 1
    raw = next(run.zone("raw").iterdir())
    assert raw.read_bytes() == run.upload.read_bytes()  # raw keeps the upload as it came


# --- uploads that fail, each naming the problem ---------------------------------------------


def test_an_empty_file(run_upload: RunUpload) -> None:
    run = run_upload(CORPUS / "empty.csv")
    _assert_failed(run, "collect_data", "empty.csv: the file is empty")


def test_a_header_without_rows(run_upload: RunUpload) -> None:
    run = run_upload(CORPUS / "header-only.csv")
    _assert_failed(run, "collect_data", "header-only.csv: the file has a header but no data rows")


def test_a_missing_target_column_is_named_with_a_suggestion(run_upload: RunUpload) -> None:
    run = run_upload(CORPUS / "missing-target.csv")
    message = run.outcome.error["message"]
    assert message.startswith(
        "the target column 'churned' (did you mean 'churn'?) is not in the data; "
        "the columns are: customer_id, signup_date, plan,"
    )
    _assert_failed(run, "process_data", message)


def test_ragged_rows_name_the_line_and_field_counts(
    run_upload: RunUpload, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_upload(CORPUS / "ragged-rows.csv")
    line = (CORPUS / "ragged-rows.csv").read_text().splitlines()[4]
    assert len(line) > 80  # shown cut short
    message = f"ragged-rows.csv: line 5 has 15 fields, the header has 13: {line[:77] + '...'!r}"
    _assert_failed(run, "collect_data", message)

    # The CLI: exit 1, one line naming stage, error and cause, no traceback.
    out = run.out.parent / "cli"
    code = main(
        ["run", str(run.upload), "--spec", str(run.out.parent / "spec.yaml"), "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 1
    failed = [line for line in printed.splitlines() if "FAILED at" in line]
    assert failed == [f"FAILED at collect_data: BadInputError: {message}"]
    assert "Traceback" not in printed


def test_binary_garbage(run_upload: RunUpload) -> None:
    garbage = bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))
    run = run_upload(garbage, name="garbage.csv")
    _assert_failed(
        run,
        "collect_data",
        f"garbage.csv: not a CSV, gzip or Parquet file: it holds binary data "
        f"(first bytes {garbage[:8]!r})",
    )


def test_a_single_class_target(run_upload: RunUpload) -> None:
    run = run_upload(CORPUS / "single-class.csv")
    _assert_failed(
        run, "process_data", "the target 'churned' has a single class 'no': nothing to learn"
    )


def test_two_rows(run_upload: RunUpload, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_upload(CORPUS / "two-rows.csv")
    message = "only 2 usable rows; at least 10 are needed to train and evaluate"
    _assert_failed(run, "process_data", message)

    code = main(["run", str(run.upload), "--target", "churned", "--out", str(run.out.parent / "c")])
    printed = capsys.readouterr().out
    assert code == 1
    assert f"FAILED at process_data: BadInputError: {message}\n" in printed
    assert "Traceback" not in printed


def test_duplicate_column_names(run_upload: RunUpload) -> None:
    run = run_upload(CORPUS / "duplicate-columns.csv")
    _assert_failed(run, "collect_data", "duplicate-columns.csv: duplicate column names: 'plan'")


# --- uploads that succeed, with what was done recorded -----------------------------------------


def test_latin_1_is_decoded_and_says_so(run_upload: RunUpload) -> None:
    run = run_upload(CORPUS / "latin-1.csv")
    _assert_succeeded(run)
    lineage = run.runs_json("lineage.json")
    # Latin-1's letters are the same bytes in cp1252, its superset, which is tried first.
    assert lineage["encoding"] == "cp1252"
    assert lineage["notes"] == ["the file is not UTF-8; decoded it as cp1252"]
    assert set(run.curated()["region"]) == {"nörd", "süd", "öst", "west", "zentral"}


def test_words_in_a_numeric_column_become_missing_with_a_note(run_upload: RunUpload) -> None:
    run = run_upload(CORPUS / "numeric-words.csv")
    _assert_succeeded(run)
    assert run.runs_json("schema.json")["features"]["monthly_charges"] == "numeric"
    notes = run.context["process"]["notes"]
    assert notes == ["'monthly_charges': 3 value(s) could not be read as numbers and became empty"]
    curated = run.curated()
    assert curated["monthly_charges"].isna().sum() == 3
    assert len(curated) == 150  # the rows stay; only the unreadable values are gone


def test_a_semicolon_export_with_decimal_commas(run_upload: RunUpload) -> None:
    run = run_upload(CORPUS / "semicolon.csv")
    _assert_succeeded(run)
    lineage = run.runs_json("lineage.json")
    assert lineage["delimiter"] == ";"
    assert lineage["notes"] == ["numbers use a decimal comma (e.g. 3,14); read them as numbers"]
    expected = customer_churn(150, seed=5)["monthly_charges"].to_numpy()
    assert run.curated()["monthly_charges"].to_numpy() == pytest.approx(expected)


def test_gzip_compressed_csv(run_upload: RunUpload) -> None:
    data = gzip.compress(customer_churn(150, seed=5).to_csv(index=False).encode(), mtime=0)
    run = run_upload(data, name="gzipped.csv.gz")
    _assert_succeeded(run)
    lineage = run.runs_json("lineage.json")
    assert (lineage["format"], lineage["compression"], lineage["rows"]) == ("csv", "gzip", 150)


def test_parquet(run_upload: RunUpload) -> None:
    buffer = io.BytesIO()
    customer_churn(150, seed=5).to_parquet(buffer, index=False)
    run = run_upload(buffer.getvalue(), name="columnar.parquet")
    _assert_succeeded(run)
    lineage = run.runs_json("lineage.json")
    assert (lineage["format"], lineage["encoding"], lineage["rows"]) == ("parquet", None, 150)


def test_rows_without_a_target_are_quarantined(run_upload: RunUpload) -> None:
    run = run_upload(CORPUS / "target-missing-values.csv")
    _assert_succeeded(run)
    rejected = pd.read_parquet(run.zone("quarantine") / "rejected_rows.parquet")
    assert rejected["customer_id"].tolist() == ["C000003", "C000005", "C000010"]
    assert set(rejected["_reject_reason"]) == {"target 'churned' is missing"}
    assert run.context["process"]["notes"] == [
        "moved 3 row(s) to quarantine: target 'churned' is missing (3)"
    ]
    assert run.context["process"]["rejected_rows"] == 3
    assert len(run.curated()) == 147


def test_an_entirely_empty_column_is_left_out_with_the_reason(run_upload: RunUpload) -> None:
    run = run_upload(CORPUS / "empty-column.csv")
    _assert_succeeded(run)
    schema = run.runs_json("schema.json")
    assert schema["excluded"]["notes"] == "empty: no values"
    assert "notes" not in schema["features"]
    registered = next(i for i in run.registry() if i.get("sk") == "VERSION#000001")
    assert "notes" not in registered["features"]


def test_the_corpus_files_are_small() -> None:
    sizes: dict[str, Any] = {p.name: p.stat().st_size for p in CORPUS.glob("*.csv")}
    assert len(sizes) == 14  # the bad uploads, and two tables of awkward column names
    assert max(sizes.values()) < 40_000
