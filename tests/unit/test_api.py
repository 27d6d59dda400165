"""The REST API (`churnstream serve`) in-process through starlette's TestClient, plus one
end-to-end run of the real command on a free port."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from churnstream.api.app import create_app
from churnstream.api.openapi import EXAMPLE_RECORD, EXAMPLE_RECORD_2
from churnstream.cli import app as cli_app
from churnstream.data import load_dataset
from churnstream.events import events_to_frame, frame_to_records
from churnstream.exceptions import ConfigError
from churnstream.model.scorer import Scorer
from churnstream.schemas import FEATURE_COLUMNS, CustomerEvent, Prediction, dump_body, parse_ts
from churnstream.settings import Settings, load_settings, with_overrides
from churnstream.settings.sections import ApiSettings

with warnings.catch_warnings():
    # starlette 1.10 would rather its test client ran on httpx2; httpx works the same here.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = "t0ken-for-tests_only"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def scorer(model_dir: Path) -> Scorer:
    return Scorer.load(model_dir)


@pytest.fixture(scope="module")
def records(dataset_path: Path) -> list[dict[str, Any]]:
    """40 real customers, as a client would send them (no event_ts)."""
    return frame_to_records(load_dataset(dataset_path).head(40))


def make_settings(**api: Any) -> Settings:
    return with_overrides(Settings(), {f"api.{key}": value for key, value in api.items()})


def make_client(scorer: Scorer | None, model_path: Path | None = None, **api: Any) -> TestClient:
    app = create_app(make_settings(**api), scorer, model_path=model_path)
    return TestClient(app)


@pytest.fixture
def client(scorer: Scorer) -> Iterator[TestClient]:
    with make_client(scorer) as test_client:
        yield test_client


def post_json(client: TestClient, body: Any, **kwargs: Any) -> Any:
    return client.post("/predict", json=body, **kwargs)


# --- POST /predict -------------------------------------------------------------------------


def test_one_record_gives_one_prediction_body(client: TestClient, scorer: Scorer) -> None:
    before = time.time()
    response = post_json(client, EXAMPLE_RECORD)
    assert response.status_code == 200, response.text
    body = response.json()
    reasons = body.pop("reasons")
    prediction = Prediction.model_validate(body)  # the contract, extra fields forbidden
    event = CustomerEvent.model_validate({**EXAMPLE_RECORD, "event_ts": body["event_ts"]})
    expected = float(scorer.predict_proba(events_to_frame([event]))[0])
    assert prediction.churn_probability == expected
    assert prediction.prediction == ("Yes" if expected >= scorer.threshold else "No")
    assert prediction.model_version == scorer.version
    assert prediction.inference_latency_ms is not None and prediction.inference_latency_ms >= 0
    # event_ts defaults to the time of the request, as `predict --json` does.
    assert before - 1 <= parse_ts(body["event_ts"]).timestamp() <= time.time() + 1
    # The contract's bytes, then the reasons: up to three, largest first, all positive.
    assert response.content == orjson.dumps({**dump_body(prediction), "reasons": reasons})
    assert [r["feature"] for r in reasons][:2] == ["tenure", "Contract"]
    contributions = [r["contribution"] for r in reasons]
    assert contributions == sorted(contributions, reverse=True) and min(contributions) > 0


def test_a_list_is_scored_in_one_model_call_in_order(
    scorer: Scorer, records: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = scorer.predict_features

    def counting(batch: Any) -> Any:
        calls.append(len(batch))
        return original(batch)

    monkeypatch.setattr(scorer, "predict_features", counting)
    sent = [{**r, "event_ts": "2025-10-03T04:00:00Z"} for r in records]
    with make_client(scorer) as client:
        response = post_json(client, sent)
    assert response.status_code == 200, response.text
    assert calls == [len(records)]
    bodies = response.json()
    reasons = [b.pop("reasons") for b in bodies]
    assert all(1 <= len(r) <= 3 for r in reasons)
    assert [b["customerID"] for b in bodies] == [r["customerID"] for r in records]
    events = [CustomerEvent.model_validate(r) for r in sent]
    expected = scorer.predict_proba(events_to_frame(events)).tolist()
    assert [b["churn_probability"] for b in bodies] == expected
    assert {b["event_ts"] for b in bodies} == {"2025-10-03T04:00:00Z"}
    assert len({b["processed_ts"] for b in bodies}) == 1
    for body in bodies:
        Prediction.model_validate(body)
    # Byte for byte what one pydantic Prediction per record, dumped as a list, gives.
    contract = [
        dump_body(
            Prediction(
                customerID=event.customerID,
                churn_probability=probability,
                prediction="Yes" if probability >= scorer.threshold else "No",
                event_ts=event.event_ts,
                processed_ts=body["processed_ts"],
                model_version=scorer.version,
                inference_latency_ms=body["inference_latency_ms"],
            )
        )
        for event, probability, body in zip(events, expected, bodies, strict=True)
    ]
    answers = [{**c, "reasons": r} for c, r in zip(contract, reasons, strict=True)]
    assert response.content == orjson.dumps(answers)


def test_records_the_model_cannot_score_are_a_500(
    scorer: Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scorer, "predict_features", lambda batch: np.full(len(batch), np.nan))
    with make_client(scorer) as client:
        response = post_json(client, [EXAMPLE_RECORD, EXAMPLE_RECORD_2])
    assert response.status_code == 500
    assert response.json() == {
        "detail": "scoring failed: the model could not score 2 of 2 record(s)"
    }


def test_empty_list_gives_empty_list(client: TestClient) -> None:
    response = post_json(client, [])
    assert response.status_code == 200 and response.json() == []


def test_total_charges_string_forms_and_churn_are_accepted(client: TestClient) -> None:
    batch = [
        {**EXAMPLE_RECORD, "TotalCharges": "29.85", "Churn": "No"},
        {**EXAMPLE_RECORD, "tenure": 0, "TotalCharges": " "},
        EXAMPLE_RECORD_2,
    ]
    response = post_json(client, batch)
    assert response.status_code == 200, response.text
    assert len(response.json()) == 3


def _error_422(client: TestClient, content: bytes | str) -> list[dict[str, Any]]:
    response = client.post(
        "/predict", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    for error in detail:
        assert error["loc"][0] == "body" and error["msg"] and error["type"]
    return detail


def _record(**changes: Any) -> str:
    return json.dumps({**EXAMPLE_RECORD, **changes})


INVALID_BODIES = {
    "truncated-json": ('{"customerID": ', ["body", 15], "json_invalid"),
    "nan": (_record().replace("29.85}", "NaN}"), None, "json_invalid"),
    "infinity": (_record().replace('"tenure": 1', '"tenure": Infinity'), None, "json_invalid"),
    "empty-body": ("", ["body"], "missing"),
    "a-number": ("42", ["body"], "model_type"),
    "a-string": ('"a string"', ["body"], "model_type"),
    "numeric-string-tenure": (_record(tenure="12"), ["body", "tenure"], "int_type"),
    "bool-senior": (_record(SeniorCitizen=True), ["body", "SeniorCitizen"], "int_type"),
    "float-tenure": (_record(tenure=1.5), ["body", "tenure"], "int_type"),
    "tenure-too-high": (_record(tenure=101), ["body", "tenure"], "less_than_equal"),
    "monthly-too-high": (_record(MonthlyCharges=200.01), None, None),
    "negative-total": (_record(TotalCharges=-1), ["body", "TotalCharges"], "value_error"),
    "text-total": (_record(TotalCharges="abc"), ["body", "TotalCharges"], "value_error"),
    "unknown-category": (_record(Contract="Weekly"), ["body", "Contract"], "literal_error"),
    "null-category": (_record(gender=None), ["body", "gender"], "literal_error"),
    "bad-customer-id": (
        _record(customerID="7590-vhveg"),
        ["body", "customerID"],
        "string_pattern_mismatch",
    ),
    "impossible-date": (
        _record(event_ts="2025-13-40T00:00:00Z"),
        ["body", "event_ts"],
        "value_error",
    ),
    "not-a-timestamp": (_record(event_ts="yesterday"), ["body", "event_ts"], "value_error"),
    "null-timestamp": (_record(event_ts=None), ["body", "event_ts"], "string_type"),
    "extra-field": (_record(plan="gold"), ["body", "plan"], "extra_forbidden"),
    "missing-field": (
        json.dumps({k: v for k, v in EXAMPLE_RECORD.items() if k != "tenure"}),
        ["body", "tenure"],
        "missing",
    ),
    "list-with-a-number": (json.dumps([EXAMPLE_RECORD, 5]), ["body", 1], "model_type"),
    "list-with-a-bad-record": (
        json.dumps([EXAMPLE_RECORD, {**EXAMPLE_RECORD, "tenure": "x"}]),
        ["body", 1, "tenure"],
        "int_type",
    ),
}


@pytest.mark.parametrize(
    ("content", "loc", "error_type"), list(INVALID_BODIES.values()), ids=list(INVALID_BODIES)
)
def test_invalid_input_is_422_with_field_details(
    client: TestClient, content: str, loc: list[Any] | None, error_type: str | None
) -> None:
    detail = _error_422(client, content)
    if loc is not None:
        assert [e["loc"] for e in detail] == [loc], detail
    if error_type is not None:
        assert {e["type"] for e in detail} == {error_type}, detail


def test_every_field_error_is_reported_at_once(client: TestClient) -> None:
    detail = _error_422(client, _record(tenure="1", Contract="Weekly", plan="gold"))
    assert {tuple(e["loc"]) for e in detail} == {
        ("body", "tenure"),
        ("body", "Contract"),
        ("body", "plan"),
    }
    contract = next(e for e in detail if e["loc"] == ["body", "Contract"])
    assert contract["input"] == "Weekly" and "Month-to-month" in contract["msg"]
    partial = _error_422(client, json.dumps({"customerID": "7590-VHVEG", "Contract": "Weekly"}))
    missing = [e for e in partial if e["type"] == "missing"]
    assert len(missing) == 18 and all("input" not in e for e in missing)


def test_list_size_is_capped(scorer: Scorer) -> None:
    with make_client(scorer, max_batch_records=3) as client:
        assert post_json(client, [EXAMPLE_RECORD] * 3).status_code == 200
        response = post_json(client, [EXAMPLE_RECORD] * 4)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["type"] == "too_long" and error["loc"] == ["body"]
    assert "at most 3" in error["msg"] and error["ctx"]["actual_length"] == 4


def test_body_size_is_capped_with_413(scorer: Scorer) -> None:
    with make_client(scorer, max_body_bytes=2048) as client:
        big = json.dumps([EXAMPLE_RECORD] * 5)
        response = client.post(
            "/predict", content=big, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413 and "api.max_body_bytes" in response.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
            yield big.encode()

        response = client.post(
            "/predict", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413


def test_non_json_media_type_is_415(client: TestClient) -> None:
    response = client.post(
        "/predict", content=json.dumps(EXAMPLE_RECORD), headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 415
    form = client.post("/predict", data={"customerID": "7590-VHVEG"})
    assert form.status_code == 415


# --- model, health, reload ------------------------------------------------------------------


def test_model_metadata(client: TestClient, scorer: Scorer) -> None:
    response = client.get("/model")
    assert response.status_code == 200
    info = response.json()
    assert info["version"] == scorer.version
    assert info["threshold"] == scorer.threshold
    assert info["algorithm"] == scorer.metadata["algorithm"]
    assert 0.5 < info["metrics"]["test"]["roc_auc"] <= 1
    assert info["feature_schema"]["names"] == list(FEATURE_COLUMNS)
    assert info["model_sha256"] == scorer.metadata["model_sha256"]
    assert "profile" not in info and "smoke" not in info


def test_health(client: TestClient, scorer: Scorer) -> None:
    assert client.get("/health/live").json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "model_version": scorer.version}


def _models_root(tmp_path: Path, model_dir: Path) -> tuple[Path, str]:
    """A models root of our own holding a copy of the session model, latest -> it."""
    root = tmp_path / "models"
    version = (model_dir / "latest").read_text().strip()
    shutil.copytree(model_dir / version, root / version)
    (root / "latest").write_text(version)
    return root, version


def _new_version(root: Path, source: str, name: str, *, corrupt: bool = False) -> None:
    shutil.copytree(root / source, root / name)
    metadata_file = root / name / "metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["version"] = name
    metadata_file.write_text(json.dumps(metadata))
    if corrupt:
        (root / name / "model.skops").write_bytes(b"not a model")
    (root / "latest").write_text(name)


def test_reload_swaps_to_a_good_model_and_keeps_the_old_on_failure(
    tmp_path: Path, model_dir: Path
) -> None:
    root, first = _models_root(tmp_path, model_dir)
    with make_client(None, model_path=root) as client:  # loads `latest` at start-up
        assert client.get("/model").json()["version"] == first
        unchanged = client.post("/model/reload")
        assert unchanged.status_code == 200 and unchanged.json()["changed"] is False

        _new_version(root, first, "v2-good")
        swapped = client.post("/model/reload")
        assert swapped.status_code == 200, swapped.text
        assert swapped.json()["changed"] is True
        assert swapped.json()["previous_version"] == first
        assert swapped.json()["version"] == "v2-good"
        assert post_json(client, EXAMPLE_RECORD).json()["model_version"] == "v2-good"

        _new_version(root, first, "v3-corrupt", corrupt=True)
        refused = client.post("/model/reload")
        assert refused.status_code == 409
        assert "still serving v2-good" in refused.json()["detail"]
        assert client.get("/health/ready").json()["model_version"] == "v2-good"
        assert post_json(client, EXAMPLE_RECORD).json()["model_version"] == "v2-good"
        metrics = client.get("/metrics").text
    assert 'churnstream_api_model_reloads_total{result="failed"} 1.0' in metrics
    assert 'churnstream_api_model_reloads_total{result="changed"} 1.0' in metrics
    assert 'churnstream_api_model_info{algorithm="ensemble",threshold=' in metrics
    assert 'version="v2-good"' in metrics


def test_without_a_model_it_starts_not_ready_until_a_reload(
    tmp_path: Path, model_dir: Path
) -> None:
    root = tmp_path / "models"
    root.mkdir()
    with make_client(None, model_path=root) as client:
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "not ready"
        assert post_json(client, EXAMPLE_RECORD).status_code == 503
        assert client.get("/model").status_code == 503
        assert client.post("/model/reload").status_code == 409

        version = (model_dir / "latest").read_text().strip()
        shutil.copytree(model_dir / version, root / version)
        (root / "latest").write_text(version)
        reloaded = client.post("/model/reload").json()
        assert reloaded["changed"] is True and reloaded["previous_version"] is None
        assert client.get("/health/ready").status_code == 200
        assert post_json(client, EXAMPLE_RECORD).status_code == 200


# --- auth -----------------------------------------------------------------------------------


def test_bearer_token_guards_everything_but_health_and_docs(
    scorer: Scorer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import hmac

    compared: list[tuple[bytes, bytes]] = []
    real_compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    caplog.set_level("DEBUG")
    with make_client(scorer, token=TOKEN) as client:
        guarded = [
            ("POST", "/predict"),
            ("GET", "/model"),
            ("POST", "/model/reload"),
            ("GET", "/metrics"),
        ]
        for method, path in guarded:
            missing = client.request(method, path, json=EXAMPLE_RECORD)
            assert missing.status_code == 401, path
            assert missing.headers["WWW-Authenticate"] == "Bearer"
            wrong = client.request(
                method, path, json=EXAMPLE_RECORD, headers={"Authorization": "Bearer nope"}
            )
            assert wrong.status_code == 401, path
            assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
            basic = client.request(
                method, path, json=EXAMPLE_RECORD, headers={"Authorization": f"Basic {TOKEN}"}
            )
            assert basic.status_code == 401, path
        assert post_json(client, EXAMPLE_RECORD, headers=AUTH).status_code == 200
        lower = {"Authorization": f"bearer {TOKEN}"}  # the scheme is case-insensitive
        assert client.get("/model", headers=lower).status_code == 200
        assert client.get("/metrics", headers=AUTH).status_code == 200
        for path in ("/health/live", "/health/ready", "/openapi.json", "/docs"):
            assert client.get(path).status_code == 200, path
        spec = client.get("/openapi.json").json()
    assert compared and all(b == TOKEN.encode() for _, b in compared)
    assert TOKEN not in caplog.text
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert spec["paths"]["/predict"]["post"]["security"] == [{"bearerAuth": []}]
    assert "401" in spec["paths"]["/model"]["get"]["responses"]
    assert "security" not in spec["paths"]["/health/ready"]["get"]


def test_token_comes_from_the_environment_as_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().api == ApiSettings()
    assert ApiSettings().token is None
    monkeypatch.setenv("CHURNSTREAM_API__TOKEN", TOKEN)
    settings = load_settings()
    assert settings.api.token is not None
    assert settings.api.token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings) and TOKEN not in json.dumps(settings.model_dump(mode="json"))
    monkeypatch.setenv("CHURNSTREAM_API__TOKEN", "  ")
    with pytest.raises(ConfigError, match="api.token is blank"):
        load_settings()


# --- metrics and the spec -------------------------------------------------------------------


def test_metrics_count_requests_by_route_and_status(
    scorer: Scorer, records: list[dict[str, Any]]
) -> None:
    with make_client(scorer) as client:
        post_json(client, records[:5])
        post_json(client, EXAMPLE_RECORD)
        post_json(client, {"bad": 1})
        client.get("/no/such/route/12345")
        client.request("BREW", "/predict")  # any method token: counted as "other"
        text = client.get("/metrics").text
    assert 'churnstream_api_requests_total{method="POST",route="/predict",status="200"} 2.0' in text
    assert 'churnstream_api_requests_total{method="POST",route="/predict",status="422"} 1.0' in text
    assert 'route="unmatched",status="404"' in text and "12345" not in text
    assert 'method="other",route="/predict",status="405"' in text and "BREW" not in text
    assert 'churnstream_api_request_duration_seconds_count{method="POST",route="/predict"} 3.0' in (
        text
    )
    served = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("churnstream_api_predictions_total{")
    )
    assert served == 6
    assert "churnstream_api_batch_records_count 2.0" in text
    assert f'version="{scorer.version}"' in text
    # A private registry: a second app starts from zero.
    with make_client(scorer) as other:
        assert "churnstream_api_predictions_total{" not in other.get("/metrics").text


def test_openapi_documents_bodies_examples_and_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]
    one_of = body["schema"]["oneOf"]
    assert one_of[0] == {"$ref": "#/components/schemas/CustomerRecord"}
    assert one_of[1]["type"] == "array" and one_of[1]["maxItems"] == 1000
    assert set(predict["responses"]) == {"200", "413", "415", "422", "503"}
    assert predict["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationErrorBody"
    }
    record = spec["components"]["schemas"]["CustomerRecord"]
    assert "event_ts" not in record["required"] and "customerID" in record["required"]
    assert record["additionalProperties"] is False
    assert "securitySchemes" not in spec.get("components", {})
    assert {"/model", "/model/reload", "/health/live", "/health/ready", "/metrics"} <= set(
        spec["paths"]
    )
    # The documented examples are valid requests.
    for example in body["examples"].values():
        response = post_json(client, example["value"])
        assert response.status_code == 200, response.text


# --- the command ----------------------------------------------------------------------------


def test_serve_is_registered_and_a_missing_model_is_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    help_result = runner.invoke(cli_app, ["serve", "--help"])
    assert help_result.exit_code == 0 and "--model-path" in help_result.output
    result = runner.invoke(cli_app, ["serve", "--model-path", str(tmp_path / "none")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if line.startswith("error:")]


def _read_lines(stream: Any, sink: queue.Queue[str]) -> None:
    for line in stream:
        sink.put(line)


def test_serve_end_to_end_on_a_free_port(tmp_path: Path, model_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNSTREAM_")}
    env["CHURNSTREAM_API__TOKEN"] = TOKEN
    command = [sys.executable, "-m", "churnstream", "--log-level", "DEBUG", "serve"]
    command += ["--port", "0", "--model-path", str(model_dir)]
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        first = lines.get(timeout=60)
        assert "bearer token required" in first, first
        url = first.split(" on ", 1)[1].split(" ", 1)[0]
        deadline = time.monotonic() + 10
        while True:  # uvicorn accepts connections once its start-up is done
            try:
                with urllib.request.urlopen(f"{url}/health/ready", timeout=5) as response:  # noqa: S310
                    assert json.load(response)["status"] == "ready"
                break
            except (ConnectionError, urllib.error.URLError):
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.1)
        request = urllib.request.Request(  # noqa: S310
            f"{url}/predict",
            data=json.dumps(EXAMPLE_RECORD).encode(),
            headers={**AUTH, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert json.load(response)["customerID"] == EXAMPLE_RECORD["customerID"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/model", timeout=10)  # noqa: S310
        assert refused.value.code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    assert "POST /predict" in stderr  # uvicorn's access log, through our logging
    log_file = tmp_path / "logs" / "api.log"
    assert log_file.is_file()
    for text in (stderr, log_file.read_text(), "".join(lines.queue)):
        assert TOKEN not in text


def test_a_non_ascii_token_matches_the_bytes_a_client_sends(scorer: Scorer) -> None:
    token = "pässwört-✓"
    with make_client(scorer, token=token) as client:
        sent = {"Authorization": f"Bearer {token}".encode()}  # UTF-8 on the wire
        assert client.get("/model", headers=sent).status_code == 200
        wrong = {"Authorization": "Bearer pässwört-x".encode()}
        assert client.get("/model", headers=wrong).status_code == 401
