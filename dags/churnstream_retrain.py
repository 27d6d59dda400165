"""churnstream_retrain: when the scorer's latest window drifted (or weekly), train a
challenger on the latest data, gate it, and promote it or fail with the reason.

detect_drift >> train_challenger >> register_challenger >> compare >> shadow >> promote

- **detect_drift**: ``churnstream check --latest`` on the streaming scorer's newest window
  (``<paths.reports_dir>/streaming``, or ``reports_dir``), for drift only (PSI per feature,
  churn-rate shift; the dead-letter rate is the streaming DAG's business). Crossed: retrain.
  Not crossed: the run ends here, every other task skipped. The hourly run at midnight
  between Sunday and Monday retrains anyway (the scheduled retraining), and so does
  ``force``;
- **train_challenger**: ``churnstream train`` on ``data_path`` (your latest labelled
  extract; default paths.raw_csv) into this run's candidates directory, not ``models/``;
- **register_challenger**: ``churnstream model register``: the MLflow registry's
  ``challenger``; its shadow window starts now;
- **compare**: ``churnstream model compare``: the held-out gate, challenger against
  champion (ROC AUC and Brier margins, ``promotion.*``); refused: this task fails, saying
  by how much, and the champion keeps serving;
- **shadow**: ``churnstream model shadow --wait``: both models on the input topic's events
  of the shadow window (``promotion.shadow_window_s``); agreement and churn-rate shift
  within ``promotion.*``;
- **promote**: ``churnstream model promote``: ``champion`` moves to the challenger and
  ``models/latest`` with it, which a running scorer hot-reloads between batches.

A failing task's last log line is churnstream's one-line reason. Where churnstream lives:
``CHURNSTREAM_BIN``, ``CHURNSTREAM_WORKDIR`` and ``CHURNSTREAM_*`` settings, as for the
other DAGs.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.providers.standard.hooks.subprocess import SubprocessHook, SubprocessResult
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param
from airflow.sdk.exceptions import AirflowException

DEFAULT_WORKDIR = Path(__file__).resolve().parents[1]
#: detect_drift's exit status for "no drift": Airflow marks the task (and the rest) skipped.
EXIT_NO_DRIFT = 99

PRELUDE = f"""\
set -euo pipefail
cd "${{CHURNSTREAM_WORKDIR:-{DEFAULT_WORKDIR}}}"
export COLUMNS="${{COLUMNS:-160}}"
cs() {{ "${{CHURNSTREAM_BIN:-churnstream}}" "$@"; }}
CANDIDATES=".churnstream/airflow/candidates/{{{{ safe(run_id) }}}}"
DATA="{{{{ params.data_path or '' }}}}"
DATA="${{DATA:-${{CHURNSTREAM_PATHS__RAW_CSV:-data/raw/telco_customer_churn.csv}}}}"
REPORTS="{{{{ params.reports_dir or '' }}}}"
REPORTS="${{REPORTS:-${{CHURNSTREAM_PATHS__REPORTS_DIR:-reports}}/streaming}}"
"""

DETECT_DRIFT = (
    """\
{% set when = dag_run.run_after %}
{% if params.force or (when.weekday() == 0 and when.hour == 0) %}
echo "retraining without looking for drift: {{ 'forced' if params.force else 'weekly' }}"
{% else %}
rc=0
cs check --latest --reports-dir "$REPORTS" --max-dlq-rate 1 \\
  {% if params.max_churn_shift is not none %}--max-churn-shift {{ params.max_churn_shift }}
  {%- endif %} {% if params.max_psi is not none %}--max-psi {{ params.max_psi }}{% endif %} \\
  || rc=$?
case $rc in
  3) echo "drift in the latest window: retraining" ;;
  0) echo "no drift in the latest window: nothing to retrain"; exit NO_DRIFT ;;
  *) exit "$rc" ;;
esac
{% endif %}
"""
).replace("NO_DRIFT", str(EXIT_NO_DRIFT))


class _RecordingHook(SubprocessHook):
    """Keeps the last command's result: its exit code and last line of output."""

    last: SubprocessResult | None = None

    def run_command(self, *args: Any, **kwargs: Any) -> SubprocessResult:
        self.last = super().run_command(*args, **kwargs)
        return self.last


