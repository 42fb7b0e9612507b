"""Stage 5 for a dataset in many part files: a small partial profile per part, merged into
the profile that `explore.profile` gives on all the rows, so no step reads every part.

Counts, extremes, moments (Chan's and Pébay's parallel formulas), class balance, timelines
and the associations merge exactly. Quantiles and histograms come from KLL sketches, and
distinct counts from HLL sketches (Apache DataSketches) once a part holds more values than
it lists; the merged profile's "approximate" note says which numbers are estimates.
"""

from __future__ import annotations

import base64
import math
from functools import reduce
from typing import Any

import numpy as np
import pandas as pd
from datasketches import hll_sketch, hll_union, kll_doubles_sketch, tgt_hll_type

from mlcycle.domain import explore as ex
from mlcycle.errors import BadInputError
from mlcycle.schema import ResolvedSchema
from mlcycle.spec import ColumnType

Json = dict[str, Any]
FORMAT, VERSION = "mlcycle.partial_profile", 1
CATEGORY_CAP = 1000  # categories a part lists with exact counts; the rest count as "other"
VALUE_CAP = 100  # numeric and datetime values a part lists: exact distinct and top share
KLL_K = 200  # DataSketches' default: rank error 1.33% (quantiles), 1.65% (a bin's share)
HLL_LG_K = 12  # 4,096 buckets: 3.2% relative error (unions, two standard deviations)

NUM, CAT = ColumnType.NUMERIC, ColumnType.CATEGORICAL


# --------------------------------------------------------------------------- partial


def partial_profile(df: pd.DataFrame, schema: ResolvedSchema) -> Json:
    """The mergeable summary of one part: plain JSON, sketches as base64, bounded in size."""
    missing = [c for c in [*schema.features, schema.target] if c not in df.columns]
    if missing:
        raise BadInputError(f"the part lacks the schema's columns: {missing}")
    target = df[schema.target]
    y_codes: np.ndarray | None = None
    y_num: np.ndarray | None = None
    n_labels = 0
    out: Json = {"format": FORMAT, "version": VERSION, "n_rows": len(df)}
    if schema.is_classification:
        codes, uniques = pd.factorize(target.astype("string"), use_na_sentinel=True)
        y_codes = np.asarray(codes, dtype=np.int64)
        n_labels = len(uniques)
        counts = np.bincount(y_codes[y_codes >= 0], minlength=n_labels)
        out["classes"] = {"labels": [str(v) for v in uniques], "counts": counts.tolist()}
    else:
        y_num = ex._as_float(target)

    columns = []
    for name, kind in schema.features.items():
        col, x, keep = _part_column(df[name], name, kind)
        col["association"] = _part_association(kind, x, keep, y_codes, n_labels, y_num)
        columns.append(col)
    columns.append(_part_column(target, schema.target, CAT if y_codes is not None else NUM)[0])
    out["columns"] = columns
    return out


