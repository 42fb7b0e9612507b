"""Many-part processing: N parts processed at once (the Distributed Map) against one invocation
processing all of them in sequence, and the merge and the sample that follow.

    python bench/parts.py [--parts 20] [--rows 1000000] [--concurrency CPUS] [--threads N]
                          [--workdir DIR]

Each part's work is exactly what its two child invocations do (`mlcycle.parts.collect_part`
and `process_part`, minus S3): read and check the upload, hash it, read it again dictionary-
encoded, clean it to the plan's schema, write zstd Parquet, read it back, count rows per
class and compute the part's mergeable profile. A part runs in a fresh process (one Lambda
invocation), `--concurrency` at once (the Map's concurrency on this machine's cores); the
baseline is one process doing every part in sequence, measured in the same run. Peak memory
is the process's VmHWM (imports count, as they do against a function's memory).

On Lambda each invocation has its own vCPUs; here the parts share this machine's, and one
part's processing already uses two threads (pyarrow's reader, `process.THREADS`). `--threads 1`
limits every process to one, so the Map's speed-up per core shows on a small machine.

Then, in fresh processes: the merge of the parts' profiles (`explore_data` of a many-part run)
and the stratified sample feature engineering draws at the default row budget of a 10,240 MB
function, one part at a time.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

SPEC = {"dataset": "customer-churn", "target": "churned", "task": "binary", "positive_class": "yes"}
FUNCTION_MB = 10_240


def _peak_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _generate(work: Path, parts: int, rows: int) -> list[Path]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from mlcycle.samples import customer_churn

    paths = []
    for part in range(parts):
        path = work / f"part-{part:05d}.csv"
        if not path.exists():
            table = pa.Table.from_pandas(customer_churn(rows, seed=part), preserve_index=False)
            pacsv.write_csv(table, path)
        paths.append(path)
    return paths


def _plan(work: Path, paths: list[Path]) -> Path:
    """The plan's schema: resolved once on the heads of up to 8 parts (`plan_parts`)."""
    import pyarrow as pa

    from mlcycle.domain import process, tables
    from mlcycle.spec import ProblemSpec

    heads = [tables.read_upload(p.read_bytes(), p.name).table.slice(0, 25_000) for p in paths[:8]]
    schema = process.resolve_schema(pa.concat_tables(heads), ProblemSpec.model_validate(SPEC))
    out = work / "schema.json"
    out.write_text(schema.model_dump_json())
    return out


def _process_part(path: Path, schema_path: Path, out: Path) -> dict[str, Any]:
    """One part's collect_part + process_part, minus S3."""
    import pyarrow.parquet as pq

    from mlcycle.domain import process, profile_parts, sampling, tables
    from mlcycle.schema import ResolvedSchema
    from mlcycle.spec import ProblemSpec

    spec = ProblemSpec.model_validate(SPEC)
    schema = ResolvedSchema.model_validate_json(schema_path.read_text())
    data = path.read_bytes()
    read = tables.read_upload(data, path.name)  # collect: read and check
    hashlib.sha256(data).hexdigest()
    del read
    table = tables.read_table(data, path.name, dictionary_encode=True)
    curated = process.curate(table, spec, schema=schema, min_rows=1)
    parquet = process.parquet_bytes(curated.curated)
    (out / f"{path.stem}.parquet").write_bytes(parquet)
    frame = pq.read_table(io.BytesIO(parquet)).to_pandas()
    document = {
        "rows": len(frame),
        "strata": sampling.strata(frame, schema.target, stratified=True),
        "profile": profile_parts.partial_profile(frame, schema),
    }
    (out / f"{path.stem}.json").write_text(json.dumps(document))
    return {"rows": len(frame)}


def _merge(schema_path: Path, out: Path) -> dict[str, Any]:
    from mlcycle.domain import profile_parts
    from mlcycle.schema import ResolvedSchema

    schema = ResolvedSchema.model_validate_json(schema_path.read_text())
    docs = [json.loads(p.read_text()) for p in sorted(out.glob("part-*.json"))]
    profile = profile_parts.merge_profiles([d["profile"] for d in docs], schema)
    return {"rows": profile["n_rows"], "parts": profile.get("parts")}


