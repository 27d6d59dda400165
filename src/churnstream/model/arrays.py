"""The trained pipeline as arrays, evaluated with numpy alone, bit for bit.

``Pipeline.predict_proba`` on a small batch is dominated by overhead: the ColumnTransformer
validates and converts an object array column by column, and the histogram gradient boosting
model makes one Python-level call (and one OpenMP region) per tree. :class:`CompiledPipeline`
holds the fitted parameters as plain arrays (read once by :mod:`churnstream.model.compile`)
and computes the same numbers directly from a
:class:`~churnstream.model.feature_batch.FeatureBatch`:

- the design matrix the ColumnTransformer would produce (one-hot block, then the scaled
  numeric block), with the same float operations in the same order;
- logistic regression as ``expit(X @ coef.T + intercept)``, as scikit-learn does, with the
  product computed in fixed blocks of rows so that a row's bits do not depend on its batch
  (see :func:`blocked_product`);
- histogram gradient boosting from lookup tables: every split compares one feature with a
  threshold, so each tree's leaf is a function of a few small integer codes (a category, or
  how many of the tree's thresholds a number exceeds). Leaf values are summed tree after tree
  from the baseline, in scikit-learn's order, so the raw score is the same float;
- a soft vote as the mean of the members' probabilities, as ``np.average`` computes it.

The logistic function is a parameter: the compiler hands over the one scikit-learn itself
calls (scipy's ``expit``). numpy's ``exp`` differs from it in the last bit for a few percent
of inputs, so computing it here would break the bit-for-bit promise.

numpy only (no scikit-learn, scipy or pandas): the scoring core may import it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from churnstream.model import compiled_native, small_rows
from churnstream.model.feature_batch import (
    RAW_CATEGORICAL,
    FeatureBatch,
    numeric_engineered,
)
from churnstream.model.small_rows import SMALL_NUMERIC_ROWS

logger = logging.getLogger(__name__)

#: From this many rows, trees are summed by a loop over tree-major leaves (else a cumsum).
LOOP_SUM_MIN_ROWS = 256
#: Rows of every BLAS call of the logistic member (see :func:`blocked_product`): a multiple
#: of the kernels' 4 (or 8) rows, and with our ~60 columns far below the size (2,304 x 4
#: elements) from which OpenBLAS splits a matrix-vector product between threads.
PRODUCT_BLOCK_ROWS = 64
#: The engineered one-hot group: Contract x InternetService.
CONTRACT_INTERNET = "contract_internet"
_ADDON_POSITIONS = np.array(small_rows.ADDON_POSITIONS, dtype=np.intp)
_AUTO_PAY_BY_CODE = np.array(small_rows.AUTO_PAY_BY_CODE, dtype=np.float64)

#: ``expit(x, out=x)``: the logistic function, in place, as scikit-learn's models call it.
Logistic = Callable[..., np.ndarray]


class UnsupportedModelError(ValueError):
    """The pipeline has a shape this module does not reproduce; use the pipeline itself."""


class Probability(Protocol):
    """A compiled classifier: churn probability per row of the design matrix."""

    def __call__(self, design: np.ndarray, groups: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class OneHotGroup:
    """One one-hot encoded column: the design-matrix column for each of our level codes."""

    name: str
    columns: np.ndarray  # our code -> design column, -1 when the encoder lacks that level


@dataclass(frozen=True, eq=False)
class CompiledPipeline:
    """``pipeline.predict_proba(frame)[:, 1]`` from level codes and numbers, bit-identical.

    The design matrix is the ``n_onehot`` columns of the one-hot ``groups``, then the
    ``numeric`` features, less ``mean`` and over ``scale`` (StandardScaler's, when it has them).
    """

    groups: list[OneHotGroup]
    n_onehot: int
    numeric: list[str]
    mean: np.ndarray | None
    scale: np.ndarray | None
    classifier: Probability

    @property
    def width(self) -> int:
        """Columns of the design matrix."""
        return self.n_onehot + len(self.numeric)

    @cached_property
    def _column_table(self) -> np.ndarray:
        """(groups, widest): each group's design column per level code, -1 where unknown."""
        widest = max((g.columns.shape[0] for g in self.groups), default=0)
        table = np.full((len(self.groups), widest), -1, dtype=np.intp)
        for position, group in enumerate(self.groups):
            table[position, : group.columns.shape[0]] = group.columns
        return table

    @cached_property
    def _group_index(self) -> np.ndarray:
        return np.arange(len(self.groups))[None, :]

    @cached_property
    def _group_sources(self) -> tuple[np.ndarray, int | None]:
        """Each group's column of FeatureBatch.codes (0 for contract_internet, whose position
        comes second: it is computed from two columns)."""
        names = [g.name for g in self.groups]
        engineered = names.index(CONTRACT_INTERNET) if CONTRACT_INTERNET in names else None
        sources = [
            0 if name == CONTRACT_INTERNET else RAW_CATEGORICAL.index(name) for name in names
        ]
        return np.array(sources, dtype=np.intp), engineered

    def group_codes(self, batch: FeatureBatch) -> np.ndarray:
        """(n, groups) level codes of every one-hot group, contract_internet included."""
        # One gather for every raw group, then the engineered column: a few numpy calls
        # whatever the number of groups (per-call overhead is most of a single row's cost).
        sources, engineered = self._group_sources
        codes = batch.codes.take(sources, axis=1).astype(np.intp)
        if engineered is not None:
            codes[:, engineered] = (
                batch.codes[:, small_rows.CONTRACT].astype(np.intp) * small_rows.N_INTERNET
                + batch.codes[:, small_rows.INTERNET]
            )
        return codes

    def design_matrix(self, batch: FeatureBatch, groups: np.ndarray) -> np.ndarray:
        """The float64 matrix the fitted ColumnTransformer would hand to the classifier."""
        n = len(batch)
        design = np.zeros((n, self.width), dtype=np.float64)
        # Every group's design column at once: (rows, groups), -1 where the level is unknown.
        columns = self._column_table[self._group_index, groups]
        known = columns >= 0
        design[np.nonzero(known)[0], columns[known]] = 1.0
        block = design[:, self.n_onehot :]
        small = small_rows.numeric_rows(batch, self.numeric) if n <= SMALL_NUMERIC_ROWS else None
        if small is not None:
            block[...] = small
        else:
            values = _numeric_values(batch)
            block[...] = np.array([values[name] for name in self.numeric]).T  # one copy
        # StandardScaler.transform: subtract, then divide, in place.
        if self.mean is not None:
            block -= self.mean
        if self.scale is not None:
            block /= self.scale
        return design

    def predict_proba(self, batch: FeatureBatch) -> np.ndarray:
        """Churn probability per row; NaN-free input only (the scoring core guarantees it)."""
        if len(batch) == 0:
            return np.empty(0, dtype=float)
        small = None
        if len(batch) <= SMALL_NUMERIC_ROWS and self._small_tables is not None:
            small = small_rows.inputs(batch, self._small_tables)
        if small is not None:
            groups, design = small
        else:
            groups = self.group_codes(batch)
            design = self.design_matrix(batch, groups)
            if not np.isfinite(design).all():
                raise UnsupportedModelError("non-finite features: score them with the pipeline")
        return self.classifier(design, groups)

    @cached_property
    def _small_tables(self) -> small_rows.Tables | None:
        """The design matrix's parameters as lists, for up to SMALL_NUMERIC_ROWS rows."""
        return small_rows.tables(self._column_table, self._group_sources, self.n_onehot,
                                 self.numeric, self.mean, self.scale)  # fmt: skip


def _numeric_values(batch: FeatureBatch) -> dict[str, np.ndarray]:
    """Raw and engineered numeric features, as float64, computed as feature_matrix does."""
    values = numeric_engineered(batch.tenure, batch.monthly_charges, batch.total_charges)
    # Small whole numbers, so any summation order gives the same float as feature_matrix.
    values["n_addons"] = (
        (batch.codes.take(_ADDON_POSITIONS, axis=1) == small_rows.YES).sum(axis=1).astype(float)
    )
    values["auto_pay"] = _AUTO_PAY_BY_CODE[batch.codes[:, small_rows.PAYMENT]]
    values["SeniorCitizen"] = batch.senior_citizen.astype(float)
    values["tenure"] = batch.tenure.astype(float)
    values["MonthlyCharges"] = batch.monthly_charges.astype(float)
    values["TotalCharges"] = batch.total_charges.astype(float)
    return values


# -- classifiers ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LogisticArrays:
    """A binary logistic regression: ``coef_.T`` (features, 1) and ``intercept_`` (1,)."""

    coef_t: np.ndarray
    intercept: np.ndarray
    expit: Logistic

    def __call__(self, design: np.ndarray, groups: np.ndarray) -> np.ndarray:
        # LogisticRegression._predict_proba_lr: decision_function, then expit in place.
        scores = blocked_product(design, self.coef_t).reshape(-1)
        scores += self.intercept
        return np.asarray(self.expit(scores, out=scores))


def blocked_product(design: np.ndarray, column: np.ndarray) -> np.ndarray:
    """``design @ column`` (rows, 1), each row's value independent of the batch it is in.

    BLAS (OpenBLAS's gemv) computes a call's rows in groups of 4 and the last ``n % 4`` with
    another kernel, and splits a large call between threads at boundaries that depend on
    ``n``: the same row could differ in the last bit with the batch around it. Every call
    here has exactly PRODUCT_BLOCK_ROWS rows (the tail is padded with zeros), small enough
    never to be split between threads, so a row always goes through the same kernel.
    """
    n = design.shape[0]
    if n < PRODUCT_BLOCK_ROWS:  # one padded block: its first rows are the product
        block = np.zeros((PRODUCT_BLOCK_ROWS, design.shape[1]), dtype=np.float64)
        block[:n] = design
        return np.asarray(block @ column)[:n]
    out = np.empty((n, column.shape[1]), dtype=np.float64)
    full = n - n % PRODUCT_BLOCK_ROWS
    for start in range(0, full, PRODUCT_BLOCK_ROWS):
        stop = start + PRODUCT_BLOCK_ROWS
        np.matmul(design[start:stop], column, out=out[start:stop])
    if full < n:
        tail = np.zeros((PRODUCT_BLOCK_ROWS, design.shape[1]), dtype=np.float64)
        tail[: n - full] = design[full:]
        out[full:] = (tail @ column)[: n - full]
    return out


@dataclass(frozen=True)
class SoftVote:
    """An unweighted soft vote of compiled members."""

    members: Sequence[Probability]

    def __call__(self, design: np.ndarray, groups: np.ndarray) -> np.ndarray:
        # np.average(..., axis=0) without weights: a sum along the first axis, then / count.
        if design.shape[0] <= SMALL_NUMERIC_ROWS:  # the same additions on Python floats
            columns = [member(design, groups).tolist() for member in self.members]
            sums = columns[0]
            for column in columns[1:]:
                sums = [a + b for a, b in zip(sums, column, strict=True)]
            return np.array([value / len(columns) for value in sums], dtype=np.float64)
        total = self.members[0](design, groups).copy()
        for member in self.members[1:]:
            total += member(design, groups)
        return np.asarray(np.true_divide(total, len(self.members)))


@dataclass(frozen=True)
class Code:
    """An integer code per row that decides some splits: a one-hot group or a numeric bin."""

    kind: str  # "group" or "numeric"
    source: int  # group position or design column
    thresholds: np.ndarray  # numeric: sorted distinct thresholds over all trees
    domain: int


@dataclass(frozen=True)
class TreePaths:
    """Each tree's Saabas path contributions, entry for entry of :attr:`TreeTables.leaves`.

    A node's expected value is the training-count-weighted mean of the leaves below it. On a
    row's path, each split adds (child's expected value - node's) to the code it reads, so a
    tree's contributions sum to its leaf less its root's expected value.
    """

    #: The raw score's baseline plus every tree's root expected value.
    expected: float
    #: (entries, slots): a tree's contributions for the row landing on that entry.
    values: np.ndarray
    #: (trees, slots): the :attr:`TreeTables.codes` index each slot belongs to, -1 for none.
    codes: np.ndarray


#: Codes multiplied into one lookup group: (member code indexes, their radices, the table of
#: per-tree index contributions for every packed value, shape (domain, trees)).
Pack = tuple[list[int], list[int], np.ndarray]


@dataclass(frozen=True)
class TreeTables:
    """Histogram gradient boosting (numeric splits only) as per-tree leaf lookup tables.

    Each tree's leaf depends on a few codes; its table holds the leaf value for every
    combination of them. A row's per-tree table index is a sum of per-code contributions,
    gathered from a few packed tables (codes multiplied into groups of bounded size), so a
    batch needs a handful of array operations instead of one call per tree.
    """

    baseline: float
    codes: list[Code]
    leaves: np.ndarray  # every tree's table, concatenated
    offsets_without_codes: np.ndarray  # each tree's table start (for trees of one leaf)
    n_trees: int
    packs: list[Pack]
    expit: Logistic
    #: Saabas path contributions, for reason codes (:mod:`churnstream.model.contributions`).
    paths: TreePaths | None = None

    def codes_for(self, design: np.ndarray, groups: np.ndarray) -> list[np.ndarray]:
        out = []
        for code in self.codes:
            if code.kind == "group":
                out.append(groups[:, code.source])
            else:
                out.append(np.searchsorted(code.thresholds, design[:, code.source], side="left"))
        return out

    def raw(self, design: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """The raw score: baseline, then each tree's leaf added in order."""
        if self._native is not None and compiled_native.native_enabled():
            try:
                scores = self._native.raw(
                    np.ascontiguousarray(design, dtype=np.float64),
                    np.ascontiguousarray(groups, dtype=np.int64),
                )
                return np.frombuffer(scores, dtype=np.float64)
            except ValueError:  # a code outside its table: numpy says what it makes of it
                logger.debug("native trees refused a batch; scoring it with numpy")
        return self.sum_leaves(self.leaf_index(design, groups))

    def __getstate__(self) -> dict[str, Any]:
        # The native evaluator does not pickle (Spark ships models to its workers): each
        # process builds its own on first use.
        state = dict(self.__dict__)
        state.pop("_native", None)
        return state

    @cached_property
    def _native(self) -> Any:
        """The same tables in Rust (:mod:`churnstream.model.compiled_native`), or None."""
        return compiled_native.new_trees(
            self.baseline,
            [(c.kind == "group", c.source, c.thresholds) for c in self.codes],
            self.leaves,
            self.offsets_without_codes,
            self.packs,
        )

    def leaf_index(self, design: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """(rows, trees): each row's position in :attr:`leaves` for every tree."""
        n = design.shape[0]
        index: np.ndarray = np.broadcast_to(self.offsets_without_codes, (n, self.n_trees))
        if self.codes:
            codes = self.codes_for(design, groups)
            for position, (members, radices, table) in enumerate(self.packs):
                packed = codes[members[0]].astype(np.intp, copy=True)
                for member, radix in zip(members[1:], radices[1:], strict=True):
                    packed += codes[member] * radix
                part = table[packed]  # (rows, trees): one contiguous row per code
                if position == 0:
                    index = part
                else:
                    index += part
        return index

    def sum_leaves(self, index: np.ndarray) -> np.ndarray:
        """The raw score of rows whose leaves are ``index`` (see :meth:`leaf_index`)."""
        n = index.shape[0]
        # Sum in scikit-learn's order, ((b + v1) + v2) + ..., one tree after the other.
        if n >= LOOP_SUM_MIN_ROWS:
            # Tree-major leaves: 150 whole-row additions beat a cumsum across each row.
            by_tree = self.leaves[index.T]
            total: np.ndarray = by_tree[0] + self.baseline
            for row in by_tree[1:]:
                total += row
            return total
        leaves = self.leaves[index]
        leaves[:, 0] += self.baseline
        return np.asarray(np.cumsum(leaves, axis=1)[:, -1])  # sequential by definition

    def __call__(self, design: np.ndarray, groups: np.ndarray) -> np.ndarray:
        raw = self.raw(design, groups)
        return np.asarray(self.expit(raw, out=raw))
