"""The trained pipeline, evaluated without scikit-learn's per-call machinery, bit for bit.

``Pipeline.predict_proba`` on a small batch is dominated by overhead: the ColumnTransformer
validates and converts an object array column by column, and the histogram gradient boosting
model makes one Python-level call (and one OpenMP region) per tree. :class:`CompiledPipeline`
reads the fitted parameters once and computes the same numbers directly from a
:class:`~churnstream.model.features.FeatureBatch`:

- the design matrix the ColumnTransformer would produce (one-hot block, then the scaled
  numeric block), with the same float operations in the same order;
- logistic regression as ``expit(X @ coef.T + intercept)``, exactly as scikit-learn does;
- histogram gradient boosting from lookup tables: every split compares one feature with a
  threshold, so each tree's leaf is a function of a few small integer codes (a category, or
  how many of the tree's thresholds a number exceeds). Leaf values are summed tree after tree
  from the baseline, in scikit-learn's order, so the raw score is the same float;
- a soft vote as the mean of the members' probabilities, as ``np.average`` computes it.

Anything else (another classifier, categorical splits, a changed preprocessing step) is
refused at compile time, and :class:`~churnstream.model.scorer.Scorer` then keeps using the
pipeline. The scorer also checks, at load, that both give identical probabilities.
"""

from __future__ import annotations

import importlib
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from churnstream.model.features import (
    ADDON_COLUMNS,
    MODEL_COLUMNS,
    RAW_CATEGORICAL,
    FeatureBatch,
    feature_matrix,
    numeric_engineered,
)
from churnstream.schemas import CATEGORICAL_LEVELS

logger = logging.getLogger(__name__)

# scikit-learn's own logistic function (scipy ships no type stubs here, hence the lookup).
expit: Any = importlib.import_module("scipy.special").expit

#: Largest product of code domains packed into one lookup group (rows of a group's table).
MAX_GROUP_DOMAIN = 2048
#: From this many rows, trees are summed by a loop over tree-major leaves (else a cumsum).
LOOP_SUM_MIN_ROWS = 256
CONTRACT_INTERNET = "contract_internet"
_YES = CATEGORICAL_LEVELS[ADDON_COLUMNS[0]].index("Yes")
_AUTO_PAY_CODES = np.array(
    [i for i, m in enumerate(CATEGORICAL_LEVELS["PaymentMethod"]) if "automatic" in m]
)
_ADDON_POSITIONS = [RAW_CATEGORICAL.index(name) for name in ADDON_COLUMNS]
_PAYMENT = RAW_CATEGORICAL.index("PaymentMethod")
_AUTO_PAY_BY_CODE = np.isin(
    np.arange(len(CATEGORICAL_LEVELS["PaymentMethod"])), _AUTO_PAY_CODES
).astype(float)
_CONTRACT = RAW_CATEGORICAL.index("Contract")
_INTERNET = RAW_CATEGORICAL.index("InternetService")
_N_INTERNET = len(CATEGORICAL_LEVELS["InternetService"])


class UnsupportedModelError(ValueError):
    """The pipeline has a shape this module does not reproduce; use the pipeline itself."""


