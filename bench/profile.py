"""Where the scorer's time goes: py-spy samples of `churnstream consume` during a throughput run.

py-spy is not a churnstream dependency: ``.venv/bin/pip install py-spy`` to use
``python -m bench --profile``. Samples are grouped by function (inclusive and self time),
as shares of the samples taken while the scorer was busy (py-spy skips idle waits).
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

PY_SPY_RATE_HZ = 250


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def wrap(command: list[str], output: Path) -> list[str]:
    tool = py_spy()
    if tool is None:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    return [
        tool,
        "record",
        "-r",
        str(PY_SPY_RATE_HZ),
        "-f",
        "raw",
        "-o",
        str(output),
        "--",
        *command,
    ]


def summarise(raw: Path, top: int = 30) -> str:
    """A text table of the busiest functions in py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        names = [_name(frame) for frame in stack.split(";")]
        own[names[-1]] += samples
        for name in set(names):
            inclusive[name] += samples
    lines = [f"{total} samples at {PY_SPY_RATE_HZ} Hz", "", "inclusive  self  function"]
    for name, samples in inclusive.most_common(top):
        if name.startswith(("<module>", "_run_", "_find_and_load", "_call_with")):
            continue
        lines.append(f"{samples / total:8.1%}  {own[name] / total:5.1%}  {name}")
    return "\n".join(lines)


def _name(frame: str) -> str:
    function, _, where = frame.partition(" (")
    return f"{function} ({where.split(':')[0].rsplit('/', 1)[-1]})"
