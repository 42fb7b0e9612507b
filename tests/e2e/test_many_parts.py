"""Many-part datasets end to end: `mlcycle run FOLDER` uploads the folder's files as the parts of
one dataset and then the `_SUCCESS` marker; one run collects and processes the parts in the
synthesized Distributed Map, merges them, and trains on a stratified sample past the budget."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from mlcycle.cli import main
from mlcycle.samples import customer_churn

pytestmark = pytest.mark.slow

SPEC = {
    "target": "churned",
    "task": "binary",
    "positive_class": "yes",
    "candidates": ["linear"],
    "search": {"trials": 1},
    "training": {"max_rows": 3_000},
    "release": {"bake_seconds": 1, "max_waits": 1},
}


PARTS = 20


def _parts(folder: Path) -> pd.DataFrame:
    """Twenty parts as an export would write them (CSV, gzip CSV, Parquet), plus Spark's
    metadata files, which are not data; one part has rows without a target."""
    folder.mkdir()
    frame = customer_churn(6_000, seed=11)
    pieces = [frame.iloc[i * 300 : (i + 1) * 300].copy() for i in range(PARTS)]
    pieces[1].loc[pieces[1].index[:7], "churned"] = None  # 7 rows go to quarantine
    for part, piece in enumerate(pieces):
        name = folder / f"part-{part:05d}"
        if part == 2:
            name.with_suffix(".csv.gz").write_bytes(
                gzip.compress(piece.to_csv(index=False).encode())
            )
        elif part == 3:
            piece.to_parquet(name.with_suffix(".parquet"), index=False)
        else:
            piece.to_csv(name.with_suffix(".csv"), index=False)
    (folder / "_committed_1234").write_text("{}")
    (folder / ".part-00000.csv.crc").write_bytes(b"\x00")
    return frame


def _only(paths: list[Path]) -> Path:
    (path,) = paths
    return path


def test_a_folder_of_parts_runs_once_and_trains_on_a_stratified_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "churn-parts"
    _parts(folder)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "out"
    code = main(["run", str(folder), "--spec", str(spec), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    outcome = json.loads((out / "run.json").read_text())
    assert outcome["status"] == "SUCCEEDED"
    assert [s["name"] for s in outcome["stages"]][:5] == [
        "define_problem",
        "plan_parts",
        "collect_part+process_part",
        "merge_parts",
        "define_metrics",
    ]
    lake = out / "lake"
    runs = lake / "runs" / "dataset=churn-parts"
    (run,) = runs.iterdir()  # twenty parts, metadata and a marker started one run

    # each part was collected unchanged and curated on its own
    raw = sorted(
        p.name for p in _only(list((lake / "raw/dataset=churn-parts").iterdir())).glob("*/*")
    )
    assert raw == sorted(
        f"part-{part:05d}" + {2: ".csv.gz", 3: ".parquet"}.get(part, ".csv") for part in range(20)
    )
    curated_dir = _only(list((lake / "curated/dataset=churn-parts").glob("dt=*/run=*")))
    curated = [pq.read_table(p).to_pandas() for p in sorted(curated_dir.glob("part-*.parquet"))]
    assert [len(c) for c in curated] == [300, 293] + [300] * 18
    processing = json.loads((run / "processing.json").read_text())
    assert (processing["rows"], processing["rejected_rows"], processing["parts"]) == (5_993, 7, 20)
    rejected = pq.read_table(
        lake / f"quarantine/dataset=churn-parts/{run.name}/rejected_rows-part-00001.parquet"
    ).to_pandas()
    assert len(rejected) == 7
    assert set(rejected["_reject_reason"]) == {"target 'churned' is missing"}
    lineage = json.loads((run / "lineage.json").read_text())
    assert [p["key"].rsplit("/", 1)[1] for p in lineage["parts"]] == raw
    assert lineage["rows"] == 6_000

    # the profile merges the parts' profiles: exact counts, the whole dataset's classes
    profile = json.loads(
        _only(list(lake.glob("reports/dataset=churn-parts/*/profile.json"))).read_text()
    )
    assert profile["n_rows"] == 5_993
    assert profile["parts"] == 20
    kept = pd.concat(curated, ignore_index=True)
    counts = {c["label"]: c["count"] for c in profile["target"]["classes"]}
    assert counts == kept["churned"].value_counts().to_dict()
    charges = next(c for c in profile["columns"] if c["name"] == "monthly_charges")
    assert charges["stats"]["min"] == pytest.approx(kept["monthly_charges"].min())
    assert charges["stats"]["mean"] == pytest.approx(kept["monthly_charges"].mean())

    # past `training.max_rows` the model learned from a seeded stratified sample, and says so
    evaluation = json.loads(
        _only(list(lake.glob("runs/dataset=churn-parts/*/evaluation.json"))).read_text()
    )
    sample = evaluation["sample"]
    assert sample["sampled"] is True
    assert (sample["rows_available"], sample["rows_used"], sample["parts"]) == (5_993, 3_000, 20)
    assert sample["stratified_by"] == "churned"
    assert evaluation["train_rows"] + evaluation["holdout_rows"] == 3_000
    share = kept["churned"].eq("yes").mean()
    train = pq.read_table(
        _only(list(lake.glob("features/dataset=churn-parts/*/train_rows.parquet")))
    ).to_pandas()
    assert train["churned"].eq("yes").mean() == pytest.approx(share, abs=0.01)
    assert not train.duplicated().any()  # drawn without replacement...
    # (feature engineering keeps numbers as float32: compare at the data's two decimals)
    numbers = [c for c in train.columns if pd.api.types.is_float_dtype(train[c])]
    found = train.round(dict.fromkeys(numbers, 2)).merge(
        kept.round(dict.fromkeys(numbers, 2)).drop_duplicates(), how="left", indicator=True
    )
    assert (found["_merge"] == "both").all()  # ...from the curated rows
    sentence = (
        "seeded sample (seed 42, stratified by churned) of 3,000 of the 5,993 curated rows "
        "in 20 parts"
    )
    report = _only(list(lake.glob("reports/dataset=churn-parts/*/evaluation.html"))).read_text()
    card = _only(list(lake.glob("reports/dataset=churn-parts/*/model_card.html"))).read_text()
    assert sentence in report
    assert sentence in card


def test_a_broken_part_fails_the_run_naming_it_and_every_part_is_kept(tmp_path: Path) -> None:
    folder = tmp_path / "churn-parts"
    _parts(folder)
    (folder / "part-00002.csv.gz").write_bytes(gzip.compress(b"plan,region\nbasic,north\n"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "out"
    assert main(["run", str(folder), "--spec", str(spec), "--out", str(out)]) == 1
    outcome = json.loads((out / "run.json").read_text())
    assert outcome["status"] == "FAILED"
    error = outcome["error"]
    assert error["stage"] == "process_part"
    assert "part landing/churn-parts/" in error["message"]
    assert "part-00002.csv.gz" in error["message"]
    assert "churned" in error["message"]
    quarantine = _only(list((out / "lake/quarantine/dataset=churn-parts").iterdir()))
    kept = sorted(p.name for p in quarantine.iterdir())
    assert {"_SUCCESS", "error.json", "part-00002.csv.gz", "part-00003.parquet"} <= set(kept)
