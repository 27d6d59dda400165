"""The CLI through CliRunner: success paths, and one readable line on every user error."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnstream.cli import app
from churnstream.cli.options import effective_settings
from churnstream.exceptions import ConfigError
from tests.unit.test_data import GOOD, HEADER, NEW_CUSTOMER
from tests.unit.test_schemas import EVENT

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def assert_one_line_error(code: int, output: str, needle: str) -> None:
    assert code != 0
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], output


def test_effective_settings_apply_the_shared_and_the_commands_flags() -> None:
    base = effective_settings()
    flags = {"consumer.group_id": "g1", "paths.reports_dir": None}
    settings = effective_settings(flags, broker="broker-host:1", metrics_port=9109)
    assert settings.kafka.bootstrap_servers == "broker-host:1"
    assert settings.observability.metrics_port == 9109
    assert settings.consumer.group_id == "g1"
    assert settings.paths.reports_dir == base.paths.reports_dir  # None: the flag was not given
    assert base.kafka.bootstrap_servers != "broker-host:1"
    with pytest.raises(ConfigError, match="unknown setting 'consumer.no_such'"):
        effective_settings({"consumer.no_such": 1})


def test_bad_flag_is_a_usage_error() -> None:
    code, output = run("predict", "--no-such-flag")
    assert code == 2 and "No such option" in output and "Traceback" not in output


def test_bad_mode_value() -> None:
    assert_one_line_error(*run("produce", "--mode", "bogus", "--dry-run"), "--mode")


def test_missing_input_file(tmp_path: Path) -> None:
    assert_one_line_error(
        *run("predict", "--input", str(tmp_path / "no.csv"), "--output", str(tmp_path / "o.csv")),
        "does not exist",
    )


def test_missing_model(tmp_path: Path) -> None:
    body = json.dumps(EVENT)
    assert_one_line_error(
        *run("predict", "--model-path", str(tmp_path / "none"), "--json", body), "does not exist"
    )


def test_corrupt_model_file(tmp_path: Path, model_dir: Path) -> None:
    import shutil

    broken = tmp_path / "models"
    shutil.copytree(model_dir, broken)
    version = (broken / "latest").read_text().strip()
    (broken / version / "model.skops").write_bytes(b"this is not a skops archive")
    code, output = run("predict", "--model-path", str(broken), "--json", json.dumps(EVENT))
    assert_one_line_error(code, output, "model")


def test_predict_one_record(model_dir: Path) -> None:
    code, output = run("predict", "--model-path", str(model_dir), "--json", json.dumps(EVENT))
    assert code == 0, output
    body = json.loads(output.strip().splitlines()[-1])
    assert body["customerID"] == "7590-VHVEG" and body["prediction"] in ("Yes", "No")
    assert 0 <= body["churn_probability"] <= 1


def test_predict_invalid_record(model_dir: Path) -> None:
    code, output = run(
        "predict", "--model-path", str(model_dir), "--json", json.dumps({**EVENT, "tenure": -1})
    )
    assert_one_line_error(code, output, "tenure")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predict_file_with_rejects(tmp_path: Path, model_dir: Path, suffix: str) -> None:
    src = tmp_path / "in.csv"
    bad = GOOD.replace("DSL", "Cable").replace("7590-VHVEG", "1111-AAAAA")
    src.write_text("\n".join([HEADER, GOOD, bad, NEW_CUSTOMER]) + "\n")
    if suffix == ".parquet":
        pd.read_csv(src, dtype=str, keep_default_na=False).to_parquet(tmp_path / "in.parquet")
        src = tmp_path / "in.parquet"
    out = tmp_path / f"out{suffix}"
    code, output = run("predict", "--model-path", str(model_dir), "--input", str(src),
                       "--output", str(out))  # fmt: skip
    assert code == 0, output
    assert "scored 2 rows, rejected 1" in output
    scored = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(scored["customerID"]) == ["7590-VHVEG", "4472-LVYGI"]
    assert set(scored["prediction"]) <= {"Yes", "No"}
    assert scored["model_version"].nunique() == 1
    rejects_path = tmp_path / f"out.rejects{suffix}"
    rejects = pd.read_csv(rejects_path) if suffix == ".csv" else pd.read_parquet(rejects_path)
    assert list(rejects["customerID"]) == ["1111-AAAAA"]
    assert rejects["reject_reason"].iloc[0].startswith("InternetService")


def test_predict_whole_dataset(tmp_path: Path, model_dir: Path, dataset_path: Path) -> None:
    out = tmp_path / "all.csv"
    code, output = run("predict", "--model-path", str(model_dir), "--input", str(dataset_path),
                       "--output", str(out))  # fmt: skip
    assert code == 0 and "scored 7043 rows, rejected 0" in output
    assert len(pd.read_csv(out)) == 7043


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNSTREAM_KAFKA__SASL_PASSWORD", "s3cret-value")
    code, output = run("config", "show", "--json")
    assert code == 0
    data = json.loads(output)
    assert data["kafka"]["sasl_password"] == "**********"
    assert "s3cret-value" not in output


def test_config_file_missing() -> None:
    code, output = run("--config", "/nonexistent.yaml", "config", "show")
    assert code == 2 and "does not exist" in output


def test_bad_environment_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNSTREAM_CONSUMER__MAX_BATCH_RECORDS", "zero")
    assert_one_line_error(*run("config", "show"), "consumer.max_batch_records")


def test_data_fetch_from_missing_copy(tmp_path: Path) -> None:
    assert_one_line_error(
        *run("data", "fetch", "--from", str(tmp_path / "x.csv"), "-o", str(tmp_path / "o.csv")),
        "does not exist",
    )


def test_data_check_names_the_bad_column(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(HEADER.replace("tenure", "tenur") + "\n" + GOOD + "\n")
    assert_one_line_error(*run("data", "check", str(path)), "'tenure'")


def test_produce_dry_run_counts_the_file(dataset_path: Path) -> None:
    code, output = run("produce", "--mode", "batch", "--dry-run", "--data-path",
                       str(dataset_path), "--no-progress", "--validate")  # fmt: skip
    assert code == 0 and "would send 7043, failed 0" in output


@pytest.mark.parametrize("command", ["consume", "spark-consume"])
def test_scorer_flags_override_the_same_settings_in_consume_and_spark_consume(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from churnstream.cli import options

    seen: list[Mapping[str, object]] = []

    def stop_at_settings(overrides: Mapping[str, object], **_: object) -> None:
        seen.append(overrides)
        raise ConfigError("stopped before any broker")

    monkeypatch.setattr(options, "effective_settings", stop_at_settings)
    flags = ["--input-topic", "in", "--output-topic", "out", "--deadletter-topic", "dl"]
    flags += ["--consumer-group", "g", "--model-path", "m", "--reports-dir", "r"]
    code, output = run(command, *flags, "--batch-records", "7")
    assert_one_line_error(code, output, "stopped before any broker")
    assert {k: v for k, v in seen[0].items() if v is not None} == {
        "topics.raw.name": "in",
        "topics.predictions.name": "out",
        "topics.deadletter.name": "dl",
        "consumer.group_id": "g",
        "model.models_dir": Path("m"),
        "paths.reports_dir": Path("r"),
        **({"consumer.max_batch_records": 7} if command == "consume" else {}),
    }
