"""Load a trained model once and score whole batches with one vectorised call.

What the scoring core calls as its model (:meth:`Scorer.predict_features`), for the Kafka
scorer, ``churnstream predict`` and the REST API; :meth:`Scorer.load` does every check up
front (files, trusted types, hash, metadata, a smoke prediction, the exported arrays or, for
a version without them, the compiled arrays against the pipeline), so scoring itself only
validates that the frame has the feature columns. The scorer process (``consume``) loads
only the arrays, without scikit-learn: :class:`churnstream.model.lean.LeanScorer`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from churnstream.exceptions import ModelError, ModelLoadError
from churnstream.model import artifacts, skops_io
from churnstream.model.arrays import UnsupportedModelError
from churnstream.model.compile import compile_pipeline
from churnstream.model.export import (
    CHECK_ROWS,
    CHECK_SEED,
    CHECK_SMALL_ROWS,
    synthetic_features,
)
from churnstream.model.feature_batch import FeatureBatch
from churnstream.model.features import to_frame
from churnstream.model.lean import LoadedVersion, open_version, read_compiled
from churnstream.model.pipeline import churn_probabilities
from churnstream.schemas import FEATURE_COLUMNS

logger = logging.getLogger(__name__)

# The smoke prediction must reproduce training's probability to this absolute tolerance;
# looser than float noise from BLAS differences, far tighter than any real model change.
SMOKE_TOLERANCE = 1e-6


class Scorer(LoadedVersion):
    """A loaded model version: ``predict_features`` (and ``predict_proba``) on batches.

    Labels, bodies and headers are the scoring core's (:mod:`churnstream.scoring`); this
    class only turns features into probabilities, and knows the threshold and version.
    """

    def __init__(self, pipeline: Pipeline, metadata: dict[str, Any], path: Path) -> None:
        super().__init__(metadata, path)
        self.pipeline = pipeline
        self._columns = list(FEATURE_COLUMNS)
        #: The pipeline evaluated directly (bit-identical), or None: see enable_compiled().
        self.compiled = None

    @classmethod
    def load(cls, path: Path | str) -> Scorer:
        """Load from the models root (follows ``latest``) or from a version directory.

        Raises ModelLoadError, with one line saying what is wrong, when the directory or a
        file is missing, the model file is corrupt, needs untrusted types or does not match
        its recorded hash, metadata.json is missing or invalid, or the smoke prediction fails.
        """
        version_dir, metadata = open_version(path)
        pipeline = skops_io.load_pipeline(version_dir, str(metadata["model_sha256"]))
        scorer = cls(pipeline, metadata, version_dir)
        scorer._smoke_test()
        scorer.enable_compiled()
        scorer._log_loaded()
        return scorer

    def _smoke_test(self) -> None:
        smoke = self.metadata["smoke"]
        try:
            row = smoke["row"]
            expected = float(smoke["probability"])
            dtypes = self.metadata["feature_schema"]["dtypes"]
            frame = pd.DataFrame({c: pd.Series([row[c]], dtype=dtypes[c]) for c in self._columns})
            got = float(self.pipeline.predict_proba(frame)[0, 1])
        except Exception as exc:  # whatever breaks here means the model is unusable
            raise ModelLoadError(
                f"{self.path}: smoke prediction failed: {type(exc).__name__}: {exc}"
            ) from exc
        if not math.isclose(got, expected, rel_tol=0.0, abs_tol=SMOKE_TOLERANCE):
            trained = self.metadata.get("library_versions", {}).get("scikit-learn", "?")
            raise ModelLoadError(
                f"{self.path}: smoke prediction gave {got:.6f}, training recorded "
                f"{expected:.6f} (trained with scikit-learn {trained}); retrain the model"
            )

    def enable_compiled(self) -> bool:
        """Use :class:`CompiledPipeline` for :meth:`predict_features` if it is exact here.

        A version exported by training (or ``churnstream model export``) brings its arrays,
        checked against the pipeline at export: they are read (sha256 checked) and used. An
        older version is compiled and checked now: the arrays must give probabilities
        identical to the pipeline's, bit for bit, on the export check's synthetic batches;
        otherwise (or for a pipeline of another shape) the pipeline itself keeps scoring,
        with a log line saying why.
        """
        block = self.metadata.get(artifacts.COMPILED_KEY)
        if isinstance(block, dict) and block.get("file"):
            self.compiled = read_compiled(self.path, self.metadata)
            return True
        try:
            compiled = compile_pipeline(self.pipeline)
            check = synthetic_features(CHECK_ROWS, CHECK_SEED)
            # A large and a small batch: the compiled model sums trees differently by size.
            checks = [check, check.take(slice(0, CHECK_SMALL_ROWS))]
            expected = np.concatenate(
                [churn_probabilities(self.pipeline, to_frame(c)) for c in checks]
            )
            got = np.concatenate([compiled.predict_proba(c) for c in checks])
        except (UnsupportedModelError, ValueError, TypeError, KeyError) as exc:
            logger.info("model %s scored by the pipeline (%s)", self.version, exc)
            self.compiled = None
            return False
        if not np.array_equal(expected, got):
            worst = float(np.max(np.abs(expected - got)))
            logger.warning(
                "compiled model differs from the pipeline by up to %.3g; using the pipeline",
                worst,
            )
            self.compiled = None
            return False
        self.compiled = compiled
        return True

    def predict_features(self, batch: FeatureBatch) -> np.ndarray:
        """Churn probability per row of decoded features; identical to :meth:`predict_proba`
        on ``to_frame(batch)``, without building that frame when the model is compiled."""
        if len(batch) == 0:
            return np.empty(0, dtype=float)
        if self.compiled is not None:
            try:
                return self.compiled.predict_proba(batch)
            except UnsupportedModelError:
                pass  # e.g. non-finite inputs: the pipeline decides what they give
        return self.predict_proba(to_frame(batch))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Churn probability per row, as float64 (each row's bits independent of the batch:
        see :func:`churnstream.model.pipeline.churn_probabilities`).

        ``frame`` holds the 19 feature columns typed as :func:`churnstream.data.validate_frame`
        makes them; other columns (customerID, Churn, ...) are ignored.
        """
        if len(frame) == 0:
            return np.empty(0, dtype=float)
        missing = [c for c in self._columns if c not in frame.columns]
        if missing:
            raise ModelError(f"cannot score: missing feature column(s) {', '.join(missing)}")
        try:
            proba = churn_probabilities(self.pipeline, frame)
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"cannot score batch of {len(frame)}: {exc}") from exc
        return np.asarray(proba, dtype=float)
