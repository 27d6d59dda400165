"""``predict --engine spark`` against ``--engine pandas``: the same rows, the same bits.

The whole dataset runs on a real standalone cluster (a master and two workers from the
spark_cluster fixture) from a directory of partitioned CSV parts with a few bad rows; a
generated 2M-row Parquet file runs on ``local[2]``. Each Spark run is its own
``churnstream predict`` process, as a user (or spark-submit) would start it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench.spark import resample, write_parquet

from churnstream.data import REJECT_REASON_COLUMN, load_dataset, read_table
from churnstream.model.scorer import Scorer
from churnstream.predict import predict_file
from tests.integration.spark_cluster import EXECUTOR_MEMORY, SparkCluster

pytest.importorskip("pyspark")
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

CHURNSTREAM = str(Path(sys.executable).with_name("churnstream"))
GENERATED_ROWS = 2_000_000
BAD_ROWS = {"tenure": "-3", "Contract": "Weekly", "MonthlyCharges": "lots"}


def run_predict(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed argv
        [CHURNSTREAM, "predict", *args], capture_output=True, text=True, timeout=1700
    )


def bits(values: pd.Series) -> np.ndarray:
    return values.to_numpy(dtype=np.float64).view(np.int64)


def by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("customerID", kind="stable").reset_index(drop=True)


def test_cluster_scores_partitioned_csv_like_pandas(
    spark_cluster: SparkCluster, dataset_path: Path, model_dir: Path, tmp_path: Path
) -> None:
    raw = read_table(dataset_path)
    bad = raw.head(len(BAD_ROWS)).copy()
    for row, (column, value) in enumerate(BAD_ROWS.items()):
        bad.iloc[row, bad.columns.get_loc(column)] = value
    bad["customerID"] = [f"9999-BADR{c}" for c in "ABC"]
    whole = pd.concat([raw, bad], ignore_index=True)
    # The same rows as a directory of parts, partitioned by day as an export would be.
    parts = tmp_path / "in"
    for day, chunk in enumerate(np.array_split(np.arange(len(whole)), 2)):
        folder = parts / f"day=2026-11-2{day}"
        folder.mkdir(parents=True)
        whole.iloc[chunk].to_csv(folder / "part-0.csv", index=False)

    # Spark scores each part as its own Arrow batch; pandas scores each part file whole.
    scorer = Scorer.load(model_dir)
    runs = [
        predict_file(part, tmp_path / f"pandas-{i}.parquet", scorer)
        for i, part in enumerate(sorted(parts.rglob("*.csv")))
    ]
    done = run_predict(
        "--engine", "spark", "--master", spark_cluster.master_url,
        "--spark-conf", f"spark.executor.memory={EXECUTOR_MEMORY}",
        "--spark-conf", "spark.cores.max=2",
        "--input", str(parts), "--output", str(tmp_path / "out.parquet"),
        "--model-path", str(model_dir),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"scored {len(raw)} rows, rejected {len(bad)}" in done.stdout

    out = tmp_path / "out.parquet"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "day=2026-11-20",
        "day=2026-11-21",
    ]
    got = by_id(pd.read_parquet(out))
    want = by_id(pd.concat([pd.read_parquet(r.output) for r in runs], ignore_index=True))
    assert got["day"].astype(str).isin(["2026-11-20", "2026-11-21"]).all()
    got = got.drop(columns="day")
    assert list(got.columns) == list(want.columns)
    assert np.array_equal(bits(got["churn_probability"]), bits(want["churn_probability"]))
    assert got.astype(object).equals(want.astype(object))

    rejects = by_id(pd.read_parquet(tmp_path / "out.rejects.parquet")).drop(columns="day")
    want_rejects = by_id(
        pd.concat([pd.read_parquet(r.rejects) for r in runs if r.rejects], ignore_index=True)
    )
    assert rejects[REJECT_REASON_COLUMN].tolist() == want_rejects[REJECT_REASON_COLUMN].tolist()
    assert rejects.astype(object).equals(want_rejects.astype(object))


def test_whole_dataset_gives_the_same_bits_on_local2(
    dataset_path: Path, model_dir: Path, tmp_path: Path
) -> None:
    expected = predict_file(dataset_path, tmp_path / "pandas.parquet", Scorer.load(model_dir))
    done = run_predict(
        "--engine", "spark", "--master", "local[2]",
        "--input", str(dataset_path), "--output", str(tmp_path / "spark.parquet"),
        "--model-path", str(model_dir),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    got = by_id(pd.read_parquet(tmp_path / "spark.parquet"))
    want = by_id(pd.read_parquet(expected.output))
    assert list(got.columns) == list(want.columns)
    assert np.array_equal(bits(got["churn_probability"]), bits(want["churn_probability"]))
    assert got.astype(object).equals(want.astype(object))


def test_generated_2m_rows_give_the_same_bits_on_local2(
    dataset_path: Path, model_dir: Path, tmp_path: Path
) -> None:
    source = write_parquet(
        resample(load_dataset(dataset_path), GENERATED_ROWS), tmp_path / "customers.parquet"
    )
    scorer = Scorer.load(model_dir)
    # Without reasons: the probabilities are what is compared, and the pandas engine's
    # reasons for 2M rows at once take more memory than a CI machine has (OOM-killed at 22 GB).
    expected = predict_file(source, tmp_path / "pandas.parquet", scorer, reasons=False)
    assert expected.scored == GENERATED_ROWS
    done = run_predict(
        "--engine", "spark", "--master", "local[2]", "--no-reasons",
        "--input", str(source), "--output", str(tmp_path / "spark.parquet"),
        "--model-path", str(model_dir),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"scored {GENERATED_ROWS} rows, rejected 0" in done.stdout
    assert not (tmp_path / "spark.rejects.parquet").exists()
    columns = ["customerID", "churn_probability", "prediction", "model_version"]
    got = by_id(pd.read_parquet(tmp_path / "spark.parquet", columns=columns))
    want = by_id(pd.read_parquet(expected.output, columns=columns))
    # Text columns compared as values: pandas writes its "string" dtype into the file's
    # metadata, Spark's parts read back as plain str.
    assert got["customerID"].astype(object).equals(want["customerID"].astype(object))
    assert np.array_equal(bits(got["churn_probability"]), bits(want["churn_probability"]))
    assert got["prediction"].astype(object).equals(want["prediction"].astype(object))
