"""The exported arrays: written by training, identical to the pipeline, loaded without
scikit-learn by the scorer process, refused with one line when missing or tampered with."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.special import expit as scipy_expit
from typer.testing import CliRunner

from churnstream.cli import app
from churnstream.data import load_dataset
from churnstream.exceptions import ModelLoadError
from churnstream.model import arrays, compiled_io, small_rows
from churnstream.model.artifacts import COMPILED_FILE, COMPILED_KEY, LATEST_FILE, METADATA_FILE
from churnstream.model.compile import compile_pipeline
from churnstream.model.contributions import explainer
from churnstream.model.export import synthetic_features
from churnstream.model.feature_batch import FeatureBatch
from churnstream.model.features import from_frame, to_frame
from churnstream.model.lean import LeanScorer
from churnstream.model.pipeline import churn_probabilities
from churnstream.model.scorer import Scorer


@pytest.fixture
def models(model_dir: Path, tmp_path: Path) -> Path:
    """A copy of the session's model (trained once, by training as users run it)."""
    root = tmp_path / "models"
    shutil.copytree(model_dir, root)
    return root


def _version(models: Path) -> Path:
    return models / (models / LATEST_FILE).read_text().strip()


def _edit(models: Path, change: Any) -> None:
    path = _version(models) / METADATA_FILE
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def test_expit_is_scipys_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate(
        [
            rng.normal(0, 4, 200_000),
            rng.uniform(-800, 800, 20_000),
            [0.0, -0.0, 1e-300, -709.0, -709.9, -745.2, -1e308, 1e308, np.inf, -np.inf],
        ]
    )
    out = np.empty_like(x)
    got = compiled_io.expit(x.copy(), out=out)
    assert got is out
    assert np.array_equal(got, scipy_expit(x))
    assert np.isnan(compiled_io.expit(np.array([np.nan]))).all()
    # A few values at a time take the Python-float path: the same bits, in place too.
    small = np.concatenate([x[:2_000], x[-40:]])
    for size in (1, compiled_io.SMALL_EXPIT_VALUES):
        for start in range(0, small.size, size):
            part = small[start : start + size].copy()
            assert compiled_io.expit(part, out=part) is part
            assert np.array_equal(part, scipy_expit(small[start : start + size])), start


def test_training_exports_arrays_identical_to_the_pipeline(model_dir: Path) -> None:
    version_dir = _version(model_dir)
    metadata = json.loads((version_dir / METADATA_FILE).read_text())
    block = metadata[COMPILED_KEY]
    assert block["file"] == COMPILED_FILE
    assert (version_dir / COMPILED_FILE).is_file()
    assert len(block["sha256"]) == 64 and block["checked_rows"] > 500
    lean = LeanScorer.load(model_dir)
    pipeline = Scorer.load(model_dir).pipeline
    for rows in (1, 7, 300, 2_000):  # both ways of summing the trees
        batch = synthetic_features(rows, rows)
        expected = churn_probabilities(pipeline, to_frame(batch))  # BLAS fed in blocks
        assert np.array_equal(lean.predict_features(batch), expected)
    threshold = metadata["threshold"]["value"]
    assert (lean.version, lean.threshold) == (version_dir.name, threshold)


def test_a_row_scores_to_the_same_bits_whatever_batch_it_is_in(model_dir: Path) -> None:
    # BLAS computes the last n % 4 rows of a product with another kernel; that must not
    # reach the probabilities (a file in one call, Spark's Arrow batches and the Kafka
    # scorer's micro-batches would disagree in the last bit).
    lean = LeanScorer.load(model_dir)
    batch = synthetic_features(600, 11)
    whole = lean.predict_features(batch).view(np.int64)
    for size in range(1, 10):
        parts = [
            lean.predict_features(batch.take(slice(start, start + size)))
            for start in range(0, len(batch), size)
        ]
        assert np.array_equal(np.concatenate(parts).view(np.int64), whole), f"batches of {size}"
    # The explainer's probabilities are the same numbers, one row at a time too.
    alone = [lean.explain_features(batch.take(slice(i, i + 1))).probabilities for i in range(9)]
    assert np.array_equal(np.concatenate(alone).view(np.int64), whole[:9])