def _sample(schema_path: Path, out: Path) -> dict[str, Any]:
    """What engineer_features reads of a many-part run at the default budget."""
    import pandas as pd
    import pyarrow.parquet as pq

    from mlcycle.domain import sampling
    from mlcycle.schema import ResolvedSchema

    schema = ResolvedSchema.model_validate_json(schema_path.read_text())
    docs = [json.loads(p.read_text()) for p in sorted(out.glob("part-*.json"))]
    budget = sampling.row_budget(FUNCTION_MB, len(schema.features) + 1)
    plan = sampling.plan_sample([d["strata"] for d in docs], budget, stratified=True)
    frames = [
        sampling.take(
            pq.read_table(io.BytesIO(path.read_bytes())).to_pandas(),
            schema.target,
            quota,
            seed=42,
            part=part,
            stratified=True,
        )
        for part, (path, quota) in enumerate(
            zip(sorted(out.glob("part-*.parquet")), plan.quotas, strict=True)
        )
    ]
    rows = len(pd.concat(frames, ignore_index=True))
    return {"rows": rows, "budget": budget, "available": plan.available}


def child(task: str, args: list[str]) -> None:
    threads = int(os.environ.get("BENCH_THREADS") or 0)
    if threads:
        import pyarrow as pa

        from mlcycle.domain import process

        pa.set_cpu_count(threads)
        process.THREADS = threads
    start = time.perf_counter()
    if task == "part":
        result = _process_part(Path(args[0]), Path(args[1]), Path(args[2]))
    elif task == "sequence":
        schema, out = Path(args[0]), Path(args[1])
        for path in args[2:]:
            _process_part(Path(path), schema, out)
        result = {"parts": len(args) - 2}
    elif task == "merge":
        result = _merge(Path(args[0]), Path(args[1]))
    else:
        result = _sample(Path(args[0]), Path(args[1]))
    result.update(seconds=time.perf_counter() - start, peak_mb=_peak_mb())
    print(json.dumps(result))


def _spawn(task: str, *args: Path | str, threads: int = 0) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", task, *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_THREADS": str(threads)},
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=int, default=20)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=0, help="per process (default: all)")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mlcycle-parts-"))
    work.mkdir(parents=True, exist_ok=True)
    threads = f"{args.threads} thread(s)" if args.threads else "all threads"
    print(f"{args.parts} parts of {args.rows:,} rows in {work}; {os.cpu_count()} CPUs, {threads}")
    paths = _generate(work, args.parts, args.rows)
    schema = _plan(work, paths)
    parallel_out, sequence_out = work / "map", work / "sequence"
    parallel_out.mkdir(exist_ok=True)
    sequence_out.mkdir(exist_ok=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        parts = list(
            pool.map(lambda p: _spawn("part", p, schema, parallel_out, threads=args.threads), paths)
        )
    parallel = time.perf_counter() - start
    start = time.perf_counter()
    sequence = _spawn("sequence", schema, sequence_out, *paths, threads=args.threads)
    in_sequence = time.perf_counter() - start

    seconds = [p["seconds"] for p in parts]
    peaks = [p["peak_mb"] for p in parts]
    print(
        f"per part ({args.rows:,} rows): median {statistics.median(seconds):.1f} s "
        f"(max {max(seconds):.1f}), peak {statistics.median(peaks):,.0f} MB (max {max(peaks):,.0f})"
    )
    print(f"Map, {args.concurrency} at once: {parallel:.1f} s wall")
    print(
        f"one invocation, in sequence: {in_sequence:.1f} s wall, peak {sequence['peak_mb']:,.0f} MB"
    )
    print(f"speed-up: {in_sequence / parallel:.2f}x")
    merged = _spawn("merge", schema, parallel_out)
    print(f"merge of {args.parts} profiles: {merged['seconds']:.2f} s, {merged['peak_mb']:,.0f} MB")
    sampled = _spawn("sample", schema, parallel_out)
    print(
        f"stratified sample at the {FUNCTION_MB:,} MB budget ({sampled['budget']:,} of "
        f"{sampled['available']:,} rows): {sampled['seconds']:.1f} s, {sampled['peak_mb']:,.0f} MB"
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3:])
    else:
        main()