def _part_column(s: pd.Series, name: str, kind: ColumnType) -> tuple[Json, np.ndarray, Any]:
    """A column's partial, the array its association uses (as in `explore`) and, for a
    categorical one, the codes of the categories it lists."""
    n = len(s)
    col: Json = {"name": name, "type": kind.value, "n": n}
    if kind is NUM:
        x = ex._as_float(s)
        finite = np.sort(x[np.isfinite(x)])
        col["missing"] = int(np.isnan(x).sum())
        col["infinite"] = n - col["missing"] - int(finite.size)
        col["values"], _ = _values(*_runs(finite), VALUE_CAP)
        col["moments"] = _moments(finite, third=True)
        col["min"], col["max"] = (
            (float(finite[0]), float(finite[-1])) if finite.size else (None,) * 2
        )
        col["zeros"] = int(np.count_nonzero(finite == 0))
        col["kll"] = None
        if finite.size:
            sketch = kll_doubles_sketch(KLL_K)
            sketch.update(finite)  # vectorised: ~35 ms per 1M values
            col["kll"] = _b64(sketch.serialize())
        return col, x, None
    if kind is CAT:
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        x = np.asarray(codes, dtype=np.int64)
        col["missing"] = int((x < 0).sum())
        counts = np.bincount(x[x >= 0], minlength=len(uniques))
        keys = uniques.tolist()  # iterating a pandas Index instead is 10x slower
        if not pd.api.types.is_string_dtype(uniques):  # object arrays: inferred
            keys = [str(u) for u in keys]
        col["values"], keep = _values(keys, counts, CATEGORY_CAP)
        return col, x, keep
    stamps = ex._as_datetime(s)
    valid = ~np.isnat(stamps)
    seconds = stamps[valid].astype("datetime64[s]").astype(np.int64)
    x = np.full(n, np.nan)
    x[valid] = seconds
    col["missing"] = n - int(seconds.size)
    col["values"], _ = _values(*_runs(np.sort(seconds)), VALUE_CAP)
    col.update(_part_timeline(stamps[valid]))
    return col, x, None


