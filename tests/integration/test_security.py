"""Security settings against a real secured Apache Kafka.

SASL/SCRAM, PLAIN, TLS, mutual TLS and OAUTHBEARER (unsecured JWT, and OIDC with a stand-in
token endpoint), also given through the kafka.librdkafka pass-through.

The module's broker is the embedded Kafka with extra listeners (churnstream.ops.devbroker.secure)
and a throwaway CA made with openssl. Every client here is built by churnstream's own code
(settings from the environment, ``client_config()``, ``admin``, ``SafeProducer``, the CLI), so
the tests prove that the settings render to a configuration the cluster accepts, and that a
refused login or an untrusted certificate ends in one clear line without a secret.
"""

from __future__ import annotations

import base64
import http.server
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from churnstream.exceptions import AuthenticationError, BrokerError
from churnstream.headers import SOURCE_HEADER
from churnstream.kafka import admin, reader
from churnstream.kafka.clientcheck import check_client_configs
from churnstream.kafka.connect import wait_for_broker
from churnstream.kafka.producer import SafeProducer
from churnstream.ops import devbroker
from churnstream.ops.devbroker.secure import (
    OAUTHBEARER_SCOPE,
    SecureBroker,
    ThrowawayPki,
    make_throwaway_pki,
    start_secure,
)
from churnstream.settings import Settings, load_settings
from churnstream.settings.sections import TopicSettings
from tests.integration.conftest import embedded_broker_settings
from tests.integration.kafka_io import read_topic, send_raw
from tests.integration.streams import customer_events

pytestmark = pytest.mark.integration

PASSWORD = "alice-S3cret-for-tests"
WRONG_PASSWORD = "not-alices-Pa55word"
OIDC_SECRET = "oidc-Client-s3cret"
FAIL_FAST_S = 5.0  # a failing CLI run, Python start-up included
CLI_TIMEOUT_S = 60.0
ROUND_TRIP_MESSAGES = 20


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    base = tmp_path_factory.mktemp("secure-kafka")
    pki = make_throwaway_pki(base / "pki")
    settings = embedded_broker_settings("kafka", base / "state")
    running = start_secure(
        settings, pki, username="alice", password=SecretStr(PASSWORD), oauthbearer=True
    )
    try:
        yield running
    finally:
        devbroker.stop(running.settings)


