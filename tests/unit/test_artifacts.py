"""The models/ layout: atomic writes, version resolution, and refusing bad or foreign files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from churnstream.exceptions import ModelError, ModelLoadError
from churnstream.model import artifacts, train
from churnstream.model.artifacts import (
    LATEST_FILE,
    METADATA_FILE,
    MODEL_FILE,
    has_model,
    new_version_name,
    read_metadata,
    resolve_version_dir,
    write_latest,
    write_version,
)
from churnstream.model.pipeline import ALGORITHMS, build_pipeline
from churnstream.model.scorer import Scorer
from churnstream.model.skops_io import TRUSTED_TYPES, load_pipeline, skops_saver
from tests.unit.test_train import small_frame, train_small

BUILT: list[str] = []


class Payload:
    """A type no churnstream model contains; building it would record a side effect."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        BUILT.append("built")
        self.__dict__.update(state)


@pytest.fixture(scope="module")
def frame(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return small_frame(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> train.TrainRun:
    return train_small(
        tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("data"), algorithm="ensemble"
    )


@pytest.fixture
def models(template: train.TrainRun, tmp_path: Path) -> Path:
    """A private copy of the trained models root, safe to damage."""
    root = tmp_path / "models"
    shutil.copytree(template.version_dir.parent, root)
    return root


def version_dir(models: Path) -> Path:
    return models / (models / LATEST_FILE).read_text().strip()


def replace_model(vdir: Path, obj: Any, *, update_hash: bool) -> None:
    blob = sio.dumps(obj)
    (vdir / MODEL_FILE).write_bytes(blob)
    if update_hash:  # an attacker who can write the model can usually write metadata too
        meta = json.loads((vdir / METADATA_FILE).read_text())
        meta["model_sha256"] = hashlib.sha256(blob).hexdigest()
        (vdir / METADATA_FILE).write_text(json.dumps(meta))


# --- trusted types ----------------------------------------------------------------------------


def test_trusted_types_are_exactly_what_our_pipelines_need(frame: pd.DataFrame) -> None:
    needed: set[str] = set()
    for algorithm in ALGORITHMS:
        pipeline = build_pipeline(algorithm).fit(frame, train.target_vector(frame))
        types = set(sio.get_untrusted_types(data=sio.dumps(pipeline)))
        assert types <= set(TRUSTED_TYPES), (algorithm, types - set(TRUSTED_TYPES))
        needed |= types
    assert needed == set(TRUSTED_TYPES)  # nothing trusted "just in case"


def test_a_pipeline_calling_os_system_is_refused(models: Path) -> None:
    evil = Pipeline([("features", FunctionTransformer(os.system)), ("clf", LogisticRegression())])
    replace_model(version_dir(models), evil, update_hash=True)
    with pytest.raises(ModelLoadError, match=r"untrusted types.*system"):
        Scorer.load(models)


def test_a_foreign_object_is_refused_before_it_is_built(models: Path) -> None:
    payload = Payload()
    payload.__dict__["x"] = 1
    replace_model(version_dir(models), payload, update_hash=True)
    BUILT.clear()
    with pytest.raises(ModelLoadError, match=r"untrusted types.*Payload"):
        Scorer.load(models)
    assert BUILT == []


def test_untrusted_wins_even_when_the_hash_is_stale(models: Path) -> None:
    replace_model(version_dir(models), Payload(), update_hash=False)
    with pytest.raises(ModelLoadError, match="untrusted types"):
        Scorer.load(models)


def test_a_truncated_file_is_corrupt(models: Path) -> None:
    path = version_dir(models) / MODEL_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="corrupt"):
        Scorer.load(models)


def test_garbage_bytes_are_corrupt(models: Path) -> None:
    (version_dir(models) / MODEL_FILE).write_bytes(b"\x80\x04 not a zip at all")
    with pytest.raises(ModelLoadError, match="corrupt"):
        Scorer.load(models)


def test_a_valid_model_from_elsewhere_fails_the_hash(models: Path, frame: pd.DataFrame) -> None:
    other = build_pipeline("logreg").fit(frame, train.target_vector(frame))
    replace_model(version_dir(models), other, update_hash=False)
    with pytest.raises(ModelLoadError, match="sha256"):
        Scorer.load(models)


def test_a_trusted_object_that_is_not_a_pipeline_is_refused(models: Path) -> None:
    replace_model(version_dir(models), {"coef": [1.0, 2.0]}, update_hash=True)
    with pytest.raises(ModelLoadError, match="not a scikit-learn Pipeline"):
        Scorer.load(models)


def test_load_pipeline_returns_a_working_pipeline(models: Path, frame: pd.DataFrame) -> None:
    vdir = version_dir(models)
    meta = read_metadata(vdir)
    pipeline = load_pipeline(vdir, meta["model_sha256"])
    assert isinstance(pipeline, Pipeline)
    assert pipeline.predict_proba(frame.iloc[:5]).shape == (5, 2)


def test_missing_model_file(models: Path) -> None:
    (version_dir(models) / MODEL_FILE).unlink()
    with pytest.raises(ModelLoadError, match="model.skops is missing"):
        Scorer.load(models)


# --- resolving a path -------------------------------------------------------------------------


def test_resolve_root_or_version_dir(models: Path) -> None:
    vdir = version_dir(models)
    assert resolve_version_dir(models) == vdir
    assert resolve_version_dir(vdir) == vdir


@pytest.mark.parametrize(
    ("latest", "message"),
    [("", "does not name"), ("../elsewhere", "does not name"), ("nope", "does not exist")],
)
def test_bad_latest_pointer(models: Path, latest: str, message: str) -> None:
    (models / LATEST_FILE).write_text(latest)
    with pytest.raises(ModelLoadError, match=message):
        resolve_version_dir(models)
    assert not has_model(models)


def test_missing_and_empty_dirs(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist.*churnstream train"):
        resolve_version_dir(tmp_path / "absent")
    with pytest.raises(ModelLoadError, match="neither"):
        resolve_version_dir(tmp_path)
    assert not has_model(tmp_path) and not has_model(tmp_path / "absent")


def test_has_model(models: Path) -> None:
    assert has_model(models) and has_model(version_dir(models))


# --- metadata ---------------------------------------------------------------------------------


def _edit_metadata(models: Path, change: Any) -> None:
    path = version_dir(models) / METADATA_FILE
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("threshold"), "lacks threshold"),
        (lambda m: m.update(format_version=99), "format_version 99"),
        (lambda m: m["threshold"].update(value=1.5), r"threshold.value"),
        (lambda m: m["threshold"].update(value="0.3"), r"threshold.value"),
    ],
)
def test_invalid_metadata(models: Path, change: Any, message: str) -> None:
    _edit_metadata(models, change)
    with pytest.raises(ModelLoadError, match=message):
        Scorer.load(models)


