"""Shared fixtures: the repository root and the real dataset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASET = REPO_ROOT / "data" / "raw" / "telco_customer_churn.csv"
CONTRACTS_DIR = REPO_ROOT.parent / "shared" / "contracts"


@pytest.fixture(scope="session")
def dataset_path() -> Path:
    if not DATASET.is_file():
        pytest.skip(f"{DATASET} absent: run `churnstream data fetch` (make test does)")
    return DATASET


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's CHURNSTREAM_* variables."""
    import os

    for name in list(os.environ):
        if name.startswith("CHURNSTREAM_"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def model_dir(dataset_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model trained once per session on the real dataset (CV trimmed for speed)."""
    from churnstream.model.train import run_training

    models = tmp_path_factory.mktemp("models")
    run_training(dataset_path, models, cv_folds=2)
    return models


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """CLI commands configure the root logger; undo it so one test's handlers (bound to a
    CliRunner's captured streams) never write into the next test's output."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