def test_a_few_rows_get_the_design_matrix_numpy_gives_them(
    model_dir: Path, dataset_path: Path
) -> None:
    # Up to SMALL_NUMERIC_ROWS rows, the numeric block is computed on Python floats.
    compiled = LeanScorer.load(model_dir).compiled
    dataset = from_frame(load_dataset(dataset_path))
    synthetic = synthetic_features(2_000, 5)
    size = arrays.SMALL_NUMERIC_ROWS
    for batch in (dataset, synthetic):
        groups = compiled.group_codes(batch)
        whole = compiled.design_matrix(batch, groups)  # numpy's path
        for start in range(0, len(batch), size):
            rows = slice(start, start + size)
            part = compiled.design_matrix(batch.take(rows), groups[rows])
            assert part.tobytes() == whole[rows].tobytes(), start
    # A tenure beyond the log1p table (the contract's bound) goes to numpy, not an error.
    odd = synthetic.take(slice(0, 1))
    odd.tenure[0] = 1_000
    assert small_rows.numeric_rows(odd, compiled.numeric) is None
    assert compiled.design_matrix(odd, compiled.group_codes(odd)).shape == (1, compiled.width)


def _small_inputs(compiled: arrays.CompiledPipeline, batch: FeatureBatch) -> Any:
    assert compiled._small_tables is not None
    return small_rows.inputs(batch, compiled._small_tables)


def test_a_few_rows_get_the_group_codes_and_design_matrix_numpy_gives_them(
    model_dir: Path, dataset_path: Path
) -> None:
    # predict_proba takes up to SMALL_NUMERIC_ROWS rows' inputs from small_rows, on Python
    # numbers: byte for byte what numpy's group_codes and design_matrix give every row.
    compiled = LeanScorer.load(model_dir).compiled
    for batch in (from_frame(load_dataset(dataset_path)), synthetic_features(2_000, 6)):
        groups = compiled.group_codes(batch)
        whole = compiled.design_matrix(batch, groups)  # numpy's path
        for size in (1, small_rows.SMALL_NUMERIC_ROWS):
            for start in range(0, len(batch), size):
                rows = slice(start, start + size)
                got = _small_inputs(compiled, batch.take(rows))
                assert got is not None, start
                assert got[0].dtype == groups.dtype and got[0].tobytes() == groups[rows].tobytes()
                assert got[1].dtype == np.float64 and got[1].tobytes() == whole[rows].tobytes()


def test_rows_that_do_not_fit_the_small_path_go_to_numpy(model_dir: Path) -> None:
    compiled = LeanScorer.load(model_dir).compiled
    assert _small_inputs(compiled, synthetic_features(1, 3)) is not None
    far = synthetic_features(1, 3)
    far.tenure[0] = 1_000  # beyond the log1p table: numpy scores it
    assert _small_inputs(compiled, far) is None
    assert compiled.predict_proba(far).shape == (1,)
    unknown = synthetic_features(1, 3)
    unknown.codes[0, 0] = 100  # a code past every table: numpy decides (it raises)
    assert _small_inputs(compiled, unknown) is None
    with pytest.raises(IndexError):
        compiled.predict_proba(unknown)
    huge = synthetic_features(1, 3)
    huge.total_charges[0] = np.inf  # non-finite feature: the pipeline must score it
    assert _small_inputs(compiled, huge) is None
    with pytest.raises(arrays.UnsupportedModelError):
        compiled.predict_proba(huge)


