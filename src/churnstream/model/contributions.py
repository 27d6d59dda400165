"""Reason codes: how much each customer field added to a prediction, exactly, from the arrays.

Computed from the compiled model (:class:`~churnstream.model.arrays.CompiledPipeline`), on the
**probability** scale, so that for every row::

    base + contributions.sum() == churn probability     (to float rounding, about 1e-16)

Each member of the model is first explained on its margin (log-odds):

- logistic regression: coefficient x design value (the standardized number, or 1.0 for the
  customer's one-hot level); its base is the intercept. Because the one-hot encoding keeps
  every level and the penalty leaves the intercept free, a group's coefficients sum to about
  zero, so a level's contribution is relative to the average level;
- gradient-boosted trees: Saabas path contributions (each split on the row's path adds the
  change of the expected value to the feature it reads; see
  :class:`~churnstream.model.arrays.TreePaths`); its base is the baseline plus every tree's
  expected value.

A member's margin contributions are then rescaled, row by row, by
``(p - expit(base)) / (margin - base)``, which keeps their signs and ratios and makes them sum
to the member's probability less ``expit(base)``. The soft vote averages probabilities, so
the model's contributions (and base) are the members' average.

Model columns are folded back into the customer fields they come from (each one-hot level into
its field, ``log_tenure`` into ``tenure``, ``auto_pay`` into ``PaymentMethod``); engineered
features of several fields (``contract_internet``, ``avg_monthly_charge``, ``charge_ratio``,
``n_addons``) are reasons of their own.

numpy only: the scoring core may import it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np

from churnstream.model.arrays import (
    CompiledPipeline,
    LogisticArrays,
    Probability,
    SoftVote,
    TreePaths,
    TreeTables,
    UnsupportedModelError,
    _numeric_values,
)
from churnstream.model.feature_batch import (
    CONTRACT_INTERNET_LEVELS,
    RAW_CATEGORICAL,
    FeatureBatch,
)
from churnstream.schemas import CATEGORICAL_LEVELS, FEATURE_COLUMNS

logger = logging.getLogger(__name__)

#: How many reasons a prediction carries.
TOP_REASONS = 3
#: The analytics column of a scored batch that holds each row's reason features, joined by
#: "," (e.g. ``tenure,Contract,TotalCharges``); present only when predictions carry reasons.
REASONS_COLUMN = "reasons"
#: Model columns computed from one customer field, reported as that field.
FOLDED_INTO = {"log_tenure": "tenure", "auto_pay": "PaymentMethod"}
#: Every reason a prediction can name: the 19 customer fields, then the engineered features
#: that combine several fields.
REASON_FEATURES: tuple[str, ...] = (
    *FEATURE_COLUMNS,
    "contract_internet",
    "avg_monthly_charge",
    "charge_ratio",
    "n_addons",
)
_REASON_INDEX = {name: i for i, name in enumerate(REASON_FEATURES)}
# Below this, a member's summed margin contributions are treated as zero (see _to_probability).
_TINY_MARGIN = 1e-12
_CONTRACT_INTERNET = np.array(CONTRACT_INTERNET_LEVELS, dtype=object)
_WHOLE_NUMBERS = frozenset({"SeniorCitizen", "tenure", "n_addons"})
_CONTRACT = RAW_CATEGORICAL.index("Contract")
_INTERNET = RAW_CATEGORICAL.index("InternetService")
_N_INTERNET = len(CATEGORICAL_LEVELS["InternetService"])


class Reason(NamedTuple):
    """One reason: the customer field (or engineered feature), its value, and how much it
    added to the churn probability."""

    feature: str
    value: Any
    contribution: float


@dataclass(frozen=True)
class Contributions:
    """A batch explained: ``base + values.sum(axis=1) == probabilities`` row for row."""

    #: The model's churn probability, bit-identical to ``CompiledPipeline.predict_proba``.
    probabilities: np.ndarray
    #: The probability before any field is taken into account.
    base: float
    #: (rows, len(REASON_FEATURES)) probability contributions.
    values: np.ndarray


def reason_of(model_column: str) -> int:
    """The position in :data:`REASON_FEATURES` that a model column is reported under."""
    name = FOLDED_INTO.get(model_column, model_column)
    try:
        return _REASON_INDEX[name]
    except KeyError:
        raise UnsupportedModelError(f"no reason feature for model column {name}") from None


@dataclass(frozen=True, eq=False)
class Explainer:
    """The contributions of a compiled model; build it with :func:`explainer`."""

    compiled: CompiledPipeline

    @cached_property
    def _members(self) -> list[Probability]:
        classifier = self.compiled.classifier
        members = list(classifier.members) if isinstance(classifier, SoftVote) else [classifier]
        for member in members:
            if isinstance(member, TreeTables) and member.paths is None:
                raise UnsupportedModelError("trees compiled without path contributions")
            if not isinstance(member, LogisticArrays | TreeTables):
                raise UnsupportedModelError(f"cannot explain {type(member).__name__}")
        return members

    @cached_property
    def _design_reasons(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Design columns ordered by reason: (column order, group starts, group reasons)."""
        compiled = self.compiled
        reason = np.full(compiled.width, -1, dtype=np.intp)
        for group in compiled.groups:
            reason[group.columns[group.columns >= 0]] = reason_of(group.name)
        for position, name in enumerate(compiled.numeric):
            reason[compiled.n_onehot + position] = reason_of(name)
        if (reason < 0).any():
            raise UnsupportedModelError("a design column belongs to no feature")
        order = np.argsort(reason, kind="stable")
        ordered = reason[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        return order, starts, ordered[starts]

    def _linear(self, terms: np.ndarray, rows: int) -> np.ndarray:
        """(rows, reasons): the design-column terms summed per reason (no BLAS: its threads
        cost more than this small sum)."""
        order, starts, reasons = self._design_reasons
        out = np.zeros((rows, len(REASON_FEATURES)))
        out[:, reasons] = np.add.reduceat(terms[:, order], starts, axis=1)
        return out

    def _code_reason(self, trees: TreeTables, code: int) -> int:
        spec = trees.codes[code]
        if spec.kind == "group":
            return reason_of(self.compiled.groups[spec.source].name)
        return reason_of(self.compiled.numeric[spec.source - self.compiled.n_onehot])

    @cached_property
    def _tree_pairs(self) -> dict[int, _TreePairs]:
        """Per tree member, by its position in :attr:`_members`: its (tree, slot) pairs that
        hold a code, ordered by reason. Keyed by position, not ``id(member)``, so that a
        pickled Explainer (a Spark broadcast) still finds its tables after unpickling."""
        out = {}
        for position, member in enumerate(self._members):
            if isinstance(member, TreeTables) and member.paths is not None:
                codes = member.paths.codes
                pairs = sorted(
                    (self._code_reason(member, code), tree, slot)
                    for (tree, slot), code in np.ndenumerate(codes)
                    if code >= 0
                )
                reasons = np.array([r for r, _, _ in pairs], dtype=np.intp)
                starts = np.flatnonzero(np.r_[True, reasons[1:] != reasons[:-1]])
                out[position] = _TreePairs(
                    trees=np.array([t for _, t, _ in pairs], dtype=np.intp),
                    slots=np.array([s for _, _, s in pairs], dtype=np.intp)[:, None],
                    starts=starts,
                    reasons=reasons[starts],
                    width=codes.shape[1],
                )
        return out

    def check(self) -> Explainer:
        """Raise UnsupportedModelError now, rather than on the first batch."""
        self._design_reasons  # noqa: B018 - builds (and checks) every lookup table
        self._tree_pairs  # noqa: B018
        return self

    def __call__(self, batch: FeatureBatch) -> Contributions:
        n = len(batch)
        if n == 0:
            return Contributions(np.empty(0), 0.0, np.empty((0, len(REASON_FEATURES))))
        compiled = self.compiled
        groups = compiled.group_codes(batch)
        design = compiled.design_matrix(batch, groups)
        if not np.isfinite(design).all():
            raise UnsupportedModelError("non-finite features")
        member_probabilities = []
        total = np.zeros((n, len(REASON_FEATURES)))
        base = 0.0
        for position, member in enumerate(self._members):
            if isinstance(member, LogisticArrays):
                probability = member(design, groups)
                margin = self._linear(design * member.coef_t[:, 0], n)
                member_base = float(member.intercept[0])
            elif isinstance(member, TreeTables) and member.paths is not None:
                index = member.leaf_index(design, groups)  # once, for the score and the paths
                raw = member.sum_leaves(index)
                probability = np.asarray(member.expit(raw, out=raw))
                margin = self._tree_pairs[position].contributions(index, member.paths, n)
                member_base = member.paths.expected
            else:
                raise UnsupportedModelError(f"cannot explain {type(member).__name__}")
            p_base = float(member.expit(np.array([member_base]))[0])
            total += _to_probability(margin, probability, p_base)
            base += p_base
            member_probabilities.append(probability)
        if len(member_probabilities) == 1:
            return Contributions(member_probabilities[0], base, total)
        # The soft vote's own arithmetic (see SoftVote), so the output is bit-identical.
        vote = member_probabilities[0].copy()
        for probability in member_probabilities[1:]:
            vote += probability
        members = len(member_probabilities)
        return Contributions(np.true_divide(vote, members), base / members, total / members)


@dataclass(frozen=True)
class _TreePairs:
    """The (tree, slot) pairs of a tree member that hold a code, grouped by reason."""

    trees: np.ndarray  # (pairs,)
    slots: np.ndarray  # (pairs, 1)
    starts: np.ndarray  # first pair of each reason present
    reasons: np.ndarray  # the reason of each group
    width: int  # slots per table entry

    def contributions(self, index: np.ndarray, paths: TreePaths, rows: int) -> np.ndarray:
        """(rows, reasons) margin contributions from each row's leaf positions ``index``."""
        # Pair-major: each pair's positions in the flat path table, one row of rows each.
        flat = index.T[self.trees]
        flat *= self.width
        flat += self.slots
        summed = np.add.reduceat(paths.values.reshape(-1)[flat], self.starts, axis=0)
        out = np.zeros((rows, len(REASON_FEATURES)))
        out[:, self.reasons] = summed.T
        return out


def _to_probability(margin: np.ndarray, probability: np.ndarray, p_base: float) -> np.ndarray:
    """Rescale margin contributions so that each row's sum is ``probability - p_base``."""
    summed = margin.sum(axis=1)
    small = np.abs(summed) < _TINY_MARGIN
    # expit's slope where the margin barely moved; the exact ratio everywhere else.
    factor = np.where(small, probability * (1.0 - probability), 0.0)
    np.divide(probability - p_base, summed, out=factor, where=~small)
    return margin * factor[:, None]


def explainer(compiled: CompiledPipeline) -> Explainer:
    """An :class:`Explainer` for ``compiled``; UnsupportedModelError if it cannot explain it."""
    return Explainer(compiled).check()


@dataclass(frozen=True)
class TopReasons:
    """Each row's top reasons, column-wise (a Python object per reason would cost more than
    computing them)."""

    #: (rows, k): positions in :data:`REASON_FEATURES`, largest contribution first; -1 pads
    #: a row that has fewer than k positive contributions.
    features: np.ndarray
    #: (rows, k): each reason's contribution to the churn probability (0.0 where padded).
    contributions: np.ndarray
    #: The customer's value of every reason feature that appears, one entry per row.
    values: dict[int, np.ndarray]

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def take(self, rows: np.ndarray) -> TopReasons:
        """The selected rows."""
        return TopReasons(
            self.features[rows],
            self.contributions[rows],
            {reason: column[rows] for reason, column in self.values.items()},
        )

    def rows(self) -> list[list[Reason]]:
        """Every row's reasons as :class:`Reason` tuples (for files and tests, not streams)."""
        values = {reason: column.tolist() for reason, column in self.values.items()}
        return [
            [
                Reason(REASON_FEATURES[f], values[f][row], amount)
                for f, amount in zip(features, amounts, strict=True)
                if f >= 0
            ]
            for row, (features, amounts) in enumerate(
                zip(self.features.tolist(), self.contributions.tolist(), strict=True)
            )
        ]


def top_reasons(
    contributions: Contributions, batch: FeatureBatch, k: int = TOP_REASONS
) -> TopReasons:
    """Per row, up to ``k`` features with the largest positive contributions, largest first."""
    values = contributions.values
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(values, order, axis=1)
    positive = picked > 0.0
    features = np.where(positive, order, -1)
    return TopReasons(
        features=features,
        contributions=np.where(positive, picked, 0.0),
        values=_reason_values(batch, np.unique(order[positive]).tolist()),
    )


def _reason_values(batch: FeatureBatch, reasons: Sequence[int]) -> dict[int, np.ndarray]:
    """The customer's value of each reason feature (strings, int64 or float64 arrays)."""
    out: dict[int, np.ndarray] = {}
    numeric: dict[str, np.ndarray] | None = None
    for reason in reasons:
        name = REASON_FEATURES[reason]
        if name in RAW_CATEGORICAL:
            out[reason] = batch.levels(name)
        elif name == "contract_internet":
            contract = batch.codes[:, _CONTRACT].astype(np.intp)
            out[reason] = _CONTRACT_INTERNET[contract * _N_INTERNET + batch.codes[:, _INTERNET]]
        else:
            numeric = numeric if numeric is not None else _numeric_values(batch)
            column = numeric[name]
            out[reason] = column.astype(np.int64) if name in _WHOLE_NUMBERS else column
    return out
