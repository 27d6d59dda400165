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


def summarise(raw: Path, top: int = 40, root: str = "ScorerLoop.run") -> str:
    """A text table of the busiest functions in py-spy's collapsed stacks.

    Only stacks inside ``root`` (the poll loop) count, as shares of the loop's samples;
    the rest (imports, model load, shutdown) is reported as one line.
    """
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = in_root = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        names = [_name(frame) for frame in stack.split(";")]
        below = next((i for i, name in enumerate(names) if name.startswith(root + " ")), None)
        if below is None:
            continue
        in_root += samples
        names = names[below:]
        own[names[-1]] += samples
        for name in set(names):
            inclusive[name] += samples
    if not in_root:
        return f"{total} samples, none inside {root}"
    lines = [
        f"{total} samples at {PY_SPY_RATE_HZ} Hz; {in_root / total:.0%} inside {root} "
        f"(the rest: imports, model load, group join, shutdown)",
        "",
        f"share of {root}'s samples:",
        "inclusive   self  function",
    ]
    for name, samples in inclusive.most_common(top):
        lines.append(f"{samples / in_root:8.1%}  {own[name] / in_root:5.1%}  {name}")
    return "\n".join(lines)


def _name(frame: str) -> str:
    function, _, where = frame.partition(" (")
    return f"{function} ({where.split(':')[0].rsplit('/', 1)[-1]})"
