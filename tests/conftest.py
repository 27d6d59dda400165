"""Shared fixtures: the repository root and the real dataset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASET = REPO_ROOT / "data" / "raw" / "telco_customer_churn.csv"
CONTRACTS_DIR = REPO_ROOT.parent / "shared" / "contracts"

# Property-based tests (tests/unit/test_fuzz.py). The default profile generates the same
# inputs on every run (a seed derived from each test), so CI is repeatable. Hypothesis forbids
# a fixed seed together with an example database (derandomize implies database=None), so the
# database belongs to the exploring profile: random seeds, and every failing input saved under
# .hypothesis/examples and replayed first on the next run (`pytest --hypothesis-profile=explore`).
# Regressions worth keeping for everyone are pinned with @example in the test itself.
settings.register_profile(
    "churnstream",
    derandomize=True,
    deadline=None,  # a shared, busy machine: no per-example time limit
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "explore",
    parent=settings.get_profile("churnstream"),
    derandomize=False,
    database=DirectoryBasedExampleDatabase(REPO_ROOT / ".hypothesis" / "examples"),
)
settings.load_profile("churnstream")


@pytest.fixture(scope="session")
def dataset_path() -> Path:
    if not DATASET.is_file():
        pytest.skip(f"{DATASET} absent: run `churnstream data fetch` (make test does)")
    return DATASET


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--scorer-client",
        choices=("confluent", "native"),
        default=None,
        help="run every scorer the tests start on this Kafka client (consumer.client); "
        "the native one refuses exactly-once, so those tests fail then",
    )


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Tests never pick up a developer's CHURNSTREAM_* variables (but --scorer-client's)."""
    import os

    for name in list(os.environ):
        if name.startswith("CHURNSTREAM_"):
            monkeypatch.delenv(name, raising=False)
    client = request.config.getoption("--scorer-client")
    if client is not None:
        monkeypatch.setenv("CHURNSTREAM_CONSUMER__CLIENT", client)


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
