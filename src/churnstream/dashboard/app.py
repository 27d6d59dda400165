"""The dashboard web app: one static page that polls ``/api/state`` (FastAPI + uvicorn).

No front-end build: ``static/`` holds the page, its script and a vendored Chart.js
(``chart.umd.min.js``, MIT, licence in ``static/chart.js.LICENSE.md``).

Routes: ``/`` the page, ``/api/state`` the live numbers (:meth:`DashboardState.snapshot`
plus the page's settings), ``/health`` liveness, ``/static/*`` the assets.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from churnstream.dashboard.state import DashboardState

logger = logging.getLogger(__name__)

STATIC_DIR = Path(str(resources.files("churnstream.dashboard") / "static"))
START_TIMEOUT_S = 10.0


def create_app(
    state: DashboardState,
    *,
    refresh_ms: int = 1000,
    info: dict[str, Any] | None = None,
) -> FastAPI:
    """The FastAPI app serving ``state``; ``info`` (topics, broker...) is shown in the header."""
    app = FastAPI(title="churnstream dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    page_info = dict(info or {})

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/state")
    def api_state() -> JSONResponse:
        snapshot = state.snapshot()
        snapshot["info"] = page_info
        snapshot["refresh_ms"] = refresh_ms
        return JSONResponse(snapshot, headers={"Cache-Control": "no-store"})

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: a free port), for uvicorn."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class DashboardServer:
    """uvicorn serving an app on a socket bound up front (so ``.port`` is known at once).

    ``serve_forever()`` runs in the calling thread (uvicorn handles SIGINT/SIGTERM there);
    ``start()`` runs it in a daemon thread instead (tests), ``close()`` stops it.
    """

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sock = bind_socket(host, port)
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        self._server.run(sockets=[self._sock])

    def start(self) -> DashboardServer:
        # uvicorn installs signal handlers only on the main thread, so none here.
        self._thread = threading.Thread(
            target=self.serve_forever, name="dashboard-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the dashboard server did not start")
            time.sleep(0.02)
        return self

    def close(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(START_TIMEOUT_S)
        self._sock.close()