def test_metadata_not_json_or_missing(models: Path) -> None:
    path = version_dir(models) / METADATA_FILE
    path.write_text("{ not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        Scorer.load(models)
    path.write_text("[1, 2]")
    with pytest.raises(ModelLoadError, match="JSON object"):
        Scorer.load(models)
    path.unlink()
    with pytest.raises(ModelLoadError, match="metadata.json is missing"):
        Scorer.load(version_dir(models))


# --- writing ----------------------------------------------------------------------------------


def test_version_names_never_collide(tmp_path: Path) -> None:
    moment = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = new_version_name(tmp_path, "ensemble", moment)
    assert first == "20250102T030405Z-ensemble"
    (tmp_path / first).mkdir()
    assert new_version_name(tmp_path, "ensemble", moment) == f"{first}-2"


def test_write_version_refuses_to_overwrite(models: Path, frame: pd.DataFrame) -> None:
    pipeline = build_pipeline("logreg").fit(frame, train.target_vector(frame))
    with pytest.raises(ModelError, match="already exists"):
        write_version(models, version_dir(models).name, skops_saver(pipeline), {"version": "x"})


def test_failed_write_leaves_nothing_behind(tmp_path: Path, frame: pd.DataFrame) -> None:
    pipeline = build_pipeline("logreg").fit(frame, train.target_vector(frame))

    def broken_report(staging: Path, meta: dict[str, Any]) -> list[Path]:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_version(
            tmp_path, "v1", skops_saver(pipeline), {"version": "v1"}, extra_writer=broken_report
        )
    assert list(tmp_path.iterdir()) == []


def test_write_version_records_the_model_hash(tmp_path: Path, frame: pd.DataFrame) -> None:
    pipeline = build_pipeline("logreg").fit(frame, train.target_vector(frame))
    meta: dict[str, Any] = {"version": "v1"}
    final, written = write_version(tmp_path, "v1", skops_saver(pipeline), meta)
    blob = (final / MODEL_FILE).read_bytes()
    assert meta["model_sha256"] == hashlib.sha256(blob).hexdigest()
    assert json.loads((final / METADATA_FILE).read_text())["model_sha256"] == meta["model_sha256"]
    assert written == [final / MODEL_FILE, final / METADATA_FILE]


def test_latest_is_replaced_atomically(models: Path) -> None:
    name = version_dir(models).name
    write_latest(models, name)
    assert (models / LATEST_FILE).read_text() == name + "\n"
    assert not [p for p in models.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ModelError, match="not a complete model version"):
        write_latest(models, "missing-version")
    assert (models / LATEST_FILE).read_text() == name + "\n"  # unchanged


def test_metrics_json_written_from_metadata(models: Path) -> None:
    meta = read_metadata(version_dir(models))
    path = artifacts.write_metrics(models, meta)
    metrics = json.loads(path.read_text())
    assert metrics["version"] == meta["version"]
    assert metrics["f1"] == meta["metrics"]["test"]["f1"]