@pytest.fixture(scope="module")
def rogue_pki(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayPki:
    """Another throwaway CA: the broker's certificate is not signed by it."""
    return make_throwaway_pki(tmp_path_factory.mktemp("rogue-pki"))


def write_secret(directory: Path, value: str) -> Path:
    path = directory / f"secret-{uuid.uuid4().hex[:8]}"
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def security_env(
    secured: SecureBroker, listener: str, tmp_path: Path, **extra: str
) -> dict[str, str]:
    """``CHURNSTREAM_KAFKA__*`` variables for one listener of the secured broker."""
    pki = secured.pki
    env: dict[str, str]
    if listener == "SASL_PLAINTEXT":
        env = {"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_USERNAME": secured.username}
    elif listener == "SASL_SSL":
        env = {
            "SECURITY_PROTOCOL": "SASL_SSL",
            "SASL_USERNAME": secured.username,
            "SSL_CA_LOCATION": str(pki.ca_cert),
        }
    elif listener == "OAUTHBEARER":  # unsigned tokens: the test broker validates no signature
        env = {
            "SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "SASL_MECHANISM": "OAUTHBEARER",
            "SASL_OAUTHBEARER_METHOD": "unsecured-jwt",
            "SASL_OAUTHBEARER_CONFIG": f"principal=alice scope={OAUTHBEARER_SCOPE}",
        }
    elif listener == "SSL":
        env = {"SECURITY_PROTOCOL": "SSL", "SSL_CA_LOCATION": str(pki.ca_cert)}
    else:  # MTLS: the broker wants a client certificate; its key is encrypted
        key_pw = pki.client_key_password.get_secret_value()
        env = {
            "SECURITY_PROTOCOL": "SSL",
            "SSL_CA_LOCATION": str(pki.ca_cert),
            "SSL_CERTIFICATE_LOCATION": str(pki.client_cert),
            "SSL_KEY_LOCATION": str(pki.client_key),
            "SSL_KEY_PASSWORD_FILE": str(write_secret(tmp_path, key_pw)),
        }
    env.update(extra)
    return {f"CHURNSTREAM_KAFKA__{name}": value for name, value in env.items()}


def address(secured: SecureBroker, listener: str) -> str:
    return {
        "SASL_PLAINTEXT": secured.sasl_plaintext,
        "SASL_SSL": secured.sasl_ssl,
        "SSL": secured.ssl,
        "MTLS": secured.mtls,
        "OAUTHBEARER": secured.oauthbearer or "",
    }[listener]


def settings_from_env(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], bootstrap: str
) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(**{"kafka.bootstrap_servers": bootstrap})  # as --broker does


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout_s: float = CLI_TIMEOUT_S
) -> tuple[int, str, str, float]:
    """``python -m churnstream ARGS`` in a clean environment plus ``env``; (rc, out, err, s)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNSTREAM_")}
    full_env.update(env)
    full_env["COLUMNS"] = "200"  # rich tables: no wrapped topic names
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "churnstream", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,  # no config/churnstream.yaml here: defaults < env < flags
        timeout=timeout_s,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


def assert_no_secret(text: str, secured: SecureBroker) -> None:
    for secret in (
        PASSWORD,
        WRONG_PASSWORD,
        secured.pki.client_key_password.get_secret_value(),
        secured.pki.store_password.get_secret_value(),
    ):
        assert secret not in text


# --------------------------------------------------------------------------- accepted


def test_cli_creates_and_lists_topics_over_scram_sha_512(
    secured: SecureBroker, tmp_path: Path
) -> None:
    env = security_env(
        secured,
        "SASL_PLAINTEXT",
        tmp_path,
        SASL_MECHANISM="SCRAM-SHA-512",
        SASL_PASSWORD_FILE=str(write_secret(tmp_path, PASSWORD)),
    )
    # DEBUG: librdkafka's and our own logs must not show the password either.
    args = ["--log-level", "DEBUG", "topics", "create", "--broker", secured.sasl_plaintext]
    code, out, err, _ = run_cli(args, env, tmp_path)
    assert code == 0, err
    for name in ("telco.raw.customers", "telco.churn.predictions", "telco.deadletter"):
        assert name in out
    assert_no_secret(out + err, secured)

    code, out, err, _ = run_cli(
        ["topics", "list", "--broker", secured.sasl_plaintext], env, tmp_path
    )
    assert code == 0, err
    assert "telco.raw.customers" in out and "3 topics" in out


@pytest.mark.parametrize(
    ("listener", "extra"),
    [
        ("SASL_PLAINTEXT", {"SASL_MECHANISM": "PLAIN", "SASL_PASSWORD": PASSWORD}),
        ("SASL_SSL", {"SASL_MECHANISM": "SCRAM-SHA-256", "SASL_PASSWORD": PASSWORD}),
        ("SSL", {}),
        ("MTLS", {}),
        ("OAUTHBEARER", {}),
    ],
)
def test_produce_and_consume_round_trip(
    secured: SecureBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    listener: str,
    extra: dict[str, str],
) -> None:
    env = security_env(secured, listener, tmp_path, **extra)
    settings = settings_from_env(monkeypatch, env, address(secured, listener))
    assert_round_trip(settings, listener)


def assert_round_trip(settings: Settings, label: str) -> None:
    """Create a topic, produce to it and read it all back, with churnstream's own clients."""
    admin.check_reachable(settings.kafka, timeout_s=10)
    topic = f"secure-{label.lower()}-{uuid.uuid4().hex[:8]}"
    admin.create_topics(settings.kafka, [TopicSettings(name=topic, partitions=2)])

    producer = SafeProducer(settings.kafka.producer_config(settings.producer))
    for i in range(ROUND_TRIP_MESSAGES):
        producer.produce(topic, value=f'{{"n": {i}}}'.encode(), key=f"k{i}".encode())
    assert producer.flush(30) == 0
    assert (producer.stats.delivered, producer.stats.failed) == (ROUND_TRIP_MESSAGES, 0)

    records = reader.dump_topic(settings.kafka, topic, limit=ROUND_TRIP_MESSAGES, idle_s=0.5)
    assert sorted(r["value"]["n"] for r in records) == list(range(ROUND_TRIP_MESSAGES))
    admin.delete_topics(settings.kafka, [topic])


# --------------------------------------------------------------------------- refused