def test_the_file_holds_arrays_only(model_dir: Path) -> None:
    version_dir = _version(model_dir)
    with np.load(version_dir / COMPILED_FILE, allow_pickle=False) as npz:
        assert all(npz[name].dtype != object for name in npz.files)
    blob = compiled_io.to_bytes(compile_pipeline(Scorer.load(version_dir).pipeline))
    batch = synthetic_features(100, 1)
    again = compiled_io.from_bytes(blob).predict_proba(batch)
    assert np.array_equal(again, LeanScorer.load(version_dir).predict_features(batch))


def test_lean_loading_imports_no_heavy_library(model_dir: Path) -> None:
    code = (
        "import sys; from churnstream.model.lean import LeanScorer; "
        f"s = LeanScorer.load({str(model_dir)!r}); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'pandas', 'sklearn', 'scipy', 'pyarrow', 'matplotlib', 'skops'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_version_without_arrays_asks_for_model_export(models: Path) -> None:
    (_version(models) / COMPILED_FILE).unlink()
    _edit(models, lambda m: m.pop(COMPILED_KEY))
    with pytest.raises(ModelLoadError, match=r"run `churnstream model export .*` once"):
        LeanScorer.load(models)

    result = CliRunner().invoke(app, ["model", "export", str(models)])
    assert result.exit_code == 0, result.output
    assert "identical to the pipeline" in result.output
    assert LeanScorer.load(models).version == _version(models).name


def test_the_demo_exports_a_model_trained_before_exports(models: Path) -> None:
    from churnstream.ops.demo import ensure_exported

    said: list[str] = []
    assert not ensure_exported(models, say=said.append)  # already exported: nothing to do
    (_version(models) / COMPILED_FILE).unlink()
    _edit(models, lambda m: m.pop(COMPILED_KEY))
    assert ensure_exported(models, say=said.append)
    assert said == [f"model {_version(models).name} has no exported arrays: exporting them once"]
    assert LeanScorer.load(models).version == _version(models).name


def test_tampered_arrays_are_refused(models: Path) -> None:
    path = _version(models) / COMPILED_FILE
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelLoadError, match="sha256 .* metadata.json expects"):
        LeanScorer.load(models)


def test_smoke_value_mismatch_is_refused(models: Path) -> None:
    _edit(models, lambda m: m[COMPILED_KEY].update(smoke_probability=0.123))
    with pytest.raises(ModelLoadError, match="compiled arrays gave .* export recorded 0.123"):
        LeanScorer.load(models)


def test_an_export_from_before_blocked_products_still_loads(
    models: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Exports recorded the smoke row as one unblocked BLAS call gave it: ulps away, same model.
    def nudge(meta: dict[str, Any]) -> None:
        block = meta[COMPILED_KEY]
        block["smoke_probability"] = float(np.nextafter(block["smoke_probability"], 1.0))

    _edit(models, nudge)
    assert LeanScorer.load(models).version == _version(models).name
    assert "churnstream model export" in caplog.text


def test_a_model_without_a_compiled_form_is_refused_with_its_reason(models: Path) -> None:
    _edit(models, lambda m: m.update({COMPILED_KEY: {"file": None, "reason": "no trees here"}}))
    with pytest.raises(ModelLoadError, match=r"no compiled form \(no trees here\)"):
        LeanScorer.load(models)


def test_export_of_a_missing_model_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["model", "export", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: ") and len(result.output.splitlines()) == 1


def test_reasons_come_from_the_exported_arrays(model_dir: Path) -> None:
    lean, full = LeanScorer.load(model_dir), Scorer.load(model_dir)
    assert lean.explains
    batch = synthetic_features(300, 4)
    # Against the explanation of a fresh compile of the pipeline (scipy's expit).
    expected = explainer(compile_pipeline(full.pipeline))(batch)
    got = lean.explain_features(batch)
    assert got.base == expected.base
    assert np.array_equal(got.values, expected.values)
    assert np.array_equal(got.probabilities, lean.predict_features(batch))
