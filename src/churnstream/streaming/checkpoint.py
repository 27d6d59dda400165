"""The batch producer's checkpoint: written atomically after each acknowledged chunk."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from churnstream.exceptions import DataError
from churnstream.files import atomic_write_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """Where a batch run stands. Rows before ``next_row`` are acknowledged."""

    data_path: str
    data_sha256: str
    topic: str
    total_rows: int
    next_row: int
    sent: int
    failed: int
    run_id: str
    updated_at: str
    #: End offset of each partition (as text keys, for JSON) once the acknowledged rows were
    #: written. A resume reads the topic from here to find rows of this run that a crash
    #: wrote after the checkpoint, and does not send them again.
    end_offsets: dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.next_row >= self.total_rows

    def matches(self, data_sha256: str, topic: str) -> bool:
        return self.data_sha256 == data_sha256 and self.topic == topic


def load_checkpoint(path: Path) -> Checkpoint | None:
    if not path.is_file():
        return None
    try:
        return Checkpoint(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"checkpoint {path} is unreadable ({exc}); delete it or pass --restart"
        ) from exc


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write then rename, so that a crash leaves the old checkpoint or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(asdict(checkpoint), indent=2))
