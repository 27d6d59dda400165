"""Window-summary JSON files: naming, writing and reading them.

The summary dict comes from :meth:`churnstream.windows.stats.WindowStats.summary`. Every
file is written to a temporary name and then moved into place, so a reader never sees half
a report, and an existing report is never overwritten: a clashing name gets a suffix. The
Markdown and PNG renderings of a JSON are :mod:`churnstream.reports.render`'s; this module
imports no plotting library, because the scorer process uses it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from churnstream.exceptions import ChurnstreamError, DataError
from churnstream.files import write_temp
from churnstream.reports.format import check_summary

logger = logging.getLogger(__name__)

REPORT_PREFIX = "summary_"
MAX_NAME_ATTEMPTS = 1_000
REPORT_FILE_MODE = 0o644
_STEM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY


def write_summary_json(
    summary: Mapping[str, Any], reports_dir: Path, *, stem: str | None = None
) -> Path:
    """Write ``<stem>.json`` into ``reports_dir`` atomically and return its path.

    The stem defaults to ``summary_<window end, UTC, like 20261123T031500Z>``. If a report
    with that stem exists (two windows ending in the same second), ``_1``, ``_2``... is
    appended. The Markdown and the charts are rendered from this file afterwards, under the
    same stem (:mod:`churnstream.reports.render`).

    Raises:
        DataError: ``summary`` is not a window summary or cannot be serialised.
        ValueError: ``stem`` is not a plain file-name stem.
    """
    base, payload = _serialise(summary, stem)
    reports_dir.mkdir(parents=True, exist_ok=True)
    json_path = reports_dir / f"{_claim_stem(reports_dir, base, payload)}.json"
    logger.info("wrote window summary %s", json_path)
    return json_path


def _serialise(summary: Mapping[str, Any], stem: str | None) -> tuple[str, bytes]:
    """The base stem and the JSON bytes of ``summary`` (see :func:`write_summary_json`)."""
    check_summary(summary, source="summary")
    base = stem if stem is not None else REPORT_PREFIX + _compact_utc(summary["window"]["ended_at"])
    if not _STEM_RE.fullmatch(base):
        raise ValueError(f"stem must be a plain file name ([A-Za-z0-9._-]), got {base!r}")
    try:
        payload = orjson.dumps(summary, option=_JSON_OPTIONS)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise DataError(f"summary is not JSON-serialisable: {exc}") from exc
    return base, payload


def load_summary(path: Path) -> dict[str, Any]:
    """Read a summary written by :func:`write_summary_json`.

    Raises:
        DataError: the file is missing, unreadable, not JSON, or not a window summary.
    """
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"summary {path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read summary {path}: {exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    check_summary(data, source=str(path))
    result: dict[str, Any] = data
    return result


def _compact_utc(iso: str) -> str:
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError as exc:
        raise DataError(f"window.ended_at is not ISO 8601: {iso!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _claim_stem(directory: Path, base: str, payload: bytes) -> str:
    """Publish the JSON under the first free stem and return that stem.

    ``os.link`` creates the name atomically with its full content and fails if it exists,
    so two writers racing for the same second cannot overwrite each other.
    """
    temp = write_temp(directory, payload, mode=REPORT_FILE_MODE)
    try:
        for attempt in range(MAX_NAME_ATTEMPTS):
            stem = base if attempt == 0 else f"{base}_{attempt}"
            if (directory / f"{stem}.md").exists():
                continue
            if _publish_exclusive(temp, directory / f"{stem}.json"):
                return stem
    finally:
        temp.unlink(missing_ok=True)
    raise ChurnstreamError(
        f"no free report name for {base} in {directory} after {MAX_NAME_ATTEMPTS} attempts"
    )


def _publish_exclusive(temp: Path, target: Path) -> bool:
    try:
        os.link(temp, target)
        return True
    except FileExistsError:
        return False
    except OSError:
        # No hard links on this file system: reserve the name, then replace it.
        # A reader may briefly see an empty file here, never someone else's report.
        pass
    try:
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, REPORT_FILE_MODE))
    except FileExistsError:
        return False
    os.replace(write_temp(temp.parent, temp.read_bytes(), mode=REPORT_FILE_MODE), target)
    return True
