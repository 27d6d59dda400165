"""Read a fitted scikit-learn pipeline into the arrays of :mod:`churnstream.model.arrays`.

Used once, when :class:`~churnstream.model.scorer.Scorer` loads a model. Anything but the
shapes :func:`churnstream.model.pipeline.build_pipeline` makes (another classifier,
categorical splits, a changed preprocessing step) is refused with UnsupportedModelError, and
the scorer then keeps using the pipeline. The scorer also checks, at load, that both give
identical probabilities.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from churnstream.model.arrays import (
    CONTRACT_INTERNET,
    Code,
    CompiledPipeline,
    LogisticArrays,
    OneHotGroup,
    Pack,
    Probability,
    SoftVote,
    TreePaths,
    TreeTables,
    UnsupportedModelError,
)
from churnstream.model.feature_batch import MODEL_COLUMNS
from churnstream.model.features import feature_matrix
from churnstream.schemas import CATEGORICAL_LEVELS

logger = logging.getLogger(__name__)

# scikit-learn's own logistic function (scipy ships no type stubs here, hence the lookup).
expit: Any = importlib.import_module("scipy.special").expit

#: Largest product of code domains packed into one lookup group (rows of a group's table).
MAX_GROUP_DOMAIN = 2048


@dataclass
class _Layout:
    """Which design column each one-hot level sets: what the classifier compilers need."""

    groups: list[OneHotGroup]
    n_onehot: int
    sources: dict[int, tuple[int, int]] = field(init=False)

    def __post_init__(self) -> None:
        self.sources = {
            int(column): (position, code)
            for position, group in enumerate(self.groups)
            for code, column in enumerate(group.columns)
            if column >= 0
        }

    def onehot_source(self, column: int) -> tuple[int, int]:
        """(group position, our level code) that sets design ``column`` to 1.0."""
        try:
            return self.sources[column]
        except KeyError:
            raise UnsupportedModelError(f"design column {column} is not fed by a level") from None

    def group_domain(self, position: int) -> int:
        return int(self.groups[position].columns.shape[0])


def compile_pipeline(pipeline: Pipeline) -> CompiledPipeline:
    """Read a fitted ``features -> preprocess -> classifier`` pipeline.

    Raises UnsupportedModelError when any step differs from what
    :func:`churnstream.model.pipeline.build_pipeline` makes.
    """
    steps = getattr(pipeline, "steps", None)
    if not steps or len(steps) != 3:
        raise UnsupportedModelError("not a features -> preprocess -> classifier pipeline")
    (_, features), (_, preprocess), (_, classifier) = steps
    if not (isinstance(features, FunctionTransformer) and features.func is feature_matrix):
        raise UnsupportedModelError("first step is not churnstream's feature_matrix")
    if not isinstance(preprocess, ColumnTransformer) or preprocess.sparse_output_:
        raise UnsupportedModelError("second step is not a dense ColumnTransformer")
    groups: list[OneHotGroup] = []
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
            scale = np.asarray(transformer.scale_, dtype=float) if transformer.with_std else None
        else:
            raise UnsupportedModelError(f"unsupported transformer {type(transformer).__name__}")
    probability = _compile_classifier(classifier, _Layout(groups, n_onehot))
    return CompiledPipeline(groups, n_onehot, numeric, mean, scale, probability)


def _onehot_groups(encoder: OneHotEncoder, names: list[str], start: int) -> list[OneHotGroup]:
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
        groups.append(OneHotGroup(name, columns))
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


# -- classifiers ----------------------------------------------------------------------------
def _compile_classifier(classifier: Any, layout: _Layout) -> Probability:
    if list(getattr(classifier, "classes_", [])) not in ([0, 1], [False, True]):
        raise UnsupportedModelError("not a binary classifier with classes [0, 1]")
    if isinstance(classifier, LogisticRegression):
        if classifier.coef_.T.shape[1] != 1:
            raise UnsupportedModelError("multi-class logistic regression")
        return LogisticArrays(classifier.coef_.T, classifier.intercept_, expit)
    if isinstance(classifier, HistGradientBoostingClassifier):
        return _tree_tables(classifier, layout)
    if isinstance(classifier, VotingClassifier):
        if classifier.voting != "soft" or classifier.weights is not None:
            raise UnsupportedModelError("only an unweighted soft vote is compiled")
        return SoftVote([_compile_classifier(member, layout) for member in classifier.estimators_])
    raise UnsupportedModelError(f"unsupported classifier {type(classifier).__name__}")


def _tree_tables(model: HistGradientBoostingClassifier, layout: _Layout) -> TreeTables:
    """Each tree as a table of leaf values over the codes its splits read."""
    if getattr(model, "is_categorical_", None) is not None:
        raise UnsupportedModelError("categorical splits")
    if model.n_trees_per_iteration_ != 1:
        raise UnsupportedModelError("more than one tree per iteration")
    baseline = np.asarray(model._baseline_prediction, dtype=np.float64).ravel()
    trees = [iteration[0].nodes for iteration in model._predictors]
    found: dict[tuple[str, int], Code] = {}
    # First pass: which codes exist, and every numeric threshold per column.
    numeric_thresholds: dict[int, set[float]] = {}
    for nodes in trees:
        for node in nodes:
            if node["is_leaf"]:
                continue
            if node["is_categorical"]:
                raise UnsupportedModelError("categorical split")
            column = int(node["feature_idx"])
            if column < layout.n_onehot:
                group, _ = layout.onehot_source(column)
                found[("group", group)] = Code(
                    "group", group, np.empty(0), layout.group_domain(group)
                )
            else:
                numeric_thresholds.setdefault(column, set()).add(float(node["num_threshold"]))
    for column, values in numeric_thresholds.items():
        thresholds = np.array(sorted(values), dtype=np.float64)
        found[("numeric", column)] = Code("numeric", column, thresholds, thresholds.size + 1)
    codes = list(found.values())
    index = {key: i for i, key in enumerate(found)}

    # Second pass: each tree's table over the codes it uses.
    contributions = [np.zeros((c.domain, len(trees)), dtype=np.int64) for c in codes]
    leaf_tables: list[np.ndarray] = []
    paths = _PathBuilder()
    offset = 0
    for t, nodes in enumerate(trees):
        used: list[int] = []
        local_thresholds: dict[int, np.ndarray] = {}
        for node in nodes:
            if node["is_leaf"]:
                continue
            column = int(node["feature_idx"])
            if column < layout.n_onehot:
                key = index[("group", layout.onehot_source(column)[0])]
            else:
                key = index[("numeric", column)]
                local_thresholds.setdefault(key, np.empty(0))
                local_thresholds[key] = np.union1d(
                    local_thresholds[key], [float(node["num_threshold"])]
                )
            if key not in used:
                used.append(key)
        domains = [
            local_thresholds[k].size + 1 if k in local_thresholds else codes[k].domain for k in used
        ]
        strides: list[int] = [int(x) for x in np.cumprod([1, *domains[:-1]])] if used else []
        size = int(np.prod(domains)) if used else 1
        table = np.empty(size, dtype=np.float64)
        plan = _node_plan(nodes, layout, index, local_thresholds)
        paths.begin_tree(nodes, used)
        for combo in itertools.product(*(range(d) for d in domains)):
            local = dict(zip(used, combo, strict=True))
            flat = sum(int(s) * c for s, c in zip(strides, combo, strict=True))
            route = _route(plan, local)
            table[flat] = float(plan[route[-1]][1])
            paths.entry(plan, route, used)
        for k, stride in zip(used, strides, strict=True):
            code = codes[k]
            if k in local_thresholds:
                # Global bin -> how many of this tree's thresholds lie below the value.
                member = np.isin(code.thresholds, local_thresholds[k])
                local_bin = np.concatenate([[0], np.cumsum(member)])
            else:
                local_bin = np.arange(code.domain)
            contributions[k][:, t] = int(stride) * local_bin
        contributions[0][:, t] += offset if codes else 0
        leaf_tables.append(table)
        offset += size
    return TreeTables(
        baseline=float(baseline[0]),
        codes=codes,
        leaves=np.concatenate(leaf_tables) if leaf_tables else np.empty(0),
        offsets_without_codes=np.cumsum([0, *[t.size for t in leaf_tables[:-1]]]),
        n_trees=len(trees),
        packs=_pack(codes, contributions),
        expit=expit,
        paths=paths.build(float(baseline[0])),
    )


class _PathBuilder:
    """Saabas path contributions of every table entry, tree after tree (see TreePaths)."""

    def __init__(self) -> None:
        self.entries: list[list[float]] = []
        self.tree_codes: list[list[int]] = []
        self.roots: list[float] = []
        self.expected: list[float] = []

    def begin_tree(self, nodes: np.ndarray, used: list[int]) -> None:
        self.expected = _expected_values(nodes)
        self.tree_codes.append(list(used))
        self.roots.append(self.expected[0])

    def entry(self, plan: list[tuple[Any, ...]], route: list[int], used: list[int]) -> None:
        """The contributions along ``route``, the nodes one table entry's codes visit."""
        values = [0.0] * len(used)
        for node, child in itertools.pairwise(route):
            key = plan[node][1]
            values[used.index(key)] += self.expected[child] - self.expected[node]
        self.entries.append(values)

    def build(self, baseline: float) -> TreePaths:
        slots = max((len(c) for c in self.tree_codes), default=0)
        values = np.zeros((len(self.entries), slots), dtype=np.float64)
        for row, entry in enumerate(self.entries):
            values[row, : len(entry)] = entry
        codes = np.full((len(self.tree_codes), slots), -1, dtype=np.intp)
        for tree, used in enumerate(self.tree_codes):
            codes[tree, : len(used)] = used
        return TreePaths(baseline + math.fsum(self.roots), values, codes)


