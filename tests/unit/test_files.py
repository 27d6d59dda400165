"""The one atomic write: complete content under the final name, or the old file untouched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from churnstream import files


def test_writes_bytes_and_text_readable_by_others(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    assert files.atomic_write_bytes(target, b"\x00{}\n") == target
    assert target.read_bytes() == b"\x00{}\n"
    assert stat.S_IMODE(target.stat().st_mode) == files.FILE_MODE
    files.atomic_write_text(target, "é\n")
    assert target.read_bytes() == "é\n".encode()
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left


def test_a_failed_replace_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.md"
    target.write_text("old")

    def refuse(src: object, dst: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk gone"):
        files.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_the_temporary_file_is_in_the_target_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same directory, so os.replace never crosses a file system."""
    seen: list[Path] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        seen.append(Path(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    files.atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert [p.parent for p in seen] == [tmp_path]
    assert seen[0].name.startswith(".a.bin.") and not seen[0].exists()


def test_a_missing_directory_is_an_error_not_a_silent_mkdir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        files.atomic_write_bytes(tmp_path / "nope" / "a.bin", b"x")
