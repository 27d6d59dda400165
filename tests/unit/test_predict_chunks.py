"""`churnstream predict` (pandas engine) reads, scores and writes a file in chunks.

The oracle is what ``predict_file`` did before chunks: the whole file read at once, scored by
one ``score_frame`` call, and each table written whole (``to_csv`` / ``to_parquet``).
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from churnstream import predict
from churnstream.data import read_table
from churnstream.exceptions import DataError
from churnstream.model.scorer import Scorer
from churnstream.predict import DEFAULT_CHUNK_ROWS, predict_file, score_frame
from churnstream.settings import Settings
from tests.unit.test_predict import write_whole

WHOLE_FILE = 1_000_000


@pytest.fixture(scope="module")
def scorer(model_dir: Path) -> Scorer:
    return Scorer.load(model_dir)


@pytest.fixture(scope="module")
def with_rejects(dataset_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset with invalid rows: some in the first chunk, and one chunk of 1,000 rows
    (rows 2,000-2,999) with nothing valid at all."""
    lines = dataset_path.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    for i in (0, 5, 999, *range(2000, 3000), 7042):
        rows[i] = rows[i].replace(",Month-to-month,", ",Monthly,").replace(",One year,", ",1y,")
        rows[i] = rows[i].replace(",Two year,", ",2y,")
    path = tmp_path_factory.mktemp("rejects") / "with_rejects.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _as_before(source: Path, output: Path, scorer: Scorer) -> tuple[Path, Path | None]:
    """The files the whole-file predict wrote: (output, rejects or None)."""
    out, rejects = score_frame(
        read_table(source),
        scorer.predict_features,
        threshold=scorer.threshold,
        model_version=scorer.version,
        explain=scorer.explain_features if scorer.explains else None,
    )
    rejects_path = output.with_name(f"{output.stem}.rejects{output.suffix}")
    write_whole(out, output)
    if not len(rejects):
        return output, None
    write_whole(rejects, rejects_path)
    return output, rejects_path


def _input(source: Path, suffix: str) -> Path:
    if suffix == ".csv":
        return source
    path = source.with_suffix(".parquet")
    if not path.exists():
        read_table(source).to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("rejects", [False, True], ids=["dataset", "with-rejects"])
def test_chunked_files_are_those_of_the_whole_file(
    tmp_path: Path,
    scorer: Scorer,
    dataset_path: Path,
    with_rejects: Path,
    suffix: str,
    rejects: bool,
) -> None:
    source = _input(with_rejects if rejects else dataset_path, suffix)
    before, before_rejects = _as_before(source, tmp_path / f"before{suffix}", scorer)
    assert (before_rejects is not None) == rejects
    for chunk_rows in (1000, WHOLE_FILE):
        out = tmp_path / f"out-{chunk_rows}{suffix}"
        result = predict_file(source, out, scorer, chunk_rows=chunk_rows)
        expected = pd.read_csv(before) if suffix == ".csv" else pd.read_parquet(before)
        assert (result.scored, result.rejected) == (len(expected), 1004 if rejects else 0)
        assert result.churn_rate == float((expected["prediction"] == "Yes").mean())
        pairs = [(out, before)]
        if rejects:
            assert result.rejects == out.with_name(f"out-{chunk_rows}.rejects{suffix}")
            assert before_rejects is not None
            pairs.append((result.rejects, before_rejects))
        else:
            assert result.rejects is None
            assert not out.with_name(f"out-{chunk_rows}.rejects{suffix}").exists()
        for written, pinned in pairs:
            if suffix == ".csv" or chunk_rows == WHOLE_FILE:
                assert written.read_bytes() == pinned.read_bytes()
            else:
                # Parquet: the same table (schema and pandas metadata included), one row
                # group per chunk that had rows.
                assert pq.read_table(written).equals(pq.read_table(pinned), check_metadata=True)
                assert pq.ParquetFile(written).metadata.num_row_groups > 1


def test_chunk_size_is_a_setting() -> None:
    assert Settings().predict.chunk_rows == DEFAULT_CHUNK_ROWS == 50_000
    assert Settings(predict={"chunk_rows": 10}).predict.chunk_rows == 10


def _generated(tmp_path: Path, dataset_path: Path, rows: int) -> Path:
    lines = dataset_path.read_text().splitlines()
    body = (lines[1:] * (rows // (len(lines) - 1) + 1))[:rows]
    path = tmp_path / f"generated-{rows}.csv"
    path.write_text("\n".join([lines[0], *body]) + "\n")
    return path


def test_memory_is_one_chunk_whatever_the_file_size(
    tmp_path: Path, scorer: Scorer, dataset_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunk_rows, small, large = 1_000, 2_000, 8_000
    scored_sizes: list[int] = []

    def counting(raw: pd.DataFrame, *args: object, **kwargs: object) -> object:
        scored_sizes.append(len(raw))
        return score_frame(raw, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(predict, "score_frame", counting)
    peaks = {}
    # A first run pays for lazy, one-off allocations (model caches), which are not per row.
    predict_file(_generated(tmp_path, dataset_path, 100), tmp_path / "warm.csv", scorer)
    for rows in (small, large):
        source = _generated(tmp_path, dataset_path, rows)
        scored_sizes.clear()
        tracemalloc.start()
        try:
            result = predict_file(
                source, tmp_path / "out.csv", scorer, reasons=False, chunk_rows=chunk_rows
            )
            peaks[rows] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert result.scored == rows
        assert scored_sizes == [chunk_rows] * (rows // chunk_rows)
    # Four times the rows, (nearly) the same peak: what is held is one chunk, not the file.
    # Read whole, the peak grows with the file (about 4x here).
    assert peaks[large] < 1.5 * peaks[small], peaks


def test_a_file_that_breaks_midway_leaves_the_old_output(
    tmp_path: Path, scorer: Scorer, dataset_path: Path
) -> None:
    lines = dataset_path.read_text().splitlines()[:3001]
    lines[2500] += ",two,more"  # a parse error in the third 1,000-row chunk
    source = tmp_path / "broken.csv"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    out.write_text("the previous run\n")
    with pytest.raises(DataError, match="cannot read"):
        predict_file(source, out, scorer, chunk_rows=1000)
    assert out.read_text() == "the previous run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.csv", "out.csv"]
