"""`churnstream serve`: the REST API (POST /predict, GET /model, /health/*, /metrics)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from churnstream.cli._common import init_logging
from churnstream.cli.options import ModelPathOption, effective_settings
from churnstream.exceptions import ConfigError

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: How long in-flight requests get to finish after Ctrl-C/SIGTERM.
GRACEFUL_SHUTDOWN_S = 10


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option("--host", help="Default api.host (127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", help="Default api.port (8000); 0: any free port.", min=0, max=65535),
    ] = None,
    model_path: ModelPathOption = None,
    max_batch_records: Annotated[
        int | None,
        typer.Option(
            "--max-batch-records", help="Records per POST /predict (api.max_batch_records).", min=1
        ),
    ] = None,
) -> None:
    """Serve the model over HTTP: POST /predict, GET /model, POST /model/reload, /health/*,
    /metrics and the OpenAPI docs at /docs. Set CHURNSTREAM_API__TOKEN to require a bearer
    token. Stop with Ctrl-C."""
    # Imported late: scikit-learn and uvicorn cost a second that --help should not pay.
    import uvicorn

    from churnstream.api.app import create_app
    from churnstream.dashboard.app import bind_socket
    from churnstream.model.scorer import Scorer

    settings = effective_settings(
        {"api.host": host, "api.port": port, "api.max_batch_records": max_batch_records}
    )
    init_logging(ctx, "api", settings)
    api = settings.api
    # Load before listening: a missing or corrupt model is one line and exit 1, not a server
    # that answers 503.
    scorer = Scorer.load(model_path or settings.model.models_dir)
    app = create_app(settings, scorer, model_path=model_path)
    try:
        sock = bind_socket(api.host, api.port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {api.host}:{api.port}: {exc.strerror}") from None
    bound_port = int(sock.getsockname()[1])
    if api.token is None and api.host not in LOOPBACK_HOSTS:
        logger.warning(
            "serving on %s without api.token: anyone who can reach it can use it", api.host
        )
    auth = "bearer token required" if api.token is not None else "no authentication"
    shown_host = f"[{api.host}]" if ":" in api.host else api.host
    typer.echo(
        f"serving model {scorer.version} on http://{shown_host}:{bound_port} ({auth}); "
        "docs at /docs (Ctrl-C to stop)"
    )
    config = uvicorn.Config(
        app,
        log_config=None,  # our logging set-up (console and logs/api.log) takes uvicorn's logs
        access_log=True,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it handled: a normal stop
        pass
    finally:
        sock.close()
