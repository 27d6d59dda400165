"""`churnstream dashboard`: a live web page of the pipeline."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from churnstream.cli.options import (
    BrokerOption,
    DeadletterTopicOption,
    kafka_command_settings,
    setting_option,
)

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0


def dashboard(
    ctx: typer.Context,
    broker: BrokerOption = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            help="HTTP port (default observability.dashboard_port; 0: any).",
            min=0,
            max=65535,
        ),
    ] = None,
    host: Annotated[str | None, setting_option("observability.dashboard_host", "--host")] = None,
    predictions_topic: Annotated[
        str | None, setting_option("topics.predictions", "--predictions-topic")
    ] = None,
    raw_topic: Annotated[
        str | None,
        typer.Option("--raw-topic", help="Inputs, for segments (default topics.raw)."),
    ] = None,
    deadletter_topic: DeadletterTopicOption = None,
    dead_letters: Annotated[
        bool, typer.Option("--dead-letters/--no-dead-letters", help="Follow the dead letters.")
    ] = True,
    metrics_url: Annotated[
        str | None,
        typer.Option(
            "--metrics-url",
            help="The scorer's metrics, e.g. http://127.0.0.1:9108/metrics (lag, drift).",
        ),
    ] = None,
    scorer_group: Annotated[
        str | None,
        typer.Option(
            "--scorer-group",
            help="Without --metrics-url, lag from this group's commits (consumer.group_id).",
        ),
    ] = None,
    from_beginning: Annotated[
        bool,
        typer.Option("--from-beginning/--from-now", help="Replay the topics or start at the end."),
    ] = False,
    refresh_ms: Annotated[
        int | None,
        typer.Option(
            "--refresh-ms",
            help="Page refresh (default observability.dashboard_refresh_ms).",
            min=100,
        ),
    ] = None,
) -> None:
    """Serve a live dashboard: throughput, churn over time and by segment, latency, lag,
    dead letters and the highest-risk customers. Stop with Ctrl-C."""
    from churnstream.dashboard.app import DashboardServer, create_app
    from churnstream.dashboard.follower import Follower, FollowOptions
    from churnstream.dashboard.scraper import MetricsScraper
    from churnstream.dashboard.state import DashboardState
    from churnstream.kafka import admin

    settings = kafka_command_settings(ctx, "dashboard")
    obs = settings.observability
    admin.check_reachable(settings.kafka, timeout_s=CONNECT_TIMEOUT_S)
    options = FollowOptions(
        predictions_topic=predictions_topic or settings.topics.predictions.name,
        raw_topic=raw_topic or settings.topics.raw.name,
        deadletter_topic=(deadletter_topic or settings.topics.deadletter.name)
        if dead_letters
        else None,
        from_beginning=from_beginning,
    )
    state = DashboardState(join_inputs=options.raw_topic is not None)
    follower = Follower(settings, options, state)
    scraper = MetricsScraper(
        state,
        metrics_url=metrics_url,
        settings=settings,
        scorer_group=scorer_group or settings.consumer.group_id,
        raw_topic=options.raw_topic,
    )
    info = {
        "broker": settings.kafka.bootstrap_servers,
        "predictions_topic": options.predictions_topic,
        "raw_topic": options.raw_topic,
        "deadletter_topic": options.deadletter_topic,
        "metrics_url": metrics_url,
    }
    app = create_app(state, refresh_ms=refresh_ms or obs.dashboard_refresh_ms, info=info)
    server = DashboardServer(
        app,
        host=host or obs.dashboard_host,
        port=obs.dashboard_port if port is None else port,
    )
    typer.echo(f"dashboard on {server.url} (Ctrl-C to stop)")
    follower.start()
    scraper.start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it handled: a normal stop
        pass
    finally:
        follower.stop()
        scraper.stop()
        server.close()
