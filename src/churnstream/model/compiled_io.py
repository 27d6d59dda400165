"""The compiled model (:class:`~churnstream.model.arrays.CompiledPipeline`) as one ``.npz``.

Every array of the compiled form is stored under a path-like key, and its structure (which
classifier holds which arrays) as a JSON string in the ``structure`` entry, so the file is
plain arrays: :func:`numpy.load` reads it with ``allow_pickle=False``.

The logistic function is not stored: :func:`expit` here is scikit-learn's (scipy's) formula,
``1 / (1 + exp(-x))`` with the C library's ``exp``, which :func:`math.exp` calls too. numpy's
own ``exp`` differs in the last bit for a few percent of inputs, so it would break the
bit-for-bit promise; scipy is what the lean scorer must not import.

numpy only (no scikit-learn, scipy or pandas): the scorer process imports it.
"""

from __future__ import annotations

import io
import json
import logging
import math
from typing import Any

import numpy as np

from churnstream.model.arrays import (
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

logger = logging.getLogger(__name__)

#: Version of the layout below; a reader refuses any other.
COMPILED_FORMAT = 1
STRUCTURE_KEY = "structure"
#: Up to this many values, :func:`expit` computes on Python floats instead of numpy arrays.
SMALL_EXPIT_VALUES = 8
# Above this, exp(x) overflows a double (math.exp raises; C's exp gives inf).
_EXP_SAFE_MAX = 709.0


class CompiledFormatError(ValueError):
    """The bytes are not a compiled model this churnstream reads."""


def expit(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``1 / (1 + exp(-x))`` element-wise, bit-identical to ``scipy.special.expit``."""
    values = np.asarray(x, dtype=np.float64)
    if values.size <= SMALL_EXPIT_VALUES:
        # The same float operations on Python floats: for a row or two, a dozen numpy calls
        # cost more than the arithmetic.
        result = out if out is not None else np.empty_like(values)
        computed = [1.0 / (1.0 + _exp_or_inf(-v)) for v in values.ravel().tolist()]
        if result.ndim == 1:
            result[:] = computed  # cheaper than through .flat
        else:
            result.flat[:] = computed
        return result
    flat = np.negative(values).ravel()
    big = flat > _EXP_SAFE_MAX
    if big.any():
        flat = flat.copy()
        exps_big = [_exp_or_inf(v) for v in flat[big].tolist()]
        flat[big] = 0.0
    exps = np.fromiter(map(math.exp, flat.tolist()), dtype=np.float64, count=flat.size)
    if big.any():
        exps[big] = exps_big
    exps += 1.0
    result = out if out is not None else np.empty_like(values)
    np.divide(1.0, exps.reshape(values.shape), out=result)
    return result


def _exp_or_inf(value: float) -> float:
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf


def to_bytes(compiled: CompiledPipeline) -> bytes:
    """The ``.npz`` bytes of ``compiled`` (arrays plus the JSON ``structure`` entry)."""
    arrays: dict[str, np.ndarray] = {}
    for position, group in enumerate(compiled.groups):
        arrays[f"groups/{position}"] = group.columns
    if compiled.mean is not None:
        arrays["mean"] = compiled.mean
    if compiled.scale is not None:
        arrays["scale"] = compiled.scale
    structure = {
        "format": COMPILED_FORMAT,
        "groups": [group.name for group in compiled.groups],
        "n_onehot": compiled.n_onehot,
        "numeric": list(compiled.numeric),
        "classifier": _classifier_spec(compiled.classifier, "classifier", arrays),
    }
    arrays[STRUCTURE_KEY] = np.array(json.dumps(structure, sort_keys=True))
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def _classifier_spec(model: Probability, key: str, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(model, LogisticArrays):
        arrays[f"{key}/coef_t"] = model.coef_t
        arrays[f"{key}/intercept"] = model.intercept
        return {"kind": "logistic"}
    if isinstance(model, SoftVote):
        members = [
            _classifier_spec(member, f"{key}/{i}", arrays) for i, member in enumerate(model.members)
        ]
        return {"kind": "soft_vote", "members": members}
    if isinstance(model, TreeTables):
        arrays[f"{key}/baseline"] = np.array(model.baseline, dtype=np.float64)
        arrays[f"{key}/leaves"] = model.leaves
        arrays[f"{key}/offsets"] = model.offsets_without_codes
        codes = []
        for i, code in enumerate(model.codes):
            arrays[f"{key}/codes/{i}"] = code.thresholds
            codes.append({"kind": code.kind, "source": code.source, "domain": code.domain})
        packs = []
        for i, (members, radices, table) in enumerate(model.packs):
            arrays[f"{key}/packs/{i}"] = table
            packs.append({"members": list(members), "radices": list(radices)})
        spec = {"kind": "trees", "n_trees": model.n_trees, "codes": codes, "packs": packs}
        if model.paths is not None:  # the reason codes' path contributions
            arrays[f"{key}/paths/expected"] = np.array(model.paths.expected, dtype=np.float64)
            arrays[f"{key}/paths/values"] = model.paths.values
            arrays[f"{key}/paths/codes"] = model.paths.codes
            spec["paths"] = True
        return spec
    raise UnsupportedModelError(f"cannot store a {type(model).__name__}")


def from_bytes(blob: bytes) -> CompiledPipeline:
    """Rebuild what :func:`to_bytes` wrote, with :func:`expit` as the logistic function.

    Raises CompiledFormatError when the bytes are not such a file.
    """
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        structure = json.loads(str(arrays.pop(STRUCTURE_KEY)))
        if structure.get("format") != COMPILED_FORMAT:
            raise CompiledFormatError(
                f"compiled format {structure.get('format')!r}, this churnstream reads "
                f"{COMPILED_FORMAT}"
            )
        groups = [
            OneHotGroup(name, arrays[f"groups/{i}"]) for i, name in enumerate(structure["groups"])
        ]
        return CompiledPipeline(
            groups=groups,
            n_onehot=int(structure["n_onehot"]),
            numeric=[str(name) for name in structure["numeric"]],
            mean=arrays.get("mean"),
            scale=arrays.get("scale"),
            classifier=_classifier(structure["classifier"], "classifier", arrays),
        )
    except CompiledFormatError:
        raise
    except Exception as exc:  # zip, JSON, a missing key or field: all mean "not ours"
        raise CompiledFormatError(f"{type(exc).__name__}: {exc}") from exc


def _classifier(spec: dict[str, Any], key: str, arrays: dict[str, np.ndarray]) -> Probability:
    kind = spec["kind"]
    if kind == "logistic":
        return LogisticArrays(arrays[f"{key}/coef_t"], arrays[f"{key}/intercept"], expit)
    if kind == "soft_vote":
        return SoftVote(
            [_classifier(member, f"{key}/{i}", arrays) for i, member in enumerate(spec["members"])]
        )
    if kind == "trees":
        codes = [
            Code(str(c["kind"]), int(c["source"]), arrays[f"{key}/codes/{i}"], int(c["domain"]))
            for i, c in enumerate(spec["codes"])
        ]
        packs: list[Pack] = [
            (
                [int(m) for m in p["members"]],
                [int(r) for r in p["radices"]],
                arrays[f"{key}/packs/{i}"],
            )
            for i, p in enumerate(spec["packs"])
        ]
        paths = (
            TreePaths(
                float(arrays[f"{key}/paths/expected"]),
                arrays[f"{key}/paths/values"],
                arrays[f"{key}/paths/codes"],
            )
            if spec.get("paths")
            else None
        )
        return TreeTables(
            baseline=float(arrays[f"{key}/baseline"]),
            codes=codes,
            leaves=arrays[f"{key}/leaves"],
            offsets_without_codes=arrays[f"{key}/offsets"],
            n_trees=int(spec["n_trees"]),
            packs=packs,
            expit=expit,
            paths=paths,
        )
    raise CompiledFormatError(f"unknown classifier kind {kind!r}")
