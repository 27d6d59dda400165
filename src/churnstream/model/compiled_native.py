"""The compiled model's trees in Rust (``churnstream_native.Trees``), when it is built.

For one row, :meth:`churnstream.model.arrays.TreeTables.raw` is some forty small numpy calls
(a searchsorted per numeric code, a gather and an addition per packed table, a cumsum), about
half of a single record's scoring time. The native evaluator walks the same tables row by
row: integer lookups, then the leaves added one tree after the other from the baseline, as
scikit-learn orders them, so every raw score is the same float (``tests/unit/test_native.py``
holds both to that). The numpy path stays, as the fallback where the extension is not built,
and as the oracle.

Which path runs follows the scoring engine (``scoring.engine``): the scoring core's
:func:`churnstream.scoring.engine.select_engine` switches this module with :func:`use_native`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

try:
    import churnstream_native as _native
except ImportError:  # not built on this machine: the numpy path serves
    _native = None

#: The extension's tree evaluator, or None (not built, or a build from before it existed).
_TREES: Any = getattr(_native, "Trees", None)
_enabled = _TREES is not None


def available() -> bool:
    """Whether the native tree evaluator is installed."""
    return _TREES is not None


def use_native(on: bool) -> bool:
    """Evaluate trees natively (when installed) or with numpy; returns whether native is on."""
    global _enabled
    _enabled = bool(on) and _TREES is not None
    return _enabled


def native_enabled() -> bool:
    """Whether :func:`new_trees`' evaluators are used for scoring."""
    return _enabled


def new_trees(
    baseline: float,
    codes: list[tuple[bool, int, np.ndarray]],
    leaves: np.ndarray,
    offsets: np.ndarray,
    packs: list[tuple[list[int], list[int], np.ndarray]],
) -> Any:
    """A native evaluator of these tables (see :class:`churnstream.model.arrays.TreeTables`),
    or None where the extension is not installed or refuses them (logged)."""
    if _TREES is None:
        return None
    try:
        return _TREES(
            float(baseline),
            [(group, int(source), thresholds.tolist()) for group, source, thresholds in codes],
            leaves.astype(np.float64).tolist(),
            np.asarray(offsets, dtype=np.int64).tolist(),
            [
                ([int(m) for m in members], [int(r) for r in radices], int(table.shape[0]),
                 table.astype(np.int64).ravel().tolist())
                for members, radices, table in packs
            ],
        )  # fmt: skip
    except (TypeError, ValueError, OverflowError) as exc:
        logger.warning("native trees refused this model (%s); scoring them with numpy", exc)
        return None
