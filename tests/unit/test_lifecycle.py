"""Champion/challenger in a real MLflow registry (a local file store under tmp_path).

One registry for the module: a champion trained on the original data, a better challenger
trained after a shift, and a worse one trained on shuffled labels. The shadow gate itself
reads Kafka and is run for real by tests/airflow (``churnstream_retrain``); here its pass is
recorded as the tag it leaves, to test what ``promote`` and ``rollback`` do with it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from churnstream.cli import app
from churnstream.lifecycle import gate, promotion, registry
from churnstream.model import artifacts
from churnstream.model.train import run_training
from churnstream.settings import load_settings
from churnstream.settings.promotion import PromotionSettings
from tests.lifecycle_data import write_variant

pytest.importorskip("mlflow", reason="the [mlflow] extra is not installed")

SAMPLE = 800
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Lab:
    root: Path
    env: dict[str, str]
    champion: Path
    better: Path
    worse: Path
    shifted_csv: Path

    @property
    def serving(self) -> Path:
        return Path(self.env["CHURNSTREAM_MODEL__MODELS_DIR"])

    def latest(self) -> str:
        return (self.serving / artifacts.LATEST_FILE).read_text().strip()


def _train(data: Path, out: Path) -> Path:
    # One directory for every candidate: trained within one second, each still gets its own
    # version name (-2, -3), as two versions of one registered model must.
    run = run_training(data, out, algorithm="logreg", sample=SAMPLE, cv_folds=2)
    return run.version_dir


@pytest.fixture(scope="module")
def lab(dataset_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lifecycle")
    shifted = write_variant(dataset_path, root / "shifted.csv", shifted=True)
    shuffled = write_variant(dataset_path, root / "worse.csv", shifted=True, shuffle_labels=True)
    env = {
        "CHURNSTREAM_PROMOTION__TRACKING_URI": (root / "mlruns").as_uri(),
        "CHURNSTREAM_MODEL__MODELS_DIR": str(root / "serving"),
        "CHURNSTREAM_PROMOTION__MIN_HOLDOUT_ROWS": "100",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        lab = Lab(
            root,
            env,
            champion=_train(dataset_path, root / "candidates"),
            better=_train(shifted, root / "candidates"),
            worse=_train(shuffled, root / "candidates"),
            shifted_csv=shifted,
        )
        settings = load_settings()
        assert promotion.register(settings, lab.champion, bootstrap=True).alias == "champion"
        assert promotion.register(settings, lab.better, bootstrap=True).alias == "challenger"
        yield lab


@pytest.fixture
def env(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Lab:
    for k, v in lab.env.items():
        monkeypatch.setenv(k, v)
    return lab


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--quiet", *args])
    return result.exit_code, result.stdout, result.stderr


def status() -> dict[str, object]:
    code, out, err = invoke("model", "status", "--json")
    assert code == 0, err
    return dict(json.loads(out))


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_register_bootstraps_the_champion_and_logs_skops_without_pickle(env: Lab) -> None:
    state = status()
    assert state["champion"]["version"] == "1"  # type: ignore[index]
    assert state["challenger"]["version"] == "2"  # type: ignore[index]
    assert env.latest() == env.champion.name  # the champion serves from models/latest
    reg = promotion.open_registry(load_settings())
    source = reg.client.get_model_version_download_uri(reg.name, "2")
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(env.root)))
    mlmodel = (local / "MLmodel").read_text()
    assert "serialization_format: skops" in mlmodel
    assert not list(local.rglob("*.pkl")) and not list(local.rglob("*.pickle"))
    extra = local / registry.EXTRA_FILES_DIR
    assert (extra / artifacts.COMPILED_FILE).is_file()  # the arrays a lean scorer loads
    assert (extra / artifacts.MODEL_FILE).read_bytes() == (
        env.better / artifacts.MODEL_FILE
    ).read_bytes()
    assert reg.alias("challenger").tags[registry.TAG_SCHEMA] == registry.CURRENT_SCHEMA  # type: ignore[union-attr]


def test_evaluate_rebuilds_the_held_out_split_and_applies_the_floor(
    env: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = artifacts.read_metadata(env.better)["summary_metrics"]["roc_auc"]
    code, out, err = invoke("model", "evaluate", str(env.better))
    assert code == 0, err
    assert f"roc_auc {recorded:.4f}" in out and "held-out split" in out
    monkeypatch.setenv("CHURNSTREAM_PROMOTION__MIN_ROC_AUC", "0.99")
    code, _, err = invoke("model", "evaluate", str(env.better))
    assert code == 3
    assert "< promotion.min_roc_auc 0.99" in one_line(err)


def test_bad_input_is_one_line_and_leaves_the_serving_model(
    env: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = env.latest()
    # A registry that is not there: a missing file store, a server nobody listens on.
    code, _, err = invoke("model", "promote", "--tracking-uri", (env.root / "nope").as_uri())
    assert code == 1 and "registry unreachable" in one_line(err)
    code, _, err = invoke("model", "rollback", "--tracking-uri", "http://127.0.0.1:9")
    assert code == 1 and "127.0.0.1:9" in one_line(err)
    # A registered model without a champion.
    monkeypatch.setenv("CHURNSTREAM_PROMOTION__REGISTERED_MODEL", "no-such-model")
    code, _, err = invoke("model", "promote")
    assert code == 1 and "no champion for 'no-such-model'" in one_line(err)
    monkeypatch.delenv("CHURNSTREAM_PROMOTION__REGISTERED_MODEL")
    # A candidate that fails to load.
    broken = env.root / "broken"
    shutil.copytree(env.better, broken)
    (broken / artifacts.MODEL_FILE).write_bytes(b"not a skops file")
    code, _, err = invoke("model", "register", str(broken))
    assert code == 1 and "candidate fails to load" in one_line(err)
    # The challenger alias on a model of another feature schema.
    reg = promotion.open_registry(load_settings())
    reg.tag_version("2", {registry.TAG_SCHEMA: "0123456789abcdef"})
    try:
        for command in (["compare"], ["promote"]):
            code, _, err = invoke("model", *command)
            assert code == 1 and "feature schema 0123456789abcdef" in one_line(err), command
    finally:
        reg.tag_version("2", {registry.TAG_SCHEMA: registry.CURRENT_SCHEMA})
    assert env.latest() == before
    assert status()["champion"]["version"] == "1"  # type: ignore[index]


def test_better_challenger_passes_the_gates_is_promoted_and_rolled_back(env: Lab) -> None:
    code, out, err = invoke("model", "compare")
    assert code == 0, err
    assert out.startswith("holdout gate passed: champion_roc_auc")
    # The shadow window (an hour by default) has not ended: not promoted yet.
    code, _, err = invoke("model", "promote")
    assert code == 4 and "is in shadow for another" in one_line(err)
    assert env.latest() == env.champion.name
    # What a passed shadow gate leaves behind (the gate itself: tests/airflow).
    reg = promotion.open_registry(load_settings())
    reg.tag_version("2", {promotion.TAG_GATE + gate.SHADOW: "passed vs v1"})

    code, out, err = invoke("model", "promote")
    assert code == 0, err
    assert env.latest() == env.better.name
    state = status()
    assert state["champion"]["version"] == "2" and state["challenger"] is None  # type: ignore[index]
    assert state["champion_history"] == ["1", "2"]

    code, out, err = invoke("model", "rollback")
    assert code == 0, err
    assert "rolled back from v2" in out
    assert env.latest() == env.champion.name
    assert status()["champion"]["version"] == "1"  # type: ignore[index]
    code, _, err = invoke("model", "rollback")
    assert code == 1 and "no previous champion" in one_line(err)
    # Every step is an MLflow run of the lifecycle experiment.
    experiment = reg.client.get_experiment_by_name(promotion.EXPERIMENT)
    runs = reg.client.search_runs([experiment.experiment_id], max_results=100)
    steps = {r.data.tags.get(registry.TAG_STEP) for r in runs}
    assert {"register", "evaluate", "gate-holdout", "promote", "rollback"} <= steps


def test_worse_challenger_is_refused_and_the_champion_keeps_serving(env: Lab) -> None:
    code, out, err = invoke("model", "register", str(env.worse))
    assert code == 0, err
    assert "alias challenger" in out
    code, _, err = invoke("model", "compare", "--data", str(env.shifted_csv))
    assert code == 3
    line = one_line(err)
    assert "holdout gate refused: challenger ROC AUC" in line and "all 7043 rows" in line
    assert env.latest() == env.champion.name
    code, _, err = invoke("model", "promote")
    assert code == 3 and "holdout gate refused" in one_line(err)
    assert env.latest() == env.champion.name


def test_gate_verdicts() -> None:
    cfg = PromotionSettings(min_roc_auc_gain=0.01, min_brier_gain=0.0, min_holdout_rows=100)
    champion = {"roc_auc": 0.80, "brier": 0.15}
    assert gate.holdout_verdict(champion, {"roc_auc": 0.82, "brier": 0.14}, 500, cfg).passed
    refused = gate.holdout_verdict(champion, {"roc_auc": 0.805, "brier": 0.16}, 50, cfg)
    assert refused.reasons == [
        "only 50 held-out rows (need 100)",
        "challenger ROC AUC 0.8050 < champion's 0.8000 + 0.01",
        "challenger Brier 0.1600 > champion's 0.1500 - 0",
    ]
    cfg = PromotionSettings(
        shadow_min_events=10, shadow_min_agreement=0.9, shadow_max_churn_rate_shift=0.05
    )
    ok = gate.ShadowStats(100, 0.95, 0.20, 0.22, 0.03)
    assert gate.shadow_verdict(ok, cfg).passed
    bad = gate.ShadowStats(100, 0.85, 0.20, 0.30, 0.1)
    assert gate.shadow_verdict(bad, cfg).reasons == [
        "agreement 0.8500 < 0.9 over 100 events",
        "churn-rate shift 0.1000 > 0.05 (champion 0.2000, challenger 0.3000)",
    ]
    few = gate.ShadowStats(3, 1.0, 0.0, 0.0, 0.0)
    assert gate.shadow_verdict(few, cfg).reasons == ["only 3 events in the shadow window (need 10)"]
