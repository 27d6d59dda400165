"""The REST API under load: 50 concurrent clients, good and malformed requests mixed.

``churnstream serve`` runs as a subprocess with a real model; each client thread sends, for
``API_LOAD_SECONDS`` (default 60), a seeded mix of good requests (dataset records, one or a
few per request) and malformed ones, each kind with the one status it must get. Asserted: no
5xx at all, every request gets exactly its expected status (no transport errors either),
and the server's RSS at the end is at most 1.2 x its RSS after the first 10 s.
Printed: request count and rate, p50/p99 latency, statuses by kind, RSS.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DURATION_ENV = "API_LOAD_SECONDS"
DEFAULT_DURATION_S = 60.0
CLIENTS = 50
SEED = 20_261_127
BASELINE_AFTER_S = 10.0
RSS_GROWTH_LIMIT = 1.2
RSS_SAMPLE_EVERY_S = 1.0
REQUEST_TIMEOUT_S = 60.0
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
MAX_BODY_BYTES = 2_097_152  # api.max_body_bytes's default
CHURNSTREAM = Path(sys.executable).with_name("churnstream")


def load_records(dataset: Path) -> list[dict[str, Any]]:
    """Dataset rows as the API's customer records (typed as the contract wants them)."""
    with dataset.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["SeniorCitizen"] = int(row["SeniorCitizen"])
        row["tenure"] = int(row["tenure"])
        row["MonthlyCharges"] = float(row["MonthlyCharges"])
        # TotalCharges stays a string: numeric, or blank for the 11 tenure-0 customers.
    return rows


@dataclass(frozen=True)
class Request:
    kind: str
    expected: int
    body: bytes
    content_type: str = "application/json"


def request_maker(records: list[dict[str, Any]]) -> Callable[[random.Random], Request]:
    oversize = b'{"customerID": "' + b"x" * (MAX_BODY_BYTES + 1024) + b'"}'

    def make(rng: random.Random) -> Request:
        roll = rng.random()
        record = dict(rng.choice(records))
        if roll < 0.55:
            return Request("good_one", 200, orjson.dumps(record))
        if roll < 0.70:
            batch = [rng.choice(records) for _ in range(rng.randint(2, 20))]
            return Request("good_list", 200, orjson.dumps(batch))
        if roll < 0.76:
            return Request("bad_json", 422, orjson.dumps(record)[: rng.randint(1, 200)])
        if roll < 0.82:
            record["tenure"] = rng.choice(["ten", None, [1], 1.5, True])
            return Request("wrong_type", 422, orjson.dumps(record))
        if roll < 0.88:
            del record[rng.choice(["Contract", "tenure", "customerID", "MonthlyCharges"])]
            return Request("missing_field", 422, orjson.dumps(record))
        if roll < 0.91:
            record["unknown_field"] = 1
            return Request("extra_field", 422, orjson.dumps(record))
        if roll < 0.97:
            return Request("content_type", 415, orjson.dumps(record), "text/plain")
        return Request("oversize", 413, oversize)

    return make


@dataclass
class Result:
    kind: str
    expected: int
    status: int | None  # None: no HTTP answer (transport error)
    seconds: float
    error: str = ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


@pytest.fixture
def server(model_dir: Path, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    log = tmp_path / "serve.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(CHURNSTREAM), "serve", "--port", str(port), "--model-path", str(model_dir)],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not ready in {START_TIMEOUT_S:g}s"
            time.sleep(0.2)
        yield Server(proc, url, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(900)
def test_api_under_load_answers_every_request_with_its_status(
    server: Server, dataset_path: Path
) -> None:
    duration_s = float(os.environ.get(DURATION_ENV, DEFAULT_DURATION_S))
    make = request_maker(load_records(dataset_path))
    results: list[list[Result]] = [[] for _ in range(CLIENTS)]
    rss: list[tuple[float, int]] = []
    started = time.monotonic()
    deadline = started + duration_s

    def client(index: int) -> None:
        rng = random.Random(SEED + index)
        out = results[index]
        with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as http:
            while time.monotonic() < deadline:
                req = make(rng)
                sent = time.perf_counter()
                try:
                    response = http.post(
                        "/predict", content=req.body, headers={"content-type": req.content_type}
                    )
                    status, error = response.status_code, ""
                except httpx.HTTPError as exc:
                    status, error = None, f"{type(exc).__name__}: {exc}"
                out.append(
                    Result(req.kind, req.expected, status, time.perf_counter() - sent, error)
                )

    def sample_rss() -> None:
        while time.monotonic() < deadline:
            rss.append((time.monotonic() - started, rss_kib(server.proc.pid)))
            time.sleep(RSS_SAMPLE_EVERY_S)
        rss.append((time.monotonic() - started, rss_kib(server.proc.pid)))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    threads.append(threading.Thread(target=sample_rss, daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration_s + REQUEST_TIMEOUT_S * 2)
    assert not any(t.is_alive() for t in threads), "a client did not finish"
    elapsed = time.monotonic() - started
    everything = [r for per_client in results for r in per_client]

    seconds = np.array([r.seconds for r in everything]) * 1000
    good = np.array([r.seconds for r in everything if r.expected == 200]) * 1000
    by_kind: dict[str, Counter[int | None]] = {}
    for r in everything:
        by_kind.setdefault(r.kind, Counter())[r.status] += 1
    baseline = next((kib for t, kib in rss if t >= BASELINE_AFTER_S), rss[0][1])
    final = rss[-1][1]
    print(
        f"\n[api-load] {len(everything)} requests from {CLIENTS} clients in {elapsed:.1f}s "
        f"({len(everything) / elapsed:.0f} req/s); latency p50 {np.percentile(seconds, 50):.1f} "
        f"ms, p99 {np.percentile(seconds, 99):.1f} ms; good requests p50 "
        f"{np.percentile(good, 50):.1f} ms, p99 {np.percentile(good, 99):.1f} ms"
    )
    print(f"[api-load] statuses by kind: { {k: dict(v) for k, v in sorted(by_kind.items())} }")
    print(
        f"[api-load] server RSS {rss[0][1] / 1024:.0f} MiB at start, {baseline / 1024:.0f} MiB "
        f"after {BASELINE_AFTER_S:g}s, {final / 1024:.0f} MiB at the end "
        f"(x{final / baseline:.3f}), peak {max(k for _, k in rss) / 1024:.0f} MiB"
    )

    assert elapsed >= duration_s
    assert len(by_kind) >= 8, f"some request kinds were never sent: {sorted(by_kind)}"
    server_errors = [r for r in everything if r.status is not None and r.status >= 500]
    assert not server_errors, f"{len(server_errors)} 5xx: {Counter(r.kind for r in server_errors)}"
    transport = [r for r in everything if r.status is None]
    assert not transport, f"{len(transport)} without an answer, e.g. {transport[0].error}"
    wrong = [r for r in everything if r.status != r.expected]
    assert not wrong, Counter((r.kind, r.expected, r.status) for r in wrong)
    assert final <= RSS_GROWTH_LIMIT * baseline, (
        f"server RSS grew from {baseline} KiB after {BASELINE_AFTER_S:g}s to {final} KiB"
    )
    assert "Traceback" not in server.log.read_text(errors="replace")