class ChurnstreamOperator(BashOperator):
    """A BashOperator whose failure message is the command's last line of output.

    churnstream reports every failure as one line (``error: ...``) and a non-zero exit, and
    stderr is merged into the output, so the exception Airflow logs last says why.
    """

    @cached_property
    def subprocess_hook(self) -> SubprocessHook:
        return _RecordingHook()

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except AirflowException:
            last = self.subprocess_hook.last  # type: ignore[attr-defined]
            if last is None or last.exit_code == 0:
                raise
            raise AirflowException(f"exit {last.exit_code}: {last.output}") from None


def churnstream(
    task_id: str,
    command: str,
    *,
    timeout: timedelta,
    retries: int = 0,
    skip_on_exit_code: int | None = None,
) -> ChurnstreamOperator:
    """A task that runs ``command`` (bash, with ``cs`` = churnstream) under a timeout."""
    return ChurnstreamOperator(
        task_id=task_id,
        bash_command=PRELUDE + command,
        execution_timeout=timeout,
        retries=retries,
        retry_delay=timedelta(seconds=30),
        # Only detect_drift may skip (no drift); any other non-zero exit is a failure.
        skip_on_exit_code=skip_on_exit_code,
    )


def safe(text: str) -> str:
    """A run id as a file name (``:`` and ``+`` become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


with DAG(
    dag_id="churnstream_retrain",
    description="On drift (or weekly): train a challenger, gate it, promote it or say why not.",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["churnstream"],
    user_defined_macros={"safe": safe},
    doc_md=__doc__,
    params={
        "force": Param(False, type="boolean", description="Retrain without looking for drift."),
        "reports_dir": Param(
            None,
            type=["null", "string"],
            description="Where the window summaries are (default <paths.reports_dir>/streaming).",
        ),
        "max_churn_shift": Param(None, type=["null", "number"], minimum=0),
        "max_psi": Param(None, type=["null", "number"], minimum=0),
        "data_path": Param(
            None,
            type=["null", "string"],
            description="The latest labelled data to train on (default paths.raw_csv).",
        ),
        "holdout_data_path": Param(
            None,
            type=["null", "string"],
            description="Labelled data for the held-out gate (default: the challenger's "
            "held-out split of data_path).",
        ),
        "algorithm": Param(
            None,
            type=["null", "string"],
            enum=[None, "ensemble", "logreg", "gbm", "hgb"],
            description="Default model.algorithm.",
        ),
        "sample": Param(None, type=["null", "integer"], minimum=50),
    },
) as dag:
    detect_drift = churnstream(
        "detect_drift",
        DETECT_DRIFT,
        timeout=timedelta(minutes=2),
        skip_on_exit_code=EXIT_NO_DRIFT,
    )
    train_challenger = churnstream(
        "train_challenger",
        'cs train --data "$DATA" --models-dir "$CANDIDATES"'
        "{% if params.algorithm %} --algorithm {{ params.algorithm }}{% endif %}"
        "{% if params.sample %} --sample {{ params.sample }}{% endif %}",
        timeout=timedelta(minutes=60),
    )
    register_challenger = churnstream(
        "register_challenger",
        'cs model register "$CANDIDATES"',
        timeout=timedelta(minutes=10),
        retries=1,
    )
    compare = churnstream(
        "compare",
        "cs model compare"
        '{% if params.holdout_data_path %} --data "{{ params.holdout_data_path }}"{% endif %}',
        timeout=timedelta(minutes=10),
    )
    shadow = churnstream(
        "shadow",
        "cs model shadow --wait",
        # The shadow window (promotion.shadow_window_s, 1 h by default) plus the scoring.
        timeout=timedelta(hours=26),
    )
    promote = churnstream("promote", "cs model promote", timeout=timedelta(minutes=10))

    detect_drift >> train_challenger >> register_challenger >> compare >> shadow >> promote