def test_cli_wrong_scram_password_fails_fast_in_one_line(
    secured: SecureBroker, tmp_path: Path
) -> None:
    env = security_env(
        secured,
        "SASL_PLAINTEXT",
        tmp_path,
        SASL_MECHANISM="SCRAM-SHA-512",
        SASL_PASSWORD=WRONG_PASSWORD,
    )
    code, out, err, took = run_cli(
        ["topics", "list", "--broker", secured.sasl_plaintext], env, tmp_path
    )
    print(f"wrong SCRAM password: exit {code} after {took:.2f}s: {err.strip()}")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: authentication failed at {secured.sasl_plaintext}: ")
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in err
    assert "kafka.sasl_username (alice)" in err
    assert "Traceback" not in err
    assert_no_secret(out + err, secured)
    assert took < FAIL_FAST_S


def test_cli_untrusted_broker_certificate_fails_fast_in_one_line(
    secured: SecureBroker, rogue_pki: ThrowawayPki, tmp_path: Path
) -> None:
    env = security_env(secured, "SSL", tmp_path, SSL_CA_LOCATION=str(rogue_pki.ca_cert))
    code, out, err, took = run_cli(["topics", "list", "--broker", secured.ssl], env, tmp_path)
    print(f"untrusted CA: exit {code} after {took:.2f}s: {err.strip()}")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(
        f"error: TLS handshake with {secured.ssl} failed: the broker's certificate is not trusted"
    )
    assert f"kafka.ssl_ca_location ({rogue_pki.ca_cert})" in err
    assert "Traceback" not in err
    assert_no_secret(out + err, secured)
    assert took < FAIL_FAST_S


@pytest.mark.parametrize(
    ("listener", "extra", "expected"),
    [
        (
            "SASL_SSL",
            {"SASL_MECHANISM": "SCRAM-SHA-256", "SASL_PASSWORD": WRONG_PASSWORD},
            "authentication failed at",
        ),
        (
            "SASL_PLAINTEXT",
            {"SASL_MECHANISM": "PLAIN", "SASL_USERNAME": "mallory", "SASL_PASSWORD": PASSWORD},
            "authentication failed at",
        ),
        (
            "MTLS",
            {
                "SSL_CERTIFICATE_LOCATION": "",
                "SSL_KEY_LOCATION": "",
                "SSL_KEY_PASSWORD_FILE": "",
            },
            "rejected our TLS client certificate",
        ),
    ],
)
def test_start_up_check_raises_authentication_error_quickly(
    secured: SecureBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    listener: str,
    extra: dict[str, str],
    expected: str,
) -> None:
    env = security_env(secured, listener, tmp_path, **extra)
    env = {k: v for k, v in env.items() if v}  # "" removes a variable (MTLS: no certificate)
    settings = settings_from_env(monkeypatch, env, address(secured, listener))
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as info:
        admin.check_reachable(settings.kafka, timeout_s=10)
    took = time.monotonic() - started
    assert expected in str(info.value)
    assert_no_secret(str(info.value), secured)
    assert took < 3.0, took


