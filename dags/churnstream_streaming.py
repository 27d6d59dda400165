"""churnstream_streaming: keep a streaming scorer alive and check it every few minutes.

preflight >> ensure_scorer >> [check_health, check_window]

- **preflight**: the broker answers, the three topics exist, the model loads
  (``churnstream scorer preflight``);
- **ensure_scorer**: ``churnstream scorer ensure``: start ``churnstream consume --mode
  streaming`` in the background (own session, pid record and log in ``.churnstream/scorer``)
  unless one runs; restart it if it is stalled; a new one must be ready within 2 minutes;
- **check_health**: ``churnstream scorer status``: running, live, ready (model loaded,
  broker reachable, lag within ``observability.ready_max_lag``, or ``max_lag``), with its
  consumed / dead-lettered counters in the log;
- **check_window**: ``churnstream check --latest`` on the scorer's newest window summary:
  dead-letter rate, churn-rate shift, PSI, and that the window is recent. Right after a
  (re)start there is no window yet; the task retries after one summary interval.

The scorer outlives the DAG run (that is the point): pausing the DAG does not stop it;
``churnstream scorer stop`` does (SIGTERM: it drains, flushes and commits).

Where churnstream lives, at run time: ``CHURNSTREAM_BIN`` (default ``churnstream`` on
PATH), ``CHURNSTREAM_WORKDIR`` (default: the parent of this dags/ folder), and churnstream's
own ``CHURNSTREAM_*`` settings. Window summaries go to ``<paths.reports_dir>/streaming``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

DEFAULT_WORKDIR = Path(__file__).resolve().parents[1]
SUMMARY_INTERVAL_S = 60

PRELUDE = f"""\
set -euo pipefail
cd "${{CHURNSTREAM_WORKDIR:-{DEFAULT_WORKDIR}}}"
export COLUMNS="${{COLUMNS:-160}}"
cs() {{ "${{CHURNSTREAM_BIN:-churnstream}}" "$@"; }}
STREAM_REPORTS="${{CHURNSTREAM_PATHS__REPORTS_DIR:-reports}}/streaming"
"""


def churnstream(
    task_id: str,
    command: str,
    *,
    timeout: timedelta,
    retries: int = 0,
    retry_delay: timedelta = timedelta(seconds=30),
) -> BashOperator:
    """A task that runs ``command`` (bash, with ``cs`` = churnstream) under a timeout."""
    return BashOperator(
        task_id=task_id,
        bash_command=PRELUDE + command,
        execution_timeout=timeout,
        retries=retries,
        retry_delay=retry_delay,
        # Exit 99 would mean "skipped" to Airflow; every non-zero exit is a failure here.
        skip_on_exit_code=None,
    )


with DAG(
    dag_id="churnstream_streaming",
    description="Keep a supervised streaming scorer running; check health, lag and windows.",
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["churnstream"],
    doc_md=__doc__,
    params={
        "metrics_port": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=65535,
            description="The scorer's /metrics and /health port "
            "(default observability.metrics_port, else a free port, recorded).",
        ),
        "summary_interval_s": Param(
            SUMMARY_INTERVAL_S,
            type="number",
            exclusiveMinimum=0,
            description="The scorer writes a window summary this often.",
        ),
        "max_lag": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            description="Fail above this total lag (default: readiness's ready_max_lag).",
        ),
        "max_dlq_rate": Param(None, type=["null", "number"], minimum=0),
        "max_churn_shift": Param(None, type=["null", "number"], minimum=0),
        "max_psi": Param(None, type=["null", "number"], minimum=0),
    },
) as dag:
    preflight = churnstream(
        "preflight", "cs scorer preflight --timeout 30", timeout=timedelta(minutes=3)
    )
    ensure_scorer = churnstream(
        "ensure_scorer",
        "cs scorer ensure --ready-timeout 120"
        "{% if params.metrics_port %} --metrics-port {{ params.metrics_port }}{% endif %}"
        ' -- --summary-interval {{ params.summary_interval_s }} --reports-dir "$STREAM_REPORTS"',
        timeout=timedelta(minutes=5),
        retries=1,
    )
    check_health = churnstream(
        "check_health",
        "cs scorer status"
        "{% if params.max_lag is not none %} --max-lag {{ params.max_lag }}{% endif %}",
        timeout=timedelta(minutes=2),
    )
    check_window = churnstream(
        "check_window",
        'cs check --latest --reports-dir "$STREAM_REPORTS"'
        " --max-age {{ 3 * params.summary_interval_s }}"
        "{% if params.max_dlq_rate is not none %} --max-dlq-rate {{ params.max_dlq_rate }}"
        "{% endif %}"
        "{% if params.max_churn_shift is not none %}"
        " --max-churn-shift {{ params.max_churn_shift }}{% endif %}"
        "{% if params.max_psi is not none %} --max-psi {{ params.max_psi }}{% endif %}",
        timeout=timedelta(minutes=2),
        # A scorer started by this run has written no window yet.
        retries=2,
        retry_delay=timedelta(seconds=SUMMARY_INTERVAL_S),
    )

    preflight >> ensure_scorer >> [check_health, check_window]
