"""churnstream_batch: produce the customer file, score it as one window, check the result.

ensure_broker >> create_topics >> preflight >> produce_batch >> score_window
>> write_report >> check_thresholds

Every task runs one churnstream command (the CLI of churnstream's own virtualenv) with a
timeout; the DAG holds no pipeline logic. Where churnstream lives, at run time:

- ``CHURNSTREAM_BIN``: the ``churnstream`` executable (default: ``churnstream`` on PATH),
  e.g. ``/opt/churnstream/.venv/bin/churnstream``;
- ``CHURNSTREAM_WORKDIR``: the directory commands run in, where ``config/churnstream.yaml``
  and the relative paths (data/, models/, reports/, .churnstream/) resolve (default: the
  parent of this dags/ folder, i.e. the churnstream checkout);
- everything else is churnstream's own configuration: ``CHURNSTREAM_CONFIG`` or
  ``CHURNSTREAM_<SECTION>__<KEY>`` variables (e.g. ``CHURNSTREAM_KAFKA__BOOTSTRAP_SERVERS``).

Each run has its own producer checkpoint (a retried produce resumes exactly where it
stopped; a new run sends the file again) and its own reports directory,
``<paths.reports_dir>/batch/<run id>``, so the threshold check reads this run's window.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

DEFAULT_WORKDIR = Path(__file__).resolve().parents[1]

# Runs before every command: where churnstream is, and this run's paths.
PRELUDE = f"""\
set -euo pipefail
cd "${{CHURNSTREAM_WORKDIR:-{DEFAULT_WORKDIR}}}"
export COLUMNS="${{COLUMNS:-160}}"
cs() {{ "${{CHURNSTREAM_BIN:-churnstream}}" "$@"; }}
RUN_REPORTS="${{CHURNSTREAM_PATHS__REPORTS_DIR:-reports}}/batch/{{{{ safe(run_id) }}}}"
CHECKPOINT=".churnstream/airflow/checkpoints/{{{{ safe(run_id) }}}}.json"
"""


def churnstream(
    task_id: str, command: str, *, timeout: timedelta, retries: int = 0
) -> BashOperator:
    """A task that runs ``command`` (bash, with ``cs`` = churnstream) under a timeout."""
    return BashOperator(
        task_id=task_id,
        bash_command=PRELUDE + command,
        execution_timeout=timeout,
        retries=retries,
        retry_delay=timedelta(seconds=30),
        # Exit 99 would mean "skipped" to Airflow; every non-zero exit is a failure here.
        skip_on_exit_code=None,
    )


def safe(text: str) -> str:
    """A run id as a file name (``:`` and ``+`` become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


with DAG(
    dag_id="churnstream_batch",
    description="Produce the customer file to Kafka, score it as one window, check thresholds.",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["churnstream"],
    user_defined_macros={"safe": safe},
    doc_md=__doc__,
    params={
        "embedded_broker": Param(
            True,
            type="boolean",
            description="Start churnstream's embedded broker if it is not running "
            "(`broker start`); false: only check that the configured cluster answers.",
        ),
        "data_path": Param(
            None,
            type=["null", "string"],
            description="CSV or Parquet to produce (default paths.raw_csv).",
        ),
        "consumer_group": Param(
            "churnstream-batch",
            type="string",
            description="The batch scorer's consumer group: its own, so that a streaming "
            "scorer on the same topic (group consumer.group_id) keeps all its partitions.",
        ),
        "idle_timeout_ms": Param(
            10_000, type="integer", minimum=1, description="The window closes after this idle."
        ),
        "max_dlq_rate": Param(
            None,
            type=["null", "number"],
            minimum=0,
            description="Fail above this dead-lettered / consumed (default 0.05).",
        ),
        "max_churn_shift": Param(
            None,
            type=["null", "number"],
            minimum=0,
            description="Fail above this |predicted - expected churn rate| "
            "(default observability.drift_churn_rate_tolerance).",
        ),
        "max_psi": Param(
            None,
            type=["null", "number"],
            minimum=0,
            description="Fail when a feature's PSI is above this "
            "(default observability.drift_psi_threshold).",
        ),
    },
) as dag:
    ensure_broker = churnstream(
        "ensure_broker",
        "{% if params.embedded_broker %}cs broker start --timeout 120"
        "{% else %}cs status --no-dead-letters --timeout 10{% endif %}",
        timeout=timedelta(minutes=3),
        retries=1,
    )
    create_topics = churnstream(
        "create_topics", "cs topics create", timeout=timedelta(minutes=2), retries=2
    )
    preflight = churnstream(
        "preflight", "cs scorer preflight --timeout 30", timeout=timedelta(minutes=3)
    )
    produce_batch = churnstream(
        "produce_batch",
        'cs produce --mode batch --checkpoint-file "$CHECKPOINT" --no-progress '
        "--connect-timeout 60"
        '{% if params.data_path %} --data-path "{{ params.data_path }}"{% endif %}',
        timeout=timedelta(minutes=30),
        retries=2,
    )
    score_window = churnstream(
        "score_window",
        "cs consume --mode batch --timeout-ms {{ params.idle_timeout_ms }} "
        '--consumer-group "{{ params.consumer_group }}" '
        '--reports-dir "$RUN_REPORTS" --connect-timeout 60',
        timeout=timedelta(minutes=60),
        retries=1,
    )
    write_report = churnstream(
        "write_report",
        'summary="$(ls -1 "$RUN_REPORTS"/summary_*.json | sort | tail -n 1)"\n'
        'cs report --input "$summary"',
        timeout=timedelta(minutes=5),
    )
    check_thresholds = churnstream(
        "check_thresholds",
        'cs check --latest --reports-dir "$RUN_REPORTS" --min-consumed 1'
        "{% if params.max_dlq_rate is not none %} --max-dlq-rate {{ params.max_dlq_rate }}"
        "{% endif %}"
        "{% if params.max_churn_shift is not none %}"
        " --max-churn-shift {{ params.max_churn_shift }}{% endif %}"
        "{% if params.max_psi is not none %} --max-psi {{ params.max_psi }}{% endif %}",
        timeout=timedelta(minutes=2),
    )

    (
        ensure_broker
        >> create_topics
        >> preflight
        >> produce_batch
        >> score_window
        >> write_report
        >> check_thresholds
    )
