"""Running one upload through the real pipeline (`run_local`), keeping what a test inspects."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlcycle.local import runner
from mlcycle.local.runner import RunOutcome
from tests.integration.conftest import aws, lake, registry  # noqa: F401 - moto fixtures

# Small and quick: one linear candidate, a short canary if a release needs one.
QUICK_SPEC = "target: churned\ncandidates: [linear]\nrelease: {bake_seconds: 1, max_waits: 1}\n"


@dataclass
class Run:
    """A finished local run and the lake it left in `out`."""

    outcome: RunOutcome
    out: Path
    upload: Path
    context: dict[str, Any] = field(default_factory=dict)  # the execution's final output

    @property
    def run_json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads((self.out / "run.json").read_text())
        return document

    def registry(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads((self.out / "registry.json").read_text())
        return items

    def run_record(self) -> dict[str, Any]:
        return next(
            item
            for item in self.registry()
            if item["pk"] == f"RUN#{self.outcome.dataset}" and item["sk"] == self.outcome.run_id
        )

    def zone(self, zone: str) -> Path:
        """The run's folder in a lake zone."""
        (found,) = (self.out / "lake" / zone).glob(f"dataset=*/**/run={self.outcome.run_id}")
        return found

    def runs_json(self, name: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads((self.zone("runs") / name).read_text())
        return document

    def curated(self) -> pd.DataFrame:
        (part,) = self.zone("curated").glob("*.parquet")
        return pd.read_parquet(part)


@pytest.fixture
def run_upload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`run_upload(path_or_bytes, name=..., spec=...)`: the upload through `run_local`, with
    the execution's final output (the run context, whose notes no file keeps) captured."""
    captured: dict[str, Any] = {}
    follow = runner.follow_execution

    def spy(deployment: Any, session: Any, arn: str, *args: Any, **kwargs: Any) -> RunOutcome:
        outcome = follow(deployment, session, arn, *args, **kwargs)
        output = session.client("stepfunctions").describe_execution(executionArn=arn)
        captured["context"] = json.loads(output.get("output") or "{}")
        return outcome

    monkeypatch.setattr(runner, "follow_execution", spy)

    def run(source: Path | bytes, *, name: str | None = None, spec: str = QUICK_SPEC) -> Run:
        if isinstance(source, bytes):
            assert name, "name the upload"
            upload = tmp_path / name
            upload.write_bytes(source)
        else:
            upload = tmp_path / (name or source.name)
            upload.write_bytes(source.read_bytes())
        spec_file = tmp_path / "spec.yaml"
        spec_file.write_text(spec)
        out = tmp_path / "out"
        outcome = runner.run_local(upload, spec_file=spec_file, out_dir=out)
        return Run(outcome, out, upload, captured.pop("context", {}))

    return run
