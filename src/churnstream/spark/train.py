"""``churnstream train --engine spark``: the replaced system's Spark ML pipeline, made sound.

The replaced system trained StringIndexer + OneHotEncoder + VectorAssembler + StandardScaler
+ RandomForest on a random 80/20 split and reported areaUnderROC only. This trainer keeps
that pipeline and changes what made its figures weak (docs/spark.md says why):

- the held-out rows are the scikit-learn trainer's own (:func:`held_out_split`), so the two
  engines are compared on the same customers;
- the threshold is chosen as scikit-learn's is, on out-of-fold probabilities of the same
  stratified k-fold CV of the training part; the held-out rows choose nothing;
- ROC AUC, PR AUC, Brier, the thresholded metrics and the calibration plot come from the
  same functions (:mod:`churnstream.model.evaluate`, :mod:`churnstream.model.report`) on the
  collected probabilities;
- a larger, regularised forest than Spark's defaults (20 trees of depth 5).

The model version holds the saved ``PipelineModel`` (``spark_model/``) and a metadata.json of
the usual kind with ``"engine": "spark"``. ``models/latest`` is left alone: the streaming
scorer, the API and ``predict --engine pandas`` serve scikit-learn models only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from churnstream.model import artifacts, report
from churnstream.model.evaluate import choose_threshold, ranking_scores, summarize_folds
from churnstream.model.result import TrainResult
from churnstream.model.train import (
    TrainRun,
    cv_folds_of,
    held_out_split,
    load_training_data,
    new_version,
    require_both_classes,
    target_vector,
)
from churnstream.schemas import CATEGORICAL_LEVELS, FEATURE_COLUMNS

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

SPARK_ALGORITHM = "spark-rf"
#: The saved PipelineModel's directory inside a model version.
SPARK_MODEL_DIR = "spark_model"
ROW_COLUMN = "_row"
FOLD_COLUMN = "_fold"
LABEL_COLUMN = "_label"
WEIGHT_COLUMN = "_weight"
PROBABILITY_COLUMN = "_probability"
#: Fold number of the held-out rows, which no CV fold uses.
HELD_OUT_FOLD = -1
CATEGORICAL: tuple[str, ...] = tuple(c for c in FEATURE_COLUMNS if c in CATEGORICAL_LEVELS)
NUMERIC: tuple[str, ...] = tuple(c for c in FEATURE_COLUMNS if c not in CATEGORICAL_LEVELS)


@dataclass(frozen=True)
class ForestParams:
    """RandomForestClassifier settings; ``class_weighting`` weighs each class to half."""

    num_trees: int = 300
    max_depth: int = 8
    min_instances_per_node: int = 5
    subsampling_rate: float = 0.8
    feature_subset_strategy: str = "sqrt"
    class_weighting: bool = False


#: What the replaced system ran: Spark's defaults.
REPLACED_PARAMS = ForestParams(
    num_trees=20,
    max_depth=5,
    min_instances_per_node=1,
    subsampling_rate=1.0,
    feature_subset_strategy="auto",
)


def build_pipeline(params: ForestParams, seed: int) -> Any:
    """StringIndexer + OneHotEncoder + VectorAssembler + StandardScaler + RandomForest.

    Indexing is alphabetical (not by frequency) so the same levels get the same indices on
    any sample; unseen levels get their own index instead of failing the job.
    """
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import RandomForestClassifier
    from pyspark.ml.feature import OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler

    indexed = [f"{c}_idx" for c in CATEGORICAL]
    encoded = [f"{c}_ohe" for c in CATEGORICAL]
    forest = RandomForestClassifier(
        featuresCol="_features",
        labelCol=LABEL_COLUMN,
        probabilityCol=PROBABILITY_COLUMN,
        rawPredictionCol="_raw",
        predictionCol="_prediction",
        numTrees=params.num_trees,
        maxDepth=params.max_depth,
        minInstancesPerNode=params.min_instances_per_node,
        subsamplingRate=params.subsampling_rate,
        featureSubsetStrategy=params.feature_subset_strategy,
        seed=seed,
    )
    if params.class_weighting:
        forest = forest.setWeightCol(WEIGHT_COLUMN)
    return Pipeline(
        stages=[
            StringIndexer(
                inputCols=list(CATEGORICAL),
                outputCols=indexed,
                handleInvalid="keep",
                stringOrderType="alphabetAsc",
            ),
            OneHotEncoder(inputCols=indexed, outputCols=encoded, handleInvalid="keep"),
            VectorAssembler(inputCols=[*NUMERIC, *encoded], outputCol="_assembled"),
            StandardScaler(inputCol="_assembled", outputCol="_features"),
            forest,
        ]
    )


def probabilities(model: PipelineModel, frame: DataFrame) -> pd.DataFrame:
    """``ROW_COLUMN`` and the churn probability (``p``) of every row of ``frame``."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql.functions import col

    scored = model.transform(frame).select(
        ROW_COLUMN, vector_to_array(col(PROBABILITY_COLUMN))[1].alias("p")
    )
    return scored.toPandas()