def _runs(ordered: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """The distinct values of a sorted array (as python values) and how often each occurs."""
    if ordered.size == 0:
        return [], np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    runs = np.diff(starts, prepend=0, append=ordered.size)
    return ordered[np.r_[0, starts]].tolist(), runs


def _values(keys: list[Any], counts: np.ndarray, cap: int) -> tuple[Json, np.ndarray]:
    """The part's values and their counts: all of them, or the `cap` most frequent ones plus
    an HLL sketch of all (distinct counts still merge) and the bound on an unlisted count.

    Keys keep their order (first appearance for categories), so merged ties order as in
    `explore`. Also returns the positions of the listed keys.
    """
    if len(keys) <= cap:
        keep = np.arange(len(keys))
        return {"keys": keys, "counts": counts.tolist(), "complete": True}, keep
    # the most frequent, the first seen among equal counts (as `explore` breaks ties)
    keep = np.sort(np.argsort(-counts, kind="stable")[:cap])
    rest = np.ones(len(keys), dtype=bool)
    rest[keep] = False
    sketch = hll_sketch(HLL_LG_K, tgt_hll_type.HLL_4)
    for key in keys:  # one call per distinct value, only for the parts that need it
        sketch.update(key)
    listed = {
        "keys": [keys[i] for i in keep],
        "counts": counts[keep].tolist(),
        "complete": False,
        "rest_rows": int(counts[rest].sum()),
        "rest_max": int(counts[rest].max()),  # no unlisted value occurs more often
        "hll": _b64(sketch.serialize_compact()),
    }
    return listed, keep


def _moments(x: np.ndarray, *, third: bool = False) -> Json:
    """Count, mean and the sums of squared (and cubed: `third`) deviations, as `explore`."""
    if x.size == 0:
        return {"n": 0, "mean": 0.0, "m2": 0.0, "m3": 0.0}
    if third and x[0] == x[-1]:  # sorted and constant: exact zeros, not a 1e-34 variance
        return {"n": int(x.size), "mean": float(x[0]), "m2": 0.0, "m3": 0.0}
    mean = float(x.mean())
    centred = x - mean
    if not third:  # the associations need no skew: one dot product, no squares array
        return {"n": int(x.size), "mean": mean, "m2": float(centred @ centred), "m3": 0.0}
    squares = centred * centred
    m2, m3 = float(squares.sum()), float(squares @ centred)
    return {"n": int(x.size), "mean": mean, "m2": m2, "m3": m3}


def _part_timeline(stamps: np.ndarray) -> Json:
    """Min, max and rows per month, or per year when this part alone spans over five years."""
    if stamps.size == 0:
        return {"min": None, "max": None, "months": None}
    months = stamps.astype("datetime64[M]").astype(np.int64)
    lo, hi = int(months.min()), int(months.max())
    unit, first, slots = "month", lo, months
    if hi - lo > ex.MONTHLY_SPAN_MONTHS:  # then the merged span is too: years suffice
        unit, first, slots = "year", lo // 12, months // 12
    return {
        "min": pd.Timestamp(stamps.min()).isoformat(),
        "max": pd.Timestamp(stamps.max()).isoformat(),
        "months": {
            "first": lo,
            "last": hi,
            "unit": unit,
            "start": first,
            "counts": np.bincount(slots - first).tolist(),
        },
    }


def _part_association(
    kind: ColumnType, x: np.ndarray, keep: Any, y_codes: Any, size: int, y_num: Any
) -> Json:
    """Accumulators of the association with the target, on rows where both are present:
    co-moments (pearson), group sizes and sums (eta) or a category x class table (V)."""
    if kind is not CAT and y_codes is None:
        mask = np.isfinite(x) & np.isfinite(y_num)
        return _comoments(x[mask], y_num[mask])
    if kind is not CAT:  # eta of the values across the classes, all listed
        mask = np.isfinite(x) & (y_codes >= 0)
        return _groups(x[mask], y_codes[mask], None, size)
    position = None  # code -> listed slot, or -1; None when every category is listed
    if keep.size < int(x.max(initial=-1)) + 1:
        position = np.full(int(x.max()) + 1, -1, dtype=np.int64)
        position[keep] = np.arange(keep.size)
    if y_codes is None:  # eta of the target across the categories
        mask = (x >= 0) & np.isfinite(y_num)
        return _groups(y_num[mask], x[mask], position, keep.size)
    mask = (x >= 0) & (y_codes >= 0)
    a, b = x[mask], y_codes[mask]
    p = a if position is None else position[a]
    listed = p >= 0
    cells = np.bincount(p[listed] * size + b[listed], minlength=keep.size * size)
    out: Json = {"table": cells.reshape(keep.size, size).tolist(), "tail": None}
    if not listed.all():  # unlisted categories keep their share of chi2: sum O^2 / R per class
        a, b = a[~listed], b[~listed]
        rows = np.bincount(a)
        pair, observed = np.unique(a * size + b, return_counts=True)
        ratio = observed.astype(np.float64) ** 2 / rows[pair // size]
        out["tail"] = {
            "groups": int(np.count_nonzero(rows)),
            "counts": np.bincount(b, minlength=size).tolist(),
            "sq": np.bincount(pair % size, weights=ratio, minlength=size).tolist(),
        }
    return out


def _groups(v: np.ndarray, g: np.ndarray, position: Any, slots: int) -> Json:
    """Eta's accumulators: per listed group its size and sum; unlisted groups only as their
    count and sum of (group sum)^2 / size, eta's share of them."""
    out: Json = {"moments": _moments(v), "tail": None}
    if position is None:  # every group listed
        out["sizes"] = np.bincount(g, minlength=slots).tolist()
        out["sums"] = np.bincount(g, weights=v, minlength=slots).tolist()
        return out
    p = position[g]
    listed = p >= 0
    out["sizes"] = np.bincount(p[listed], minlength=slots).tolist()
    out["sums"] = np.bincount(p[listed], weights=v[listed], minlength=slots).tolist()
    if not listed.all():
        sizes = np.bincount(g[~listed])
        sums = np.bincount(g[~listed], weights=v[~listed])
        used = sizes > 0
        between = float((sums[used] ** 2 / sizes[used]).sum())
        out["tail"] = {"groups": int(used.sum()), "between": between}
    return out


def _comoments(x: np.ndarray, y: np.ndarray) -> Json:
    mx, my = _moments(x), _moments(y)
    cxy = float((x - mx["mean"]) @ (y - my["mean"])) if x.size else 0.0
    return {"x": mx, "y": my, "cxy": cxy}


# ----------------------------------------------------------------------------- merge


def merge_profiles(partials: list[Json], schema: ResolvedSchema) -> Json:
    """The profile of all the parts, shaped as `explore.profile`'s, plus "parts" and the
    "approximate" note: which statistics are estimates, with their error bounds."""
    if not partials:
        raise BadInputError("no partial profile to merge")
    names = [*schema.features, schema.target]
    for p in partials:
        if (p.get("format"), p.get("version")) != (FORMAT, VERSION):
            raise BadInputError(f"not a version-{VERSION} partial profile")
        if [c["name"] for c in p["columns"]] != names:
            raise BadInputError(f"a partial profile's columns are not the schema's {names}")
    classification = schema.is_classification
    labels: dict[str, int] = {}  # class -> rows, in order of first appearance
    for p in partials:
        classes = p.get("classes") or {"labels": [], "counts": []}
        for label, count in zip(classes["labels"], classes["counts"], strict=True):
            labels[label] = labels.get(label, 0) + count

    notes: dict[str, list[str]] = {}
    bounds: dict[str, float] = {}
    kinds = [*schema.features.values(), CAT if classification else NUM]
    columns = []
    for i, (name, kind) in enumerate(zip(names, kinds, strict=True)):
        parts = [p["columns"][i] for p in partials]
        col = _merge_column(parts, kind, notes, bounds)
        col["role"] = "target" if name == schema.target else "feature"
        col["association"] = None
        if name != schema.target:
            col["association"] = _merge_association(kind, partials, i, notes)
        columns.append(col)

    balance = None
    if classification:
        balance = ex.class_balance(list(labels.values()), list(labels), schema)
    out = ex.assemble(schema, sum(p["n_rows"] for p in partials), columns, balance)
    out["parts"] = len(partials)
    out["approximate"] = _note(len(partials), notes, bounds)
    return out


def _merge_column(
    parts: list[Json], kind: ColumnType, notes: dict[str, list[str]], bounds: dict[str, float]
) -> Json:
    """The column's summary, as `explore` shapes it."""
    name = parts[0]["name"]
    n, n_missing = sum(p["n"] for p in parts), sum(p["missing"] for p in parts)
    col: Json = {"name": name, "type": kind.value}
    values, distinct, slack = _merge_values([p["values"] for p in parts], name, notes)
    top = max(values.values(), default=0)
    if kind is CAT:
        present = n - n_missing
        ordered = sorted(values.items(), key=lambda kv: -kv[1])[: ex.TOP_CATEGORIES]  # stable
        col.update(ex._missing(n, n_missing))
        col["distinct"], col["top_share"] = distinct, ex._share(top, present)
        col["top"] = [{"value": k, "count": c} for k, c in ordered]
        col["other"] = present - sum(c for _, c in ordered)
        if slack:
            notes.setdefault("categories", []).append(name)
            bounds["categories"] = max(bounds.get("categories", 0.0), slack / present)
        return col

    finite = sum(p["moments"]["n"] for p in parts) if kind is NUM else n - n_missing
    if kind is NUM:
        col["infinite"] = sum(p["infinite"] for p in parts)
    col.update(ex._missing(n, n_missing))
    col["distinct"] = distinct
    col["top_share"] = ex._share(top, finite) if finite else None
    if slack:
        notes.setdefault("top_share", []).append(name)
        bounds["top_share"] = max(bounds.get("top_share", 0.0), slack / finite)
    if kind is NUM:
        col["stats"], col["histogram"], exact = _merge_numeric(parts)
        if not exact:
            notes.setdefault("quantiles", []).append(name)
    else:
        col.update(_merge_timeline(parts))
    return col


def _merge_values(
    parts: list[Json], name: str, notes: dict[str, list[str]]
) -> tuple[dict[Any, int], int, int]:
    """Value -> rows over the parts' lists, the distinct count, and how many rows a value's
    count may miss (the sum of `rest_max` of the parts that listed only their top values)."""
    counts: dict[Any, int] = {}
    for p in parts:
        for key, c in zip(p["keys"], p["counts"], strict=True):
            counts[key] = counts.get(key, 0) + c
    partial = [p for p in parts if not p["complete"]]
    if not partial:
        return counts, len(counts), 0
    union = hll_union(HLL_LG_K)
    for p in parts:
        if p["complete"]:
            for key in p["keys"]:  # the same types (float, int, str) as the parts hashed
                union.update(key)
        else:
            union.update(hll_sketch.deserialize(base64.b64decode(p["hll"])))
    notes.setdefault("distinct", []).append(name)
    # never below the values seen, never above the rows
    total = sum(sum(p["counts"]) + p.get("rest_rows", 0) for p in parts)
    distinct = min(max(round(union.get_estimate()), len(counts)), total)
    return counts, distinct, sum(p["rest_max"] for p in partial)


def _merge_numeric(parts: list[Json]) -> tuple[Json, Json, bool]:
    """Stats and histogram; also whether they are exact (the merged sketch kept every value)."""
    m = reduce(_merge_moments, (p["moments"] for p in parts))
    n = m["n"]
    if n == 0:
        empty = np.zeros(0)
        return ex._numeric_stats(empty), ex._histogram(empty), True
    sketch = kll_doubles_sketch(KLL_K)
    for p in parts:
        if p["kll"] is not None:
            sketch.merge(kll_doubles_sketch.deserialize(base64.b64decode(p["kll"])))
    if sketch.num_retained == n:  # every value, each of weight 1: exactly `explore`'s numbers
        x = np.sort(np.fromiter((item for item, _ in sketch), dtype=np.float64, count=n))
        return ex._numeric_stats(x), ex._histogram(x), True
    lo = min(p["min"] for p in parts if p["min"] is not None)
    hi = max(p["max"] for p in parts if p["max"] is not None)
    var = m["m2"] / n
    skew = m["m3"] / n / var**1.5 if var > 0 else None
    # inclusive: the smallest value whose share of values <= it reaches the rank
    quantiles = {k: ex._num(sketch.get_quantile(r, True)) for k, r in ex.QUANTILES.items()}
    stats = {
        "min": ex._num(lo),
        "max": ex._num(hi),
        "mean": ex._num(m["mean"]),
        "std": ex._num(math.sqrt(var * n / (n - 1))) if n > 1 else None,
        "skew": ex._num(skew),
        "zeros": sum(p["zeros"] for p in parts),
        "quantiles": quantiles,
    }
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, ex.HISTOGRAM_BINS + 1)
    # the sketch's share of values under each inner edge: [a, b) bins, the last one closed
    below = np.rint(np.asarray(sketch.get_cdf(edges[1:-1].tolist(), False)[:-1]) * n)
    counts = np.diff(below.astype(np.int64), prepend=0, append=n)
    hist = {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}
    return stats, hist, False


def _merge_moments(a: Json, b: Json) -> Json:
    """Chan et al. (1979) for the mean and M2, Pébay (2008) for M3: no sums of powers."""
    na, nb = a["n"], b["n"]
    if na == 0 or nb == 0:
        return b if na == 0 else a
    n = na + nb
    d = b["mean"] - a["mean"]
    m2 = a["m2"] + b["m2"] + d * d * na * nb / n
    m3 = (
        a["m3"]
        + b["m3"]
        + d**3 * na * nb * (na - nb) / n**2
        + 3 * d * (na * b["m2"] - nb * a["m2"]) / n
    )
    return {"n": n, "mean": a["mean"] + d * nb / n, "m2": m2, "m3": m3}


def _merge_comoments(a: Json, b: Json) -> Json:
    na, nb = a["x"]["n"], b["x"]["n"]
    if na == 0 or nb == 0:
        return b if na == 0 else a
    dx, dy = b["x"]["mean"] - a["x"]["mean"], b["y"]["mean"] - a["y"]["mean"]
    cxy = a["cxy"] + b["cxy"] + dx * dy * na * nb / (na + nb)
    return {"x": _merge_moments(a["x"], b["x"]), "y": _merge_moments(a["y"], b["y"]), "cxy": cxy}


def _merge_timeline(parts: list[Json]) -> Json:
    spans = [p["months"] for p in parts if p["months"] is not None]
    if not spans:
        return {"min": None, "max": None, "timeline": {"freq": "month", "labels": [], "counts": []}}
    lo, hi = min(s["first"] for s in spans), max(s["last"] for s in spans)
    yearly = hi - lo > ex.MONTHLY_SPAN_MONTHS
    start = lo // 12 if yearly else lo
    counts = np.zeros((hi // 12 if yearly else hi) - start + 1, dtype=np.int64)
    for s in spans:
        slots = s["start"] + np.arange(len(s["counts"]))
        if yearly and s["unit"] == "month":
            slots = slots // 12
        np.add.at(counts, slots - start, s["counts"])
    span = range(start, start + counts.size)
    labels = (
        [f"{1970 + y:04d}" for y in span]
        if yearly
        else [f"{1970 + m // 12:04d}-{m % 12 + 1:02d}" for m in span]
    )
    freq = "year" if yearly else "month"
    stamps = [p for p in parts if p["min"] is not None]
    return {
        "min": min((p["min"] for p in stamps), key=pd.Timestamp),
        "max": max((p["max"] for p in stamps), key=pd.Timestamp),
        "timeline": {"freq": freq, "labels": labels, "counts": counts.tolist()},
    }


def _merge_association(
    kind: ColumnType, partials: list[Json], i: int, notes: dict[str, list[str]]
) -> Json:
    """The association `explore` computes, from the parts' accumulators."""
    assocs = [p["columns"][i]["association"] for p in partials]
    if any(a.get("tail") for a in assocs):
        notes.setdefault("association", []).append(partials[0]["columns"][i]["name"])
    if kind is not CAT and "cxy" in assocs[0]:
        m = reduce(_merge_comoments, assocs)
        denom = math.sqrt(m["x"]["m2"] * m["y"]["m2"])
        ok = m["x"]["n"] >= 3 and denom > 0
        value = ex._num(np.clip(m["cxy"] / denom, -1.0, 1.0)) if ok else None
        return {"method": "pearson", "value": value}
    # the groups are the classes of a numeric feature, or the categories of a categorical one
    keys = [
        p["columns"][i]["values"]["keys"] if kind is CAT else p["classes"]["labels"]
        for p in partials
    ]
    if "table" in assocs[0]:
        labels = [p["classes"]["labels"] for p in partials]
        return {"method": "cramers_v", "value": _merged_cramers_v(assocs, keys, labels)}
    m = reduce(_merge_moments, (a["moments"] for a in assocs))
    if m["n"] < 3:
        return {"method": "eta", "value": None}
    sizes: dict[Any, int] = {}
    sums: dict[Any, float] = {}
    for a, part_keys in zip(assocs, keys, strict=True):
        for key, size, total in zip(part_keys, a["sizes"], a["sums"], strict=True):
            sizes[key] = sizes.get(key, 0) + size
            sums[key] = sums.get(key, 0.0) + total
    used = [key for key, size in sizes.items() if size > 0]
    tails = [a["tail"] for a in assocs if a.get("tail")]
    k = len(used) + sum(t["groups"] for t in tails)
    between = sum(sums[g] ** 2 / sizes[g] for g in used) + sum(t["between"] for t in tails)
    return {"method": "eta", "value": ex._eta_from(m["n"], m["mean"], m["m2"], k, between)}


def _merged_cramers_v(
    assocs: list[Json], keys: list[list[Any]], labels: list[list[str]]
) -> float | None:
    """Cramér's V from the parts' category x class tables (rows: the listed categories,
    columns: that part's classes) and their unlisted categories' share of chi2."""
    cells: dict[tuple[Any, str], int] = {}
    rows: dict[Any, int] = {}
    cols: dict[str, int] = {}
    tail_sq: dict[str, float] = {}
    tail_groups = 0
    for a, part_keys, part_labels in zip(assocs, keys, labels, strict=True):
        for key, row in zip(part_keys, a["table"], strict=True):
            for label, c in zip(part_labels, row, strict=True):
                if c:
                    cells[key, label] = cells.get((key, label), 0) + c
                    rows[key] = rows.get(key, 0) + c
                    cols[label] = cols.get(label, 0) + c
        if tail := a["tail"]:
            tail_groups += tail["groups"]
            for label, c, sq in zip(part_labels, tail["counts"], tail["sq"], strict=True):
                cols[label] = cols.get(label, 0) + c
                tail_sq[label] = tail_sq.get(label, 0.0) + sq
    n = sum(cols.values())
    r, k = len(rows) + tail_groups, sum(1 for c in cols.values() if c > 0)
    if n < 3 or r < 2 or k < 2:
        return None
    ratio = sum(c * c / (rows[key] * cols[label]) for (key, label), c in cells.items())
    ratio += sum(sq / cols[label] for label, sq in tail_sq.items() if cols[label])
    return ex._cramers_v_from(n, r, k, n * (ratio - 1.0))


def _note(k: int, notes: dict[str, list[str]], bounds: dict[str, float]) -> Json:
    """Which statistics are estimates: of which columns, how, their bounds (as shares), and
    the sentence the report shows."""
    rank = kll_doubles_sketch.get_normalized_rank_error(KLL_K, False)
    share = kll_doubles_sketch.get_normalized_rank_error(KLL_K, True)
    rel = abs(hll_sketch.get_rel_err(True, True, HLL_LG_K, 2))
    top, cats = bounds.get("top_share", 0.0), bounds.get("categories", 0.0)
    notes["histogram"] = notes.get("quantiles", [])
    catalogue = {  # statistic: bound, how (and what the bound bounds), the sentence
        "quantiles": (rank, f"KLL sketch, k={KLL_K}: normalized rank error, 99% conf.", ""),
        "histogram": (share, "KLL sketch's CDF at the edges: a bin's error / rows, 99% conf.", ""),
        "distinct": (rel, f"HLL sketch, lg_k={HLL_LG_K}: relative error, 95% conf.", "HLL"),
        "top_share": (top, f"each part's {VALUE_CAP} commonest values: how low it may be", "top"),
        "categories": (cats, f"each part's top {CATEGORY_CAP}: how low a count may be", "cats"),
        "association": (None, "categories past a part's top taken as in no other part", "eta"),
    }
    sentences = {
        "HLL": f"distinct counts of {{}} from HLL (±{rel:.1%})",
        "top": f"top shares of {{}} low by {_at_most(top)} of the rows",
        "cats": f"category counts of {{}} (each part's top {CATEGORY_CAP}) low by {_at_most(cats)}",
        "eta": f"associations of {{}} take categories past a part's top {CATEGORY_CAP} as local",
    }
    statistics, words = [], []
    if notes["histogram"]:  # the same columns as the quantiles
        words.append(
            f"quantiles and histograms from KLL sketches (normalized rank error ≤ {rank:.1%}, "
            f"each bin within {share:.1%} of the rows)"
        )
    for stat, (bound, how, sentence) in catalogue.items():
        if cols := notes.get(stat):
            statistics.append({"statistic": stat, "columns": cols, "bound": bound, "how": how})
            named = ", ".join(cols[:3]) + (f" and {len(cols) - 3} more" if len(cols) > 3 else "")
            words += [sentences[sentence].format(named)] if sentence else []
    said = "; ".join(words) if words else "every statistic is exact"
    return {"summary": f"Merged from {k} part{'s' * (k != 1)}: {said}.", "statistics": statistics}


def _at_most(share: float) -> str:
    return f"≤ {share:.1%}" if share >= 0.001 else "< 0.1%"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