def test_scorer_start_up_wait_does_not_retry_a_refused_login(
    secured: SecureBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scorer waits for its broker with backoff; a wrong password must not be retried."""
    extra = {"SASL_MECHANISM": "SCRAM-SHA-512", "SASL_PASSWORD": WRONG_PASSWORD}
    env = security_env(secured, "SASL_PLAINTEXT", tmp_path, **extra)
    settings = settings_from_env(monkeypatch, env, secured.sasl_plaintext)
    started = time.monotonic()
    with pytest.raises(AuthenticationError):
        wait_for_broker(settings.kafka, timeout_s=30)
    assert time.monotonic() - started < 3.0


def test_wrong_key_password_is_one_clear_error(
    secured: SecureBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    env = security_env(secured, "MTLS", tmp_path)
    env["CHURNSTREAM_KAFKA__SSL_KEY_PASSWORD_FILE"] = str(write_secret(tmp_path, WRONG_PASSWORD))
    settings = settings_from_env(monkeypatch, env, secured.mtls)
    with pytest.raises(BrokerError) as info:
        admin.check_reachable(settings.kafka, timeout_s=10)
    message = str(info.value)
    assert message.startswith("invalid Kafka admin configuration: ")
    assert "is kafka.ssl_key_password (or _file) its password?" in message
    captured = capfd.readouterr()  # librdkafka also prints OpenSSL's reason to stderr
    assert_no_secret(message + captured.out + captured.err, secured)


# --------------------------------------------------------------------------- OAUTHBEARER


def unsecured_jwt(claims: dict[str, object]) -> str:
    """An unsigned JWS ("alg": "none"), the only kind the test broker's validator takes."""

    def b64(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none'})}.{b64(claims)}."


class TokenEndpoint:
    """A stand-in OIDC identity provider: the client credentials grant, one known client.

    It answers a POST with HTTP Basic ``client_id:client_secret`` with an unsigned token
    for ``sub`` = the client id and ``scope`` = the requested scope; anything else gets 401.
    Every request's grant type, scope and whether its credentials matched are recorded.
    """

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.expected = (
            "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        )
        self.client_id = client_id
        self.requests: list[dict[str, object]] = []
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                good = self.headers.get("Authorization") == endpoint.expected
                scope = form.get("scope", [""])[0]
                endpoint.requests.append(
                    {"grant_type": form.get("grant_type", [""])[0], "scope": scope, "ok": good}
                )
                if not good:
                    self.send_response(401)
                    self.end_headers()
                    return
                now = int(time.time())
                claims = {"sub": endpoint.client_id, "scope": scope, "iat": now, "exp": now + 600}
                body = json.dumps(
                    {
                        "access_token": unsecured_jwt(claims),
                        "token_type": "bearer",
                        "expires_in": 600,
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_endpoint() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint("churnstream-client", OIDC_SECRET)
    try:
        yield endpoint
    finally:
        endpoint.close()


def oidc_env(secured: SecureBroker, endpoint: TokenEndpoint, secret_file: Path) -> dict[str, str]:
    env = {
        "SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "SASL_MECHANISM": "OAUTHBEARER",
        "SASL_OAUTHBEARER_CLIENT_ID": endpoint.client_id,
        "SASL_OAUTHBEARER_CLIENT_SECRET_FILE": str(secret_file),
        "SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": endpoint.url,
        "SASL_OAUTHBEARER_SCOPE": OAUTHBEARER_SCOPE,
    }
    return {f"CHURNSTREAM_KAFKA__{name}": value for name, value in env.items()}


def test_oauthbearer_oidc_client_credentials_round_trip(
    secured: SecureBroker,
    token_endpoint: TokenEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OIDC as churnstream renders it: librdkafka asks the endpoint, the broker takes the token."""
    env = oidc_env(secured, token_endpoint, write_secret(tmp_path, OIDC_SECRET))
    settings = settings_from_env(monkeypatch, env, secured.oauthbearer or "")
    check_client_configs(settings)  # the throwaway clients do not ask the endpoint
    assert token_endpoint.requests == []
    assert_round_trip(settings, "oidc")
    assert token_endpoint.requests, "librdkafka never asked the token endpoint"
    assert all(
        r == {"grant_type": "client_credentials", "scope": OAUTHBEARER_SCOPE, "ok": True}
        for r in token_endpoint.requests
    ), token_endpoint.requests


def test_oauthbearer_through_the_librdkafka_passthrough(
    secured: SecureBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole OAUTHBEARER set-up given as raw librdkafka properties, plus tuning ones."""
    passthrough = {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "OAUTHBEARER",
        "enable.sasl.oauthbearer.unsecure.jwt": True,
        "sasl.oauthbearer.config": f"principal=alice scope={OAUTHBEARER_SCOPE}",
        "client.rack": "use1-az1",
        "socket.keepalive.enable": True,
    }
    env = {
        "CHURNSTREAM_KAFKA__LIBRDKAFKA": json.dumps(passthrough),
        "CHURNSTREAM_KAFKA__LIBRDKAFKA_CONSUMER": json.dumps({"fetch.max.bytes": 10_485_760}),
        "CHURNSTREAM_KAFKA__LIBRDKAFKA_PRODUCER": json.dumps({"linger.ms": 0.5}),
    }
    settings = settings_from_env(monkeypatch, env, secured.oauthbearer or "")
    assert settings.kafka.security_protocol == "PLAINTEXT"  # the typed setting, overridden
    check_client_configs(settings)
    assert_round_trip(settings, "passthrough")


def test_cli_oauthbearer_token_without_the_required_scope_fails_fast_in_one_line(
    secured: SecureBroker, tmp_path: Path
) -> None:
    env = security_env(
        secured, "OAUTHBEARER", tmp_path, SASL_OAUTHBEARER_CONFIG="principal=alice scope=other"
    )
    broker_address = secured.oauthbearer or ""
    code, out, err, took = run_cli(["topics", "list", "--broker", broker_address], env, tmp_path)
    print(f"token without the scope: exit {code} after {took:.2f}s: {err.strip()}")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: authentication failed at {broker_address}: ")
    assert "kafka.sasl_oauthbearer_config (principal=alice scope=other)" in err
    assert "Traceback" not in err
    assert took < FAIL_FAST_S


def test_cli_oauthbearer_against_a_scram_only_listener_fails_in_one_line(
    secured: SecureBroker, tmp_path: Path
) -> None:
    """The wrong mechanism for the listener: the broker does not offer OAUTHBEARER there."""
    env = security_env(secured, "OAUTHBEARER", tmp_path)
    code, out, err, took = run_cli(
        ["topics", "list", "--broker", secured.sasl_plaintext], env, tmp_path
    )
    print(f"OAUTHBEARER at a SCRAM listener: exit {code} after {took:.2f}s: {err.strip()}")
    assert code == 1
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: authentication failed at {secured.sasl_plaintext}: ")
    assert "OAUTHBEARER" in err and "Traceback" not in err
    assert took < FAIL_FAST_S


def test_oidc_wrong_client_secret_is_refused_without_showing_it(
    secured: SecureBroker,
    token_endpoint: TokenEndpoint,
    tmp_path: Path,
) -> None:
    env = oidc_env(secured, token_endpoint, write_secret(tmp_path, WRONG_PASSWORD))
    broker_address = secured.oauthbearer or ""
    code, out, err, took = run_cli(
        ["--log-level", "DEBUG", "topics", "list", "--broker", broker_address, "--timeout", "5"],
        env,
        tmp_path,
    )
    print(f"wrong OIDC client secret: exit {code} after {took:.2f}s: {err.strip()[-400:]}")
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert token_endpoint.requests and not any(r["ok"] for r in token_endpoint.requests)
    assert WRONG_PASSWORD not in out + err and OIDC_SECRET not in out + err


# --------------------------------------------------------------------------- Spark engine

SPARK_EVENTS = 20
SPARK_TIMEOUT_S = 300.0


@pytest.fixture(scope="module")
def spark_jars() -> Path:
    """Spark's Kafka connector jars (fetched once with Maven into the project's cache)."""
    pytest.importorskip("pyspark")
    from churnstream.spark.jars import fetch_connector_jars

    jars_dir = Settings().spark.jars_dir.resolve()
    fetch_connector_jars(jars_dir)
    return jars_dir


def spark_topics(secured: SecureBroker, label: str) -> tuple[str, str, str]:
    """Fresh raw, predictions and dead-letter topics, the raw one holding SPARK_EVENTS."""
    suffix = uuid.uuid4().hex[:8]
    names = tuple(f"spark-{label}-{kind}-{suffix}" for kind in ("raw", "preds", "dlq"))
    plain = load_settings(**{"kafka.bootstrap_servers": secured.plaintext}).kafka
    admin.create_topics(plain, [TopicSettings(name=name, partitions=2) for name in names])
    send_raw(secured.plaintext, names[0], customer_events(0, SPARK_EVENTS))
    return names[0], names[1], names[2]


def files_text(directory: Path) -> str:
    return "".join(
        p.read_bytes().decode("utf-8", "replace") for p in directory.rglob("*") if p.is_file()
    )


def pbes1_copy(pki: ThrowawayPki, directory: Path) -> Path:
    """The client key re-encrypted with PBE-SHA1-3DES (same password): the Java client on
    Java 17 cannot decrypt OpenSSL's default PBES2, which churnstream refuses for Spark."""
    out = directory / "client-pbes1.key"
    env = {**os.environ, "KEY_PW": pki.client_key_password.get_secret_value()}
    subprocess.run(  # noqa: S603 - fixed argv
        ["openssl", "pkcs8", "-topk8", "-v1", "PBE-SHA1-3DES", "-in", str(pki.client_key)]  # noqa: S607
        + ["-passin", "env:KEY_PW", "-passout", "env:KEY_PW", "-out", str(out)],
        env=env,
        check=True,
        capture_output=True,
        timeout=30,
    )
    return out


def test_cli_spark_consume_over_sasl_ssl_scram(
    secured: SecureBroker, spark_jars: Path, model_dir: Path, tmp_path: Path
) -> None:
    """consume --engine spark end to end through TLS and SCRAM-SHA-512 (password file)."""
    raw, preds, dlq = spark_topics(secured, "sasl-ssl")
    env = security_env(
        secured,
        "SASL_SSL",
        tmp_path,
        SASL_MECHANISM="SCRAM-SHA-512",
        SASL_PASSWORD_FILE=str(write_secret(tmp_path, PASSWORD)),
    )
    env["CHURNSTREAM_SPARK__JARS_DIR"] = str(spark_jars)
    checkpoint = tmp_path / "checkpoint"
    args = ["consume", "--mode", "batch", "--engine", "spark", "--master", "local[1]"]
    args += ["--broker", secured.sasl_ssl, "--input-topic", raw, "--output-topic", preds]
    args += ["--deadletter-topic", dlq, "--model-path", str(model_dir)]
    args += ["--checkpoint-location", str(checkpoint), "--reports-dir", str(tmp_path / "r")]
    code, out, err, took = run_cli(args, env, tmp_path, timeout_s=SPARK_TIMEOUT_S)
    print(f"spark consume over SASL_SSL: exit {code} after {took:.1f}s")
    assert code == 0, err[-3000:]
    assert f"consumed {SPARK_EVENTS}," in out, out

    predictions = read_topic(secured.plaintext, preds, expect=SPARK_EVENTS, idle_s=0.5)
    assert len({r.headers[SOURCE_HEADER] for r in predictions}) == SPARK_EVENTS
    # The checkpoint advanced past every event: offsets of the last committed batch.
    assert (checkpoint / "commits" / "0").is_file()
    last = max((checkpoint / "offsets").glob("[0-9]*"), key=lambda p: int(p.name))
    offsets = json.loads(last.read_text().splitlines()[-1])[raw]
    assert sum(offsets.values()) == SPARK_EVENTS
    assert_no_secret(out + err + files_text(checkpoint), secured)


def test_spark_batch_over_mtls_and_a_refused_password_that_is_never_echoed(
    secured: SecureBroker,
    spark_jars: Path,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The Spark query itself (no librdkafka check first): an encrypted (PBES1) PKCS#8
    client key in a PEM keystore is accepted; a wrong SCRAM password fails the query in one
    line, and the password is in no message, log line, Spark output or checkpoint file."""
    from churnstream.exceptions import SparkError
    from churnstream.model.scorer import Scorer
    from churnstream.spark.commands import spark_session
    from churnstream.spark.jars import connector_jars
    from churnstream.spark.kafka_batch import run_spark_batch
    from churnstream.spark.kafka_security import REDACTION_REGEX

    caplog.set_level(logging.DEBUG, logger="churnstream")
    scorer = Scorer.load(model_dir)
    conf = {
        "spark.jars": ",".join(str(j) for j in connector_jars(spark_jars)),
        "spark.sql.redaction.options.regex": REDACTION_REGEX,
    }
    with spark_session("local[1]", conf, "churnstream-security-test") as spark:
        raw, preds, dlq = spark_topics(secured, "mtls")
        overrides = {"topics.raw.name": raw, "topics.predictions.name": preds}
        overrides["topics.deadletter.name"] = dlq
        mtls = security_env(secured, "MTLS", tmp_path)
        mtls["CHURNSTREAM_KAFKA__SSL_KEY_LOCATION"] = str(pbes1_copy(secured.pki, tmp_path))
        for name, value in mtls.items():
            monkeypatch.setenv(name, value)
        settings = load_settings(**{"kafka.bootstrap_servers": secured.mtls, **overrides})
        summary = run_spark_batch(spark, settings, scorer, checkpoint=tmp_path / "mtls")
        assert summary.consumed == SPARK_EVENTS
        assert (
            len(read_topic(secured.plaintext, preds, expect=SPARK_EVENTS, idle_s=0.5))
            == SPARK_EVENTS
        )

        extra = {"SASL_MECHANISM": "SCRAM-SHA-512", "SASL_PASSWORD": WRONG_PASSWORD}
        for name, value in security_env(secured, "SASL_SSL", tmp_path, **extra).items():
            monkeypatch.setenv(name, value)
        wrong = load_settings(**{"kafka.bootstrap_servers": secured.sasl_ssl, **overrides})
        with pytest.raises(SparkError) as info:
            run_spark_batch(spark, wrong, scorer, checkpoint=tmp_path / "refused")
    message = str(info.value)
    print(f"wrong password on Spark: {message}")
    assert "\n" not in message and "Authentication failed" in message
    captured = capfd.readouterr()
    everything = message + captured.out + captured.err + caplog.text
    assert_no_secret(everything + files_text(tmp_path / "refused"), secured)
    assert_no_secret(files_text(tmp_path / "mtls"), secured)
