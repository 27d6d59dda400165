"""Options that several commands share, declared once, and the settings that flags override."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from churnstream.cli._common import init_logging
from churnstream.exceptions import ConfigError
from churnstream.scoring.engine import select_engine
from churnstream.settings import Settings, load_settings

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: The settings the shared --broker and --metrics-port flags override.
BROKER_SETTING = "kafka.bootstrap_servers"
METRICS_PORT_SETTING = "observability.metrics_port"

BROKER_HELP = f"Kafka bootstrap servers HOST:PORT; overrides {BROKER_SETTING}."
#: How long a producer or scorer retries an unreachable broker at start-up by default.
CONNECT_TIMEOUT_S = 60.0


def metrics_port_option(help_text: str) -> Any:
    """``--metrics-port``: a TCP port (0: any free one); each command says what it serves."""
    return typer.Option("--metrics-port", min=0, max=65535, help=help_text)


def setting_option(setting: str, *flags: str, **kwargs: Any) -> Any:
    """A flag that overrides ``setting`` for one run; its help names the setting it replaces."""
    return typer.Option(*flags, help=f"Default {setting}.", **kwargs)


def model_path_option(help_text: str) -> Any:
    """``--model-path``: a model version directory, or a models root (its ``latest``)."""
    return typer.Option("--model-path", help=help_text)


#: Declared as the ``broker`` parameter (and --metrics-port as ``metrics_port``), so that
#: kafka_command_settings() finds them in the parsed params by name.
BrokerOption = Annotated[str | None, typer.Option("--broker", help=BROKER_HELP)]
ModeOption = Annotated[str, typer.Option("--mode", help="streaming or batch.")]
ConnectTimeoutOption = Annotated[
    float,
    typer.Option("--connect-timeout", help="Seconds to retry an unreachable broker.", min=0),
]
DeadletterTopicOption = Annotated[
    str | None, setting_option("topics.deadletter", "--deadletter-topic")
]
ReportsDirOption = Annotated[Path | None, setting_option("paths.reports_dir", "--reports-dir")]
ModelPathOption = Annotated[
    Path | None, model_path_option("Model version dir or models root (default: latest).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ModelsDirOption = Annotated[Path | None, setting_option("model.models_dir", "--models-dir")]
#: The commands that read topics or ask the broker for metadata (topics, dlq, preflight,
#: status).
AdminTimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the broker to answer.")
]
IdleOption = Annotated[
    float,
    typer.Option("--idle", min=0.1, help="Stop reading after this many seconds without a message."),
]
#: ``stop`` of the dev broker and of the supervised scorer.
StopTimeoutOption = Annotated[
    float,
    typer.Option("--timeout", min=0.0, help="Seconds to wait after SIGTERM before SIGKILL."),
]

# The scorer's flags, taken alike by `consume` and the `spark-consume` it execs into (which
# gets them back by parameter name: consume_cmd.spark_consume_argv).
InputTopicOption = Annotated[str | None, setting_option("topics.raw", "--input-topic")]
OutputTopicOption = Annotated[str | None, setting_option("topics.predictions", "--output-topic")]
ConsumerGroupOption = Annotated[str | None, setting_option("consumer.group_id", "--consumer-group")]
ScorerModelPathOption = Annotated[
    Path | None, model_path_option("Model version dir or models root.")
]
BatchRecordsOption = Annotated[
    int | None, typer.Option("--batch-records", help="Micro-batch size cap.", min=1)
]
ReportsOption = Annotated[bool, typer.Option("--reports/--no-reports", help="Write summary files.")]
#: The settings those flags override, by parameter name (see :func:`setting_overrides`).
SCORER_SETTINGS = {
    "input_topic": "topics.raw.name",
    "output_topic": "topics.predictions.name",
    "deadletter_topic": "topics.deadletter.name",
    "consumer_group": "consumer.group_id",
    "model_path": "model.models_dir",
    "reports_dir": "paths.reports_dir",
}


def flags_of(command: Callable[..., Any], names: Collection[str]) -> Callable[[F], F]:
    """Give a command ``command``'s parameters ``names``: the same flags, types and defaults.

    For a command that must accept another's flags as they are (``spark-consume`` gets
    ``consume``'s back by parameter name), declared once. The decorated function takes them
    as ``**flags``; Typer reads its parameters from ``__signature__``, which lists its own
    first parameter (the context), then those of ``command`` in ``command``'s order, then
    its other parameters.
    """
    source = inspect.signature(command, eval_str=True).parameters
    unknown = set(names) - set(source)
    if unknown:
        raise TypeError(f"{command.__name__} has no parameter {', '.join(sorted(unknown))}")

    def decorate(func: F) -> F:
        own = inspect.signature(func, eval_str=True)
        first, *rest, flags = own.parameters.values()
        if flags.kind is not inspect.Parameter.VAR_KEYWORD:
            raise TypeError(f"{func.__name__} must take the flags of {command.__name__} as **")
        taken = [
            param.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for name, param in source.items()
            if name in names
        ]
        rest = [param.replace(kind=inspect.Parameter.KEYWORD_ONLY) for param in rest]
        func.__signature__ = own.replace(parameters=[first, *taken, *rest])  # type: ignore[attr-defined]
        return func

    return decorate


def setting_overrides(
    params: Mapping[str, object], settings: Mapping[str, str]
) -> dict[str, object]:
    """The overrides a command's parsed ``params`` give, for :func:`effective_settings`.

    ``settings`` maps a parameter name to the dotted setting its flag overrides (a table
    such as :data:`SCORER_SETTINGS`), so each command states the mapping once, as data.
    """
    return {setting: params[name] for name, setting in settings.items()}


def checked_mode(mode: str) -> Literal["streaming", "batch"]:
    """The ``--mode`` value, or ConfigError unless it is streaming or batch."""
    if mode not in ("streaming", "batch"):
        raise ConfigError(f"--mode must be 'streaming' or 'batch', not {mode!r}")
    return "batch" if mode == "batch" else "streaming"


def effective_settings(
    overrides: Mapping[str, object] | None = None,
    *,
    broker: str | None = None,
    metrics_port: int | None = None,
    kafka: bool = False,
) -> Settings:
    """A command's settings: YAML < environment < its flags.

    ``broker`` and ``metrics_port`` are the shared --broker and --metrics-port flags;
    ``overrides`` maps the dotted names of other settings to the command's flag values. A
    None value is a flag not given: the lower layers' value stays.

    ``kafka`` is for a command that talks to Kafka: librdkafka first judges every client
    configuration the command may build, with throwaway clients that connect nowhere, so a
    property it refuses (one of the ``kafka.librdkafka*`` settings, typically) ends the
    command in one line, exit 2, before any message moves.
    """
    settings = load_settings(
        **{BROKER_SETTING: broker, METRICS_PORT_SETTING: metrics_port, **(overrides or {})}
    )
    select_engine(settings.scoring.engine)
    if kafka:
        from churnstream.kafka.clientcheck import check_client_configs

        check_client_configs(settings)
    return settings


def kafka_command_settings(
    ctx: typer.Context,
    log_name: str | None,
    flag_settings: Mapping[str, str] | None = None,
    *,
    console_level: str | None = None,
) -> Settings:
    """The preamble of a command that talks to Kafka: its checked settings, then its logging.

    The settings are :func:`effective_settings` with ``kafka=True``, overridden by the
    command's parsed flags: the shared ``broker`` and ``metrics_port`` parameters when it
    has them, and those ``flag_settings`` maps (parameter name -> setting). A ``log_name``
    also logs to logs/<log_name>.log (see :func:`churnstream.cli._common.init_logging`).
    """
    params = ctx.params
    settings = effective_settings(
        setting_overrides(params, flag_settings or {}),
        broker=params.get("broker"),
        metrics_port=params.get("metrics_port"),
        kafka=True,
    )
    init_logging(ctx, log_name, settings, console_level=console_level)
    return settings
