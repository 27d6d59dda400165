"""A Spark standalone cluster on 127.0.0.1 from pyspark's own launcher (``bin/spark-class``).

One master and two workers (one core each, little memory), started as the deploy scripts
would start them, waited for (both workers registered and ALIVE), and stopped. Each process
runs with its working directory under pytest's basetemp, so the session's reaper stops them
should pytest die first.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import orjson

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
WORKER_CORES = 1
#: An executor takes spark.executor.memory out of this; tests ask for EXECUTOR_MEMORY.
WORKER_MEMORY = "1g"
EXECUTOR_MEMORY = "512m"
DAEMON_HEAP = "256m"


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spark_class() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-class"


@dataclass
class SparkCluster:
    """A running standalone cluster: ``master_url`` is what ``--master`` takes."""

    workdir: Path
    workers: int = 2
    master_url: str = ""
    web_url: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SPARK_LOCAL_IP="127.0.0.1",
            SPARK_DAEMON_MEMORY=DAEMON_HEAP,
            SPARK_LOG_DIR=str(self.workdir / "logs"),
            PYSPARK_PYTHON=sys.executable,
        )
        env.pop("SPARK_CONF_DIR", None)  # the cluster is ours: no site defaults
        return env

    def _spawn(self, name: str, argv: list[str]) -> None:
        cwd = self.workdir / name
        cwd.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / f"{name}.log").open("wb")
        self.processes.append(
            subprocess.Popen(  # noqa: S603 - fixed argv
                [str(spark_class()), *argv],
                cwd=cwd,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def start(self) -> SparkCluster:
        port, web = free_port(), free_port()
        self.master_url = f"spark://127.0.0.1:{port}"
        self.web_url = f"http://127.0.0.1:{web}"
        self._spawn(
            "master",
            [MASTER_CLASS, "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(web)],
        )
        for i in range(self.workers):
            self._spawn(
                f"worker{i}",
                [
                    WORKER_CLASS,
                    self.master_url,
                    "--host",
                    "127.0.0.1",
                    "--cores",
                    str(WORKER_CORES),
                    "--memory",
                    WORKER_MEMORY,
                    "--webui-port",
                    str(free_port()),
                    "--work-dir",
                    str(self.workdir / f"worker{i}" / "work"),
                ],
            )
        try:
            self.wait_alive(START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return self

    def alive_workers(self) -> int:
        """ALIVE workers according to the master's JSON status page (0 if it is not up)."""
        try:
            with urllib.request.urlopen(f"{self.web_url}/json/", timeout=2) as response:  # noqa: S310
                status = orjson.loads(response.read())
        except (OSError, ValueError):
            return 0
        return sum(1 for w in status.get("workers", []) if w.get("state") == "ALIVE")

    def wait_alive(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for proc in self.processes:
                if proc.poll() is not None:
                    raise RuntimeError(f"a Spark daemon exited early ({self.logs_tail()})")
            if self.alive_workers() >= self.workers:
                return
            time.sleep(0.5)
        raise TimeoutError(f"Spark cluster not up after {timeout_s:.0f}s ({self.logs_tail()})")

    def logs_tail(self, lines: int = 5) -> str:
        tails = []
        for log in sorted(self.workdir.glob("*.log")):
            text = log.read_text(errors="replace").strip().splitlines()[-lines:]
            tails.append(f"{log.name}: " + " | ".join(text))
        return "; ".join(tails)

    def stop(self) -> None:
        # Workers first, so that the master does not log them as lost.
        for proc in reversed(self.processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT_S)
        self.processes.clear()