class _Probability(Protocol):
    def __call__(self, design: np.ndarray, groups: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class _OneHotGroup:
    """One one-hot encoded column: the design-matrix column for each of our level codes."""

    name: str
    columns: np.ndarray  # our code -> design column, -1 when the encoder lacks that level


class CompiledPipeline:
    """``pipeline.predict_proba(frame)[:, 1]`` from level codes and numbers, bit-identical."""

    def __init__(
        self,
        groups: list[_OneHotGroup],
        n_onehot: int,
        numeric: list[str],
        mean: np.ndarray | None,
        scale: np.ndarray | None,
        classifier: Any,
    ) -> None:
        self._groups = groups
        self._n_onehot = n_onehot
        self._numeric = numeric
        self._mean = mean
        self._scale = scale
        self.width = n_onehot + len(numeric)
        widest = max((g.columns.shape[0] for g in groups), default=0)
        self._column_table = np.full((len(groups), widest), -1, dtype=np.intp)
        for position, group in enumerate(groups):
            self._column_table[position, : group.columns.shape[0]] = group.columns
        self._group_index = np.arange(len(groups))[None, :]
        self._sources = {
            int(column): (position, code)
            for position, group in enumerate(groups)
            for code, column in enumerate(group.columns)
            if column >= 0
        }
        self._probability = _compile_classifier(classifier, self)

    # -- compile ------------------------------------------------------------------------
    @classmethod
    def compile(cls, pipeline: Pipeline) -> CompiledPipeline:
        """Read a fitted ``features -> preprocess -> classifier`` pipeline.

        Raises UnsupportedModelError when any step differs from what
        :func:`churnstream.model.train.build_pipeline` makes.
        """
        steps = getattr(pipeline, "steps", None)
        if not steps or len(steps) != 3:
            raise UnsupportedModelError("not a features -> preprocess -> classifier pipeline")
        (_, features), (_, preprocess), (_, classifier) = steps
        if not (isinstance(features, FunctionTransformer) and features.func is feature_matrix):
            raise UnsupportedModelError("first step is not churnstream's feature_matrix")
        if not isinstance(preprocess, ColumnTransformer) or preprocess.sparse_output_:
            raise UnsupportedModelError("second step is not a dense ColumnTransformer")
        groups: list[_OneHotGroup] = []
        numeric: list[str] = []
        mean: np.ndarray | None = None
        scale: np.ndarray | None = None
        n_onehot = 0
        seen_numeric = False
        for _, transformer, positions in preprocess.transformers_:
            if isinstance(transformer, str) and transformer == "drop":
                continue
            names = [MODEL_COLUMNS[int(p)] for p in positions]
            if isinstance(transformer, OneHotEncoder):
                if seen_numeric:
                    raise UnsupportedModelError("one-hot block after the numeric block")
                groups.extend(_onehot_groups(transformer, names, n_onehot))
                n_onehot += sum(len(c) for c in transformer.categories_)
            elif isinstance(transformer, StandardScaler):
                if seen_numeric:
                    raise UnsupportedModelError("more than one numeric block")
                seen_numeric = True
                numeric = names
                mean = np.asarray(transformer.mean_, dtype=float) if transformer.with_mean else None
                scale = (
                    np.asarray(transformer.scale_, dtype=float) if transformer.with_std else None
                )
            else:
                raise UnsupportedModelError(f"unsupported transformer {type(transformer).__name__}")
        return cls(groups, n_onehot, numeric, mean, scale, classifier)

    # -- evaluate -----------------------------------------------------------------------
    def group_codes(self, batch: FeatureBatch) -> np.ndarray:
        """(n, groups) level codes of every one-hot group, contract_internet included."""
        codes = np.empty((len(batch), len(self._groups)), dtype=np.intp)
        for position, group in enumerate(self._groups):
            if group.name == CONTRACT_INTERNET:
                codes[:, position] = (
                    batch.codes[:, _CONTRACT].astype(np.intp) * _N_INTERNET
                    + batch.codes[:, _INTERNET]
                )
            else:
                codes[:, position] = batch.codes[:, RAW_CATEGORICAL.index(group.name)]
        return codes

    def design_matrix(self, batch: FeatureBatch, groups: np.ndarray) -> np.ndarray:
        """The float64 matrix the fitted ColumnTransformer would hand to the classifier."""
        n = len(batch)
        design = np.zeros((n, self.width), dtype=np.float64)
        # Every group's design column at once: (rows, groups), -1 where the level is unknown.
        columns = self._column_table[self._group_index, groups]
        known = columns >= 0
        design[np.nonzero(known)[0], columns[known]] = 1.0
        values = _numeric_values(batch)
        block = np.empty((n, len(self._numeric)), dtype=np.float64)
        for position, name in enumerate(self._numeric):
            block[:, position] = values[name]
        # StandardScaler.transform: subtract, then divide, in place.
        if self._mean is not None:
            block -= self._mean
        if self._scale is not None:
            block /= self._scale
        design[:, self._n_onehot :] = block
        return design

    def predict_proba(self, batch: FeatureBatch) -> np.ndarray:
        """Churn probability per row; NaN-free input only (the fast path guarantees it)."""
        if len(batch) == 0:
            return np.empty(0, dtype=float)
        groups = self.group_codes(batch)
        design = self.design_matrix(batch, groups)
        if not np.isfinite(design).all():
            raise UnsupportedModelError("non-finite features: score them with the pipeline")
        return self._probability(design, groups)

    # -- helpers for the classifier compilers -------------------------------------------
    def onehot_source(self, column: int) -> tuple[int, int]:
        """(group position, our level code) that sets design ``column`` to 1.0."""
        try:
            return self._sources[column]
        except KeyError:
            raise UnsupportedModelError(f"design column {column} is not fed by a level") from None

    @property
    def n_onehot(self) -> int:
        return self._n_onehot

    def group_domain(self, position: int) -> int:
        return int(self._groups[position].columns.shape[0])


def _onehot_groups(encoder: OneHotEncoder, names: list[str], start: int) -> list[_OneHotGroup]:
    if encoder.drop_idx_ is not None or getattr(encoder, "_infrequent_enabled", False):
        raise UnsupportedModelError("one-hot encoder with dropped or infrequent categories")
    if encoder.sparse_output or np.dtype(encoder.dtype) != np.float64:
        raise UnsupportedModelError("one-hot encoder output is not dense float64")
    groups = []
    offset = start
    for name, categories in zip(names, encoder.categories_, strict=True):
        ours = _our_levels(name)
        lookup = {str(level): i for i, level in enumerate(categories)}
        columns = np.array([offset + lookup[v] if v in lookup else -1 for v in ours], np.intp)
        groups.append(_OneHotGroup(name, columns))
        offset += len(categories)
    return groups


def _our_levels(name: str) -> list[str]:
    if name == CONTRACT_INTERNET:
        return [
            f"{contract}|{internet}"
            for contract in CATEGORICAL_LEVELS["Contract"]
            for internet in CATEGORICAL_LEVELS["InternetService"]
        ]
    if name not in CATEGORICAL_LEVELS:
        raise UnsupportedModelError(f"{name} is not a categorical feature")
    return list(CATEGORICAL_LEVELS[name])


def _numeric_values(batch: FeatureBatch) -> dict[str, np.ndarray]:
    """Raw and engineered numeric features, as float64, computed as feature_matrix does."""
    values = numeric_engineered(batch.tenure, batch.monthly_charges, batch.total_charges)
    # Small whole numbers, so any summation order gives the same float as feature_matrix.
    values["n_addons"] = (batch.codes[:, _ADDON_POSITIONS] == _YES).sum(axis=1).astype(float)
    values["auto_pay"] = _AUTO_PAY_BY_CODE[batch.codes[:, _PAYMENT]]
    values["SeniorCitizen"] = batch.senior_citizen.astype(float)
    values["tenure"] = batch.tenure.astype(float)
    values["MonthlyCharges"] = batch.monthly_charges.astype(float)
    values["TotalCharges"] = batch.total_charges.astype(float)
    return values


# -- classifiers ----------------------------------------------------------------------------
def _compile_classifier(classifier: Any, pipe: CompiledPipeline) -> _Probability:
    if list(getattr(classifier, "classes_", [])) not in ([0, 1], [False, True]):
        raise UnsupportedModelError("not a binary classifier with classes [0, 1]")
    if isinstance(classifier, LogisticRegression):
        return _logistic(classifier)
    if isinstance(classifier, HistGradientBoostingClassifier):
        return _TreeTables(classifier, pipe)
    if isinstance(classifier, VotingClassifier):
        if classifier.voting != "soft" or classifier.weights is not None:
            raise UnsupportedModelError("only an unweighted soft vote is compiled")
        members = [_compile_classifier(member, pipe) for member in classifier.estimators_]
        return _soft_vote(members)
    raise UnsupportedModelError(f"unsupported classifier {type(classifier).__name__}")


def _logistic(model: LogisticRegression) -> _Probability:
    coef_t = model.coef_.T
    intercept = model.intercept_
    if coef_t.shape[1] != 1:
        raise UnsupportedModelError("multi-class logistic regression")

    def probability(design: np.ndarray, groups: np.ndarray) -> np.ndarray:
        # LogisticRegression._predict_proba_lr: decision_function, then expit in place.
        scores = (design @ coef_t + intercept).reshape(-1)
        return np.asarray(expit(scores, out=scores))

    return probability


def _soft_vote(members: Sequence[_Probability]) -> _Probability:
    count = len(members)

    def probability(design: np.ndarray, groups: np.ndarray) -> np.ndarray:
        # np.average(..., axis=0) without weights: a sum along the first axis, then / count.
        total = members[0](design, groups).copy()
        for member in members[1:]:
            total += member(design, groups)
        return np.asarray(np.true_divide(total, count))

    return probability


@dataclass
class _Code:
    """An integer code per row that decides some splits: a one-hot group or a numeric bin."""

    kind: str  # "group" or "numeric"
    source: int  # group position or design column
    thresholds: np.ndarray  # numeric: sorted distinct thresholds over all trees
    domain: int


class _TreeTables:
    """Histogram gradient boosting (numeric splits only) as per-tree leaf lookup tables.

    Each tree's leaf depends on a few codes; its table holds the leaf value for every
    combination of them. A row's per-tree table index is a sum of per-code contributions,
    gathered from a few packed tables (codes multiplied into groups of bounded size), so a
    batch needs a handful of array operations instead of one call per tree.
    """

    def __init__(self, model: HistGradientBoostingClassifier, pipe: CompiledPipeline) -> None:
        if getattr(model, "is_categorical_", None) is not None:
            raise UnsupportedModelError("categorical splits")
        if model.n_trees_per_iteration_ != 1:
            raise UnsupportedModelError("more than one tree per iteration")
        baseline = np.asarray(model._baseline_prediction, dtype=np.float64).ravel()
        self._baseline = float(baseline[0])
        trees = [iteration[0].nodes for iteration in model._predictors]
        codes: dict[tuple[str, int], _Code] = {}
        # First pass: which codes exist, and every numeric threshold per column.
        numeric_thresholds: dict[int, set[float]] = {}
        for nodes in trees:
            for node in nodes:
                if node["is_leaf"]:
                    continue
                if node["is_categorical"]:
                    raise UnsupportedModelError("categorical split")
                column = int(node["feature_idx"])
                if column < pipe.n_onehot:
                    group, _ = pipe.onehot_source(column)
                    codes[("group", group)] = _Code(
                        "group", group, np.empty(0), pipe.group_domain(group)
                    )
                else:
                    numeric_thresholds.setdefault(column, set()).add(float(node["num_threshold"]))
        for column, values in numeric_thresholds.items():
            thresholds = np.array(sorted(values), dtype=np.float64)
            codes[("numeric", column)] = _Code("numeric", column, thresholds, thresholds.size + 1)
        self._codes = list(codes.values())
        index = {key: i for i, key in enumerate(codes)}

        # Second pass: each tree's table over the codes it uses.
        contributions = [np.zeros((c.domain, len(trees)), dtype=np.int64) for c in self._codes]
        leaf_tables: list[np.ndarray] = []
        offset = 0
        for t, nodes in enumerate(trees):
            used: list[int] = []
            local_thresholds: dict[int, np.ndarray] = {}
            for node in nodes:
                if node["is_leaf"]:
                    continue
                column = int(node["feature_idx"])
                if column < pipe.n_onehot:
                    key = index[("group", pipe.onehot_source(column)[0])]
                else:
                    key = index[("numeric", column)]
                    local_thresholds.setdefault(key, np.empty(0))
                    local_thresholds[key] = np.union1d(
                        local_thresholds[key], [float(node["num_threshold"])]
                    )
                if key not in used:
                    used.append(key)
            domains = [
                local_thresholds[k].size + 1 if k in local_thresholds else self._codes[k].domain
                for k in used
            ]
            strides: list[int] = [int(x) for x in np.cumprod([1, *domains[:-1]])] if used else []
            size = int(np.prod(domains)) if used else 1
            table = np.empty(size, dtype=np.float64)
            plan = _node_plan(nodes, pipe, index, local_thresholds)
            for combo in itertools.product(*(range(d) for d in domains)):
                local = dict(zip(used, combo, strict=True))
                flat = sum(int(s) * c for s, c in zip(strides, combo, strict=True))
                table[flat] = _leaf(plan, local)
            for k, stride in zip(used, strides, strict=True):
                code = self._codes[k]
                if k in local_thresholds:
                    # Global bin -> how many of this tree's thresholds lie below the value.
                    member = np.isin(code.thresholds, local_thresholds[k])
                    local_bin = np.concatenate([[0], np.cumsum(member)])
                else:
                    local_bin = np.arange(code.domain)
                contributions[k][:, t] = int(stride) * local_bin
            contributions[0][:, t] += offset if self._codes else 0
            leaf_tables.append(table)
            offset += size
        self._leaves = np.concatenate(leaf_tables) if leaf_tables else np.empty(0)
        self._offsets_without_codes = np.cumsum([0, *[t.size for t in leaf_tables[:-1]]])
        self._n_trees = len(trees)
        self._packs = _pack(self._codes, contributions)

    def codes_for(self, design: np.ndarray, groups: np.ndarray) -> list[np.ndarray]:
        out = []
        for code in self._codes:
            if code.kind == "group":
                out.append(groups[:, code.source])
            else:
                out.append(np.searchsorted(code.thresholds, design[:, code.source], side="left"))
        return out

    def raw(self, design: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """The raw score: baseline, then each tree's leaf added in order."""
        n = design.shape[0]
        index: np.ndarray = np.broadcast_to(self._offsets_without_codes, (n, self._n_trees))
        if self._codes:
            codes = self.codes_for(design, groups)
            for position, (members, radices, table) in enumerate(self._packs):
                packed = codes[members[0]].astype(np.intp, copy=True)
                for member, radix in zip(members[1:], radices[1:], strict=True):
                    packed += codes[member] * radix
                part = table[packed]  # (rows, trees): one contiguous row per code
                if position == 0:
                    index = part
                else:
                    index += part
        # Sum in scikit-learn's order, ((b + v1) + v2) + ..., one tree after the other.
        if n >= LOOP_SUM_MIN_ROWS:
            # Tree-major leaves: 150 whole-row additions beat a cumsum across each row.
            by_tree = self._leaves[index.T]
            total: np.ndarray = by_tree[0] + self._baseline
            for row in by_tree[1:]:
                total += row
            return total
        leaves = self._leaves[index]
        leaves[:, 0] += self._baseline
        return np.asarray(np.cumsum(leaves, axis=1)[:, -1])  # sequential by definition

    def __call__(self, design: np.ndarray, groups: np.ndarray) -> np.ndarray:
        raw = self.raw(design, groups)
        return np.asarray(expit(raw, out=raw))


def _node_plan(
    nodes: np.ndarray,
    pipe: CompiledPipeline,
    index: dict[tuple[str, int], int],
    local_thresholds: dict[int, np.ndarray],
) -> list[tuple[Any, ...]]:
    """Per node: ("leaf", value) or ("split", code, is_group, level, threshold, k, left, right)."""
    plan: list[tuple[Any, ...]] = []
    for node in nodes:
        if node["is_leaf"]:
            plan.append(("leaf", float(node["value"])))
            continue
        column = int(node["feature_idx"])
        threshold = float(node["num_threshold"])
        left, right = int(node["left"]), int(node["right"])
        if column < pipe.n_onehot:
            group, level = pipe.onehot_source(column)
            plan.append(("split", index[("group", group)], True, level, threshold, 0, left, right))
        else:
            key = index[("numeric", column)]
            k = int(np.searchsorted(local_thresholds[key], threshold))
            plan.append(("split", key, False, 0, threshold, k, left, right))
    return plan


def _leaf(plan: list[tuple[Any, ...]], local: dict[int, int]) -> float:
    """Walk one tree for one combination of local codes, as the Cython predictor would."""
    step = plan[0]
    while step[0] == "split":
        _, key, is_group, level, threshold, k, left, right = step
        if is_group:
            # The one-hot column is 1.0 for its level, else 0.0; left when value <= threshold.
            go_left = (1.0 if local[key] == level else 0.0) <= threshold
        else:
            # local bin b = how many of the tree's thresholds lie below x; x <= t_k iff b <= k
            go_left = local[key] <= k
        step = plan[left if go_left else right]
    return float(step[1])


def _pack(
    codes: list[_Code], contributions: list[np.ndarray]
) -> list[tuple[list[int], list[int], np.ndarray]]:
    """Multiply codes into groups of at most MAX_GROUP_DOMAIN combinations, one table each."""
    packs: list[tuple[list[int], list[int], np.ndarray]] = []
    members: list[int] = []
    radices: list[int] = []
    domain = 1
    for k, code in enumerate(codes):
        if members and domain * code.domain > MAX_GROUP_DOMAIN:
            packs.append((members, radices, _pack_table(members, radices, domain, contributions)))
            members, radices, domain = [], [], 1
        members.append(k)
        radices.append(domain)
        domain *= code.domain
    if members:
        packs.append((members, radices, _pack_table(members, radices, domain, contributions)))
    return packs


def _pack_table(
    members: list[int], radices: list[int], domain: int, contributions: list[np.ndarray]
) -> np.ndarray:
    packed = np.arange(domain)
    table = np.zeros((domain, contributions[members[0]].shape[1]), dtype=np.int64)
    for member, radix in zip(members, radices, strict=True):
        digit = (packed // radix) % contributions[member].shape[0]
        table += contributions[member][digit]
    if table.max(initial=0) < np.iinfo(np.int32).max:
        return table.astype(np.int32)
    return table