def _proba_at(scored: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """The probabilities of ``rows`` (positions in the training frame), in that order."""
    by_row = pd.Series(scored["p"].to_numpy(dtype=np.float64), index=scored[ROW_COLUMN])
    return by_row.loc[rows].to_numpy(dtype=np.float64)


def spark_frame(
    spark: SparkSession, features: pd.DataFrame, y: np.ndarray, folds: np.ndarray
) -> DataFrame:
    """The training frame in Spark: features, label, class weight, row and fold numbers."""
    frame = features.loc[:, list(FEATURE_COLUMNS)].reset_index(drop=True).copy()
    positives = max(int(y.sum()), 1)
    negatives = max(len(y) - positives, 1)
    frame[LABEL_COLUMN] = y.astype(np.float64)
    # Each class weighs half of the total, as scikit-learn's class_weight="balanced".
    frame[WEIGHT_COLUMN] = np.where(y == 1, len(y) / (2.0 * positives), len(y) / (2.0 * negatives))
    frame[ROW_COLUMN] = np.arange(len(frame), dtype=np.int64)
    frame[FOLD_COLUMN] = folds.astype(np.int64)
    return spark.createDataFrame(frame)


@dataclass(frozen=True)
class SparkTrainResult:
    """A fitted PipelineModel with what was measured on the way, plus the baseline."""

    result: TrainResult
    model: Any
    replaced: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def train_spark_model(
    spark: SparkSession,
    frame: pd.DataFrame,
    *,
    random_state: int = 42,
    test_size: float = 0.2,
    cv_folds: int = 5,
    params: ForestParams | None = None,
) -> SparkTrainResult:
    """Split as the scikit-learn trainer does, cross-validate, fit, evaluate, and measure the
    replaced system's configuration on the same rows and on its own random split."""
    params = params or ForestParams()
    y = target_vector(frame)
    require_both_classes(y, cv_folds)
    features = frame.loc[:, list(FEATURE_COLUMNS)].reset_index(drop=True)
    train_idx, test_idx = held_out_split(y, test_size, random_state)
    y_train = y[train_idx]
    folds = np.full(len(y), HELD_OUT_FOLD, dtype=np.int64)
    for number, (_, val_idx) in enumerate(cv_folds_of(y_train, cv_folds, random_state)):
        folds[train_idx[val_idx]] = number
    data = spark_frame(spark, features, y, folds).cache()
    data.count()
    training = data.where(f"{FOLD_COLUMN} != {HELD_OUT_FOLD}")
    held_out = data.where(f"{FOLD_COLUMN} = {HELD_OUT_FOLD}")
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    oof_scored = []
    fold_scores = []
    for number in range(cv_folds):
        model = build_pipeline(params, random_state).fit(
            training.where(f"{FOLD_COLUMN} != {number}")
        )
        scored = probabilities(model, training.where(f"{FOLD_COLUMN} = {number}"))
        oof_scored.append(scored)
        rows = scored[ROW_COLUMN].to_numpy()
        fold_scores.append(ranking_scores(y[rows], scored["p"].to_numpy(dtype=np.float64)))
    seconds["cv"] = time.perf_counter() - started
    oof = _proba_at(pd.concat(oof_scored), train_idx)
    cv = summarize_folds(fold_scores)
    threshold = choose_threshold(y_train, oof)

    started = time.perf_counter()
    fitted = build_pipeline(params, random_state).fit(training)
    seconds["fit"] = time.perf_counter() - started
    result = TrainResult.held_out(
        features,
        y,
        (train_idx, test_idx),
        # A Spark PipelineModel where scikit-learn's trainer keeps its Pipeline: the metadata
        # builder never looks at it, and the version writer here saves it Spark's way.
        pipeline=cast(Any, fitted),
        algorithm=SPARK_ALGORITHM,
        params=asdict(params),
        random_state=random_state,
        test_size=test_size,
        cv_folds=cv_folds,
        cv=cv,
        oof_proba=oof,
        threshold=threshold,
        proba_test=_proba_at(probabilities(fitted, held_out), test_idx),
        seconds=seconds,
    )
    logger.info(
        "Spark: CV ROC AUC %.4f; held-out ROC AUC %.4f, PR AUC %.4f, Brier %.4f",
        cv["roc_auc_mean"],
        result.test_metrics["roc_auc"],
        result.test_metrics["pr_auc"],
        result.test_metrics["brier"],
    )
    replaced = replaced_system_figures(data, training, held_out, y, test_idx, random_state)
    data.unpersist()
    return SparkTrainResult(result, fitted, replaced, seconds)


def replaced_system_figures(
    data: DataFrame,
    training: DataFrame,
    held_out: DataFrame,
    y: np.ndarray,
    test_idx: np.ndarray,
    seed: int,
) -> dict[str, Any]:
    """The replaced system's pipeline as it ran (Spark's default forest, a random 80/20
    split, areaUnderROC), and the same configuration on our held-out rows."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator

    started = time.perf_counter()
    fit_part, test_part = data.randomSplit([0.8, 0.2], seed=seed)
    own = build_pipeline(REPLACED_PARAMS, seed).fit(fit_part)
    area = BinaryClassificationEvaluator(
        rawPredictionCol="_raw", labelCol=LABEL_COLUMN, metricName="areaUnderROC"
    ).evaluate(own.transform(test_part))
    same_rows = build_pipeline(REPLACED_PARAMS, seed).fit(training)
    proba = _proba_at(probabilities(same_rows, held_out), test_idx)
    y_test = y[test_idx]
    return {
        "params": asdict(REPLACED_PARAMS),
        "own_random_split": {
            "split": f"DataFrame.randomSplit([0.8, 0.2], seed={seed})",
            "test_rows": int(test_part.count()),
            "roc_auc": float(area),
        },
        "held_out": {
            **ranking_scores(y_test, proba),
            "rows": len(test_idx),
        },
        "seconds": time.perf_counter() - started,
    }


@dataclass(frozen=True)
class SparkTrainRun(TrainRun):
    """What ``train --engine spark`` did: a training run, with the fitted PipelineModel and
    the replaced system's figures (``trained``)."""

    trained: SparkTrainResult


def run_spark_training(
    spark: SparkSession,
    data_path: Path,
    models_dir: Path,
    *,
    random_state: int = 42,
    test_size: float = 0.2,
    cv_folds: int = 5,
    sample: int | None = None,
    params: ForestParams | None = None,
) -> SparkTrainRun:
    """Load the CSV, train on Spark and write ``models_dir/<version>/`` (``latest`` unchanged)."""
    data = load_training_data(data_path, sample, random_state)
    trained = train_spark_model(
        spark,
        data.frame,
        random_state=random_state,
        test_size=test_size,
        cv_folds=cv_folds,
        params=params,
    )
    result = trained.result
    version, metadata = new_version(result, models_dir, data)
    metadata["engine"] = artifacts.ENGINE_SPARK
    metadata["library_versions"]["pyspark"] = spark.version
    metadata["replaced_system"] = trained.replaced

    def save(staging: Path) -> str:
        trained.model.write().save(str(staging / SPARK_MODEL_DIR))
        return SPARK_MODEL_DIR

    version_dir, written = artifacts.write_version(
        models_dir,
        version,
        save,
        metadata,
        extra_writer=lambda staging, meta: report.write_report(
            staging, meta, result.y_test, result.proba_test
        ),
    )
    logger.info("Spark model %s written to %s", version, version_dir)
    return SparkTrainRun(result, version, version_dir, metadata, written, trained)