def _expected_values(nodes: np.ndarray) -> list[float]:
    """Each node's expected value: the training-count-weighted mean of its leaves."""
    expected = [0.0] * len(nodes)
    weight = [0.0] * len(nodes)
    # Children always come after their parent, so a reverse sweep sees them first.
    for i in range(len(nodes) - 1, -1, -1):
        node = nodes[i]
        if node["is_leaf"]:
            expected[i], weight[i] = float(node["value"]), float(node["count"])
            continue
        left, right = int(node["left"]), int(node["right"])
        weight[i] = weight[left] + weight[right]
        if weight[i] > 0:
            expected[i] = (
                weight[left] * expected[left] + weight[right] * expected[right]
            ) / weight[i]
        else:
            expected[i] = 0.5 * (expected[left] + expected[right])
    return expected


def _node_plan(
    nodes: np.ndarray,
    layout: _Layout,
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
        if column < layout.n_onehot:
            group, level = layout.onehot_source(column)
            plan.append(("split", index[("group", group)], True, level, threshold, 0, left, right))
        else:
            key = index[("numeric", column)]
            k = int(np.searchsorted(local_thresholds[key], threshold))
            plan.append(("split", key, False, 0, threshold, k, left, right))
    return plan


def _route(plan: list[tuple[Any, ...]], local: dict[int, int]) -> list[int]:
    """The nodes one combination of local codes visits, root to leaf, as the Cython
    predictor walks them; the last one is the leaf."""
    route = [0]
    step = plan[0]
    while step[0] == "split":
        _, key, is_group, level, threshold, k, left, right = step
        if is_group:
            # The one-hot column is 1.0 for its level, else 0.0; left when value <= threshold.
            go_left = (1.0 if local[key] == level else 0.0) <= threshold
        else:
            # local bin b = how many of the tree's thresholds lie below x; x <= t_k iff b <= k
            go_left = local[key] <= k
        route.append(left if go_left else right)
        step = plan[route[-1]]
    return route


def _pack(codes: list[Code], contributions: list[np.ndarray]) -> list[Pack]:
    """Multiply codes into groups of at most MAX_GROUP_DOMAIN combinations, one table each."""
    packs: list[Pack] = []
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
