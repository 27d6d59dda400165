"""Wires each command group module into the root app."""

from __future__ import annotations

import typer

from churnstream.cli._common import App


def register(app: App) -> None:
    from churnstream.cli import (
        broker,
        check_cmd,
        config_cmd,
        consume_cmd,
        dashboard_cmd,
        data_cmd,
        demo_cmd,
        dlq_cmd,
        model_cmd,
        predict_cmd,
        produce_cmd,
        report_cmd,
        schema_cmd,
        scorer_cmd,
        spark_consume_cmd,
        status_cmd,
        topics,
    )
    from churnstream.cli import train as train_cmd

    app.add_typer(broker.app, name="broker")
    app.add_typer(topics.app, name="topics")
    app.add_typer(config_cmd.app, name="config")
    app.add_typer(data_cmd.app, name="data")
    app.add_typer(schema_cmd.app, name="schema")
    app.add_typer(dlq_cmd.app, name="dlq")
    app.add_typer(model_cmd.app, name="model")
    app.command("train")(train_cmd.train)
    app.command("predict")(predict_cmd.predict)
    app.command("produce")(produce_cmd.produce)
    app.command("consume")(consume_cmd.consume)
    app.command(spark_consume_cmd.COMMAND, hidden=True)(spark_consume_cmd.spark_consume)
    app.command("demo")(demo_cmd.demo)
    app.command("status")(status_cmd.status)
    app.command("dashboard")(dashboard_cmd.dashboard)
    app.command("report")(report_cmd.report)
    app.command("check")(check_cmd.check)
    app.add_typer(scorer_cmd.app, name="scorer")
    from churnstream.cli import serve_cmd

    app.command("serve")(serve_cmd.serve)
    _ = typer  # keep the import for type checkers of sub-apps
