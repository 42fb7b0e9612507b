"""Shapley values of the served ONNX graph, in the endpoint's runtime (numpy + onnxruntime).

The players are the graph's inputs, one per original feature (a one-hot group or a date's
parts are one player). The game is interventional: for an instance x and a coalition S,

    v(S) = sum_b w_b f(x_S, b_{~S})

over the weighted rows b of the background summary stored with the model version, where f is
the explained output: the probability of the label the endpoint returns for x (which may come
from a threshold, not the argmax) or the regression value. `base_value` = v(empty) = the
weighted mean of f over the background, `output` = v(all) = f(x), and the contributions add up
to output - base_value.

Shapley values are linear in the game, so they are computed per background row and averaged
with the weights. For one row b only the features where x and b differ (D_b, m_b = |D_b|) can
contribute: the others are null players, and the coalitions that differ only by them are the
same graph input. So a row costs 2^m_b evaluated rows, not 2^M.

- exact: when sum_b 2^m_b (minus the rows already known: b itself, and x once) fits in
  `exact_rows`, every coalition of every row is evaluated in ONE session.run and the
  contributions are sum_b w_b A_{m_b} @ y_b with the standard weights |S|!(m-|S|-1)!/m!
  (A_m precomputed). Additive by construction.
- sampling: beyond it, antithetic permutation sampling (a seeded permutation and its
  reverse), each permutation walked from every background row to x, so each permutation's
  contributions add up to output - base_value exactly and so does their mean. The bound of
  each contribution is t * standard error of the mean over antithetic pairs, t chosen so that
  every feature is within its bound with the stated confidence (two-sided, Bonferroni over the
  features, Student-t from the Cornish-Fisher expansion). Its rows are bounded by
  `sampling_rows`, at least `min_pairs` pairs: at 16 pairs the t approximation of a mean of
  skewed draws covered 0.91 of the time at a nominal 0.95; at 32 it covers 0.94-0.95 (150 seeds
  x 3 instances on three models, tests/unit/test_explain.py).

Several instances are explained with one session.run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from mlcycle.serving.inputs import InputBuilder
from mlcycle.serving.manifest import Manifest

Method = Literal["exact", "sampling"]

EXACT_ROWS = 4096  # ~16 ms of a 200-tree forest at ~4 us a row
SAMPLING_ROWS = 4096
MIN_PAIRS = 32  # the fewest antithetic pairs for which the bound is calibrated
MAX_PAIRS = 4096
CONFIDENCE = 0.95
FLOAT_ROUNDING = 1e-12  # relative to the outputs' magnitude, added to a sampling bound


class BackgroundError(ValueError):
    """A background summary that cannot be used."""


@dataclass(frozen=True)
class Background:
    """The background summary stored with a model version, as JSON:

    `{"rows": [{feature: value, ...}, ...], "weights": [w, ...]}` with values in the request's
    JSON form (numbers, ISO-8601 date strings, category strings, null); weights positive, any
    scale (normalized here), optional (equal weights). Other keys (how it was made) are kept
    by the writer and ignored here."""

    rows: list[dict[str, Any]]
    weights: list[float]

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Background:
        rows = document.get("rows")
        if not isinstance(rows, list) or not rows:
            raise BackgroundError("a background needs a non-empty list of rows")
        weights = document.get("weights")
        if weights is None:
            weights = [1.0] * len(rows)
        if not isinstance(weights, list) or len(weights) != len(rows):
            raise BackgroundError(f"a background needs one weight per row ({len(rows)})")
        values = [float(w) for w in weights]
        if not all(math.isfinite(w) and w > 0 for w in values):
            raise BackgroundError("background weights must be finite and positive")
        return cls(list(rows), values)


@dataclass
class Explanation:
    """One instance's explanation; `contributions` follow the manifest's feature order."""

    label: str | None  # classification: whose probability is explained
    output: float  # f(x)
    base_value: float  # expected f over the background
    contributions: dict[str, float]
    method: Method
    # sampling only: per feature, |estimate - exact| <= bound with `confidence` (all at once)
    error_bounds: dict[str, float] | None = None
    confidence: float | None = None
    permutations: int | None = None
    evaluated_rows: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.label is not None:
            out["label"] = self.label
        out.update(
            output=self.output,
            base_value=self.base_value,
            contributions=dict(self.contributions),
            method=self.method,
        )
        if self.method == "sampling":
            out.update(
                error_bounds=dict(self.error_bounds or {}),
                confidence=self.confidence,
                permutations=self.permutations,
            )
        return out


def _shapley_matrix(m: int) -> np.ndarray:
    """A (m, 2^m) such that phi = A @ v for a game v indexed by coalition bitmask (bit k =
    player k): phi_k = sum_{S not k} w(|S|) (v(S | k) - v(S)), w(s) = s!(m-s-1)!/m!."""
    if m == 0:
        return np.zeros((0, 1))
    masks = np.arange(1 << m)
    bits = (masks[:, None] >> np.arange(m)) & 1  # (2^m, m)
    size = bits.sum(axis=1)
    weight = np.array(
        [math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)]
    )
    a = np.zeros((m, 1 << m))
    for k in range(m):
        has = bits[:, k].astype(bool)
        a[k, has] = weight[size[has] - 1]
        a[k, ~has] = -weight[size[~has]]
    return a


def _coalition_bits(m: int) -> np.ndarray:
    """(2^m - 2, m) bool: the coalitions of m players but the empty and the full one."""
    masks = np.arange(1, (1 << m) - 1)
    return ((masks[:, None] >> np.arange(m)) & 1).astype(bool)


def _t_quantile(p: float, dof: int) -> float:
    """Student-t quantile (Cornish-Fisher expansion in 1/dof; within ~1% for dof >= 10)."""
    z = NormalDist().inv_cdf(p)
    n = float(dof)
    return (
        z
        + (z**3 + z) / (4 * n)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * n**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * n**3)
    )


class Explainer:
    """Explains one model version's predictions against its background summary."""

    def __init__(
        self,
        session: ort.InferenceSession,
        manifest: Manifest,
        background: Background | Mapping[str, Any],
        *,
        exact_rows: int = EXACT_ROWS,
        sampling_rows: int = SAMPLING_ROWS,
        min_pairs: int = MIN_PAIRS,
        max_pairs: int = MAX_PAIRS,
        confidence: float = CONFIDENCE,
        seed: int = 0,
    ) -> None:
        if not isinstance(background, Background):
            background = Background.from_json(background)
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
        self.session = session
        self.manifest = manifest
        self.exact_rows = exact_rows
        self.sampling_rows = sampling_rows
        self.min_pairs = max(2, min_pairs)
        self.max_pairs = max(self.min_pairs, max_pairs)
        self.confidence = confidence
        self.seed = seed
        specs = manifest.features
        self.names = [s.name for s in specs]
        self.inputs = [s.input or s.name for s in specs]
        self.m = len(specs)
        self._string = [s.kind == "categorical" for s in specs]
        self._float_idx = [j for j, s in enumerate(self._string) if not s]
        self._string_idx = [j for j, s in enumerate(self._string) if s]
        if manifest.task == "regression":
            self._output = manifest.value_output or "variable"
            self._classes: dict[str, int] = {}
        else:
            if not manifest.probability_output:
                raise ValueError("explaining a classifier needs its probability output")
            self._output = manifest.probability_output
            self._classes = {c: i for i, c in enumerate(manifest.classes)}
        feeds = InputBuilder(manifest).build(background.rows).feeds
        weights = np.asarray(background.weights, dtype=np.float64)
        self.weights = weights / weights.sum()
        self.n_background = len(weights)
        self._bg_float, self._bg_string = self._split(feeds)
        self._bg_out = self._run_output(feeds)  # (B, k) or (B, 1)
        self._matrices: dict[int, np.ndarray] = {}
        self._bits: dict[int, np.ndarray] = {}

    @classmethod
    def for_model(cls, model: Any, background: Any, **options: Any) -> Explainer:
        """For a `mlcycle.serving.model.LoadedModel`."""
        return cls(model.session, model.manifest, background, **options)

    # --- arrays ---------------------------------------------------------------------------

    def _split(self, feeds: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Feeds -> (n, float features) float32 and (n, string features) object."""
        n = len(next(iter(feeds.values())))
        floats = np.empty((n, len(self._float_idx)), dtype=np.float32)
        for k, j in enumerate(self._float_idx):
            floats[:, k] = np.asarray(feeds[self.inputs[j]], dtype=np.float32).reshape(-1)
        strings = np.empty((n, len(self._string_idx)), dtype=object)
        for k, j in enumerate(self._string_idx):
            strings[:, k] = np.asarray(feeds[self.inputs[j]], dtype=object).reshape(-1)
        return floats, strings

    def _feeds(self, floats: np.ndarray, strings: np.ndarray) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {}
        columns = np.ascontiguousarray(floats.T)  # feature-major: each input a contiguous view
        for k, j in enumerate(self._float_idx):
            feeds[self.inputs[j]] = columns[k].reshape(-1, 1)
        for k, j in enumerate(self._string_idx):
            feeds[self.inputs[j]] = np.ascontiguousarray(strings[:, k]).reshape(-1, 1)
        return feeds

    def _run_output(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        (out,) = self.session.run([self._output], dict(feeds))
        if isinstance(out, list):  # a ZipMap output: one {class: p} per row
            out = [[row[c] for c in self.manifest.classes] for row in out]
        out = np.asarray(out, dtype=np.float64)
        return out.reshape(len(out), -1)

    def _matrix(self, m: int) -> np.ndarray:
        if m not in self._matrices:
            self._matrices[m] = _shapley_matrix(m)
        return self._matrices[m]

    def _coalitions(self, m: int) -> np.ndarray:
        if m not in self._bits:
            self._bits[m] = _coalition_bits(m)
        return self._bits[m]

    # --- explain --------------------------------------------------------------------------

    def explain(
        self,
        feeds: Mapping[str, np.ndarray],
        predictions: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[Explanation]:
        """One explanation per instance of `feeds` (the endpoint's input arrays, [n, 1] each).

        `predictions` are the endpoint's answers for these instances (`LoadedModel.run`):
        for a classifier, each one's `label` is the class whose probability is explained;
        None explains the graph's most probable class."""
        x_float, x_string = self._split(feeds)
        n = len(x_float)
        differs = self._differs(x_float, x_string)  # (n, B, M)
        columns: list[int] = []
        if self._classes:
            for i in range(n):
                prediction = predictions[i] if predictions is not None else None
                label = prediction.get("label") if prediction else None
                columns.append(self._classes[str(label)] if label is not None else -1)
        plans = [self._plan(differs[i]) for i in range(n)]
        # every instance's rows in one run: x itself first, then each plan's rows
        take = np.concatenate(
            [np.ones((n, self.m), dtype=bool)] + [p.take for p in plans if len(p.take)]
        )
        source = np.concatenate(
            [np.arange(n)] + [np.full(len(p.take), i) for i, p in enumerate(plans) if len(p.take)]
        )
        bg_row = np.concatenate(
            [np.zeros(n, dtype=np.int64)] + [p.bg_row for p in plans if len(p.take)]
        )
        # the same coalition of the same instance and row is evaluated once (sampled paths
        # share their first and last steps)
        unique, inverse = _distinct(take, source * self.n_background + bg_row)
        if unique is not None:
            take, source, bg_row = take[unique], source[unique], bg_row[unique]
        evaluated = np.bincount(source, minlength=n)
        floats = np.where(take[:, self._float_idx], x_float[source], self._bg_float[bg_row]).astype(
            np.float32, copy=False
        )
        strings = np.where(take[:, self._string_idx], x_string[source], self._bg_string[bg_row])
        out = self._run_output(self._feeds(floats, strings))
        if inverse is not None:
            out = out[inverse]
        explanations = []
        offset = n
        for i, plan in enumerate(plans):
            rows = len(plan.take)
            column = columns[i] if self._classes else 0
            if column < 0:
                column = int(np.argmax(out[i]))
            f_x = float(out[i, column])
            f_rows = out[offset : offset + rows, column]
            offset += rows
            explanations.append(self._finish(plan, f_x, f_rows, column, int(evaluated[i])))
        return explanations

    def _differs(self, x_float: np.ndarray, x_string: np.ndarray) -> np.ndarray:
        """(n, B, M) bool: where the instance's input differs from the background row's
        (NaN equals NaN: the same graph input)."""
        n = len(x_float)
        out = np.empty((n, self.n_background, self.m), dtype=bool)
        if self._float_idx:
            a, b = x_float[:, None, :], self._bg_float[None, :, :]
            out[:, :, self._float_idx] = (a != b) & ~(np.isnan(a) & np.isnan(b))
        if self._string_idx:
            out[:, :, self._string_idx] = x_string[:, None, :] != self._bg_string[None, :, :]
        return out

    def _plan(self, differs: np.ndarray) -> _Plan:
        """The rows to evaluate for one instance: exact if they fit, else sampled paths."""
        sizes = differs.sum(axis=1)
        exact_cost = int(sum((1 << int(m)) - 2 for m in sizes if m > 0))
        players = [np.flatnonzero(d) for d in differs]
        if exact_cost + 1 <= self.exact_rows:
            blocks, bg_rows = [], []
            for b, idx in enumerate(players):
                if len(idx) < 2:
                    continue
                block = np.zeros((len(self._coalitions(len(idx))), self.m), dtype=bool)
                block[:, idx] = self._coalitions(len(idx))
                blocks.append(block)
                bg_rows.append(np.full(len(block), b))
            return _Plan("exact", players, _stack(blocks, self.m), _cat(bg_rows), None)
        path_rows = int(sum(max(int(m) - 1, 0) for m in sizes))
        pairs = self.sampling_rows // max(2 * path_rows, 1)
        pairs = min(max(pairs, self.min_pairs), self.max_pairs)
        rng = np.random.default_rng(self.seed)
        blocks, bg_rows, ranks = [], [], []
        for b, idx in enumerate(players):
            m = len(idx)
            # each row its own permutations of its players, as each one's rank; antithetic:
            # each permutation followed by its reverse
            half = np.argsort(rng.random((pairs, m)), axis=1)
            r = np.empty((2 * pairs, m), dtype=np.int64)
            r[0::2], r[1::2] = half, m - 1 - half
            ranks.append(r)
            if m < 2:
                continue
            steps = np.arange(1, m)  # prefixes of 1 .. m-1 players; 0 is b, m is x
            inside = r[:, None, :] < steps[None, :, None]  # (P, m-1, m)
            block = np.zeros((2 * pairs, m - 1, self.m), dtype=bool)
            block[:, :, idx] = inside
            blocks.append(block.reshape(-1, self.m))
            bg_rows.append(np.full(2 * pairs * (m - 1), b))
        return _Plan("sampling", players, _stack(blocks, self.m), _cat(bg_rows), ranks)

    def _finish(
        self, plan: _Plan, f_x: float, f_rows: np.ndarray, column: int, evaluated: int
    ) -> Explanation:
        f_bg = self._bg_out[:, column]
        base = float(self.weights @ f_bg)
        label = self.manifest.classes[column] if self._classes else None
        offset = 0
        if plan.method == "exact":
            phi = np.zeros(self.m)
            for b, idx in enumerate(plan.players):
                m = len(idx)
                if m == 0:
                    continue
                inner = (1 << m) - 2
                game = np.empty(1 << m)
                game[0], game[-1] = f_bg[b], f_x
                game[1:-1] = f_rows[offset : offset + inner]
                offset += inner
                phi[idx] += self.weights[b] * (self._matrix(m) @ game)
            return Explanation(
                label,
                f_x,
                base,
                dict(zip(self.names, phi.tolist(), strict=True)),
                "exact",
                evaluated_rows=evaluated,
            )
        assert plan.ranks is not None
        permutations = len(plan.ranks[0])
        pairs = permutations // 2
        phi = np.zeros(self.m)
        variance = np.zeros(self.m)  # of phi: sum_b w_b^2 s_b^2 / pairs
        dof_denominator = np.zeros(self.m)
        for b, idx in enumerate(plan.players):
            m = len(idx)
            if m == 0:
                continue
            path = np.empty((permutations, m + 1))
            path[:, 0], path[:, -1] = f_bg[b], f_x
            inner = permutations * (m - 1)
            path[:, 1:-1] = f_rows[offset : offset + inner].reshape(permutations, m - 1)
            offset += inner
            steps = np.diff(path, axis=1)  # (P, m): the step that adds the k-th player
            mine = np.take_along_axis(steps, plan.ranks[b], axis=1)  # (P, m) by player
            pair_means = 0.5 * (mine[0::2] + mine[1::2])  # independent draws
            w = self.weights[b]
            phi[idx] += w * pair_means.mean(axis=0)
            part = w * w * pair_means.var(axis=0, ddof=1) / pairs
            variance[idx] += part
            dof_denominator[idx] += part * part / (pairs - 1)
        # Welch-Satterthwaite degrees of freedom of the pooled variance, per feature
        dof = np.where(dof_denominator > 0, variance**2 / np.maximum(dof_denominator, 1e-300), 1e9)
        p = 1.0 - (1.0 - self.confidence) / (2 * max(self.m, 1))
        # plus float rounding, which a zero variance (an additive model) leaves alone
        rounding = FLOAT_ROUNDING * max(1.0, abs(f_x), float(np.abs(f_bg).max()))
        bound = [
            _t_quantile(p, max(int(d), pairs - 1)) * math.sqrt(v) + rounding
            for d, v in zip(dof.tolist(), variance.tolist(), strict=True)
        ]
        return Explanation(
            label,
            f_x,
            base,
            dict(zip(self.names, phi.tolist(), strict=True)),
            "sampling",
            error_bounds=dict(zip(self.names, bound, strict=True)),
            confidence=self.confidence,
            permutations=permutations,
            evaluated_rows=evaluated,
        )


@dataclass
class _Plan:
    method: Method
    players: list[np.ndarray]  # per background row: the features where x differs
    take: np.ndarray  # (rows, M) bool: the feature comes from x (else from the row)
    bg_row: np.ndarray  # (rows,) the background row of each evaluated row
    ranks: list[np.ndarray] | None  # sampling: per background row, (P, m) each player's rank


def _distinct(take: np.ndarray, group: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(first index of each distinct (group, coalition), each row's distinct index), or
    (None, None) when every row is distinct or the key does not fit in 63 bits."""
    m = take.shape[1]
    if not len(group) or m + int(group.max()).bit_length() > 62:
        return None, None
    key = (group.astype(np.int64) << m) | (take.astype(np.int64) @ (np.int64(1) << np.arange(m)))
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    if len(first) == len(key):
        return None, None
    return first, inverse


def _stack(blocks: list[np.ndarray], m: int) -> np.ndarray:
    return np.concatenate(blocks) if blocks else np.zeros((0, m), dtype=bool)


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
