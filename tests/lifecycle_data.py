"""Labelled data for the lifecycle tests, made from the real dataset (stdlib only: the Airflow
tests' virtualenv has no pandas).

``shifted``: tenure reflected (``72 - tenure``, TotalCharges recomputed), which moves the
tenure distribution and turns its relation to churn around: a model trained before the shift
ranks the shifted customers badly, one trained after it well. ``shuffle_labels``: the Churn
column permuted, so whatever is trained on it is worse than any real model.
"""

from __future__ import annotations

import csv
import itertools
import random
from pathlib import Path

MAX_TENURE = 72


def write_variant(
    src: Path,
    dst: Path,
    *,
    shifted: bool = False,
    shuffle_labels: bool = False,
    rows: int | None = None,
    seed: int = 7,
) -> Path:
    with src.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        records = list(itertools.islice(reader, rows))
    if shifted:
        for r in records:
            tenure = MAX_TENURE - int(r["tenure"])
            r["tenure"] = str(tenure)
            r["TotalCharges"] = " " if tenure == 0 else f"{tenure * float(r['MonthlyCharges']):.2f}"
    if shuffle_labels:
        labels = [r["Churn"] for r in records]
        random.Random(seed).shuffle(labels)
        for r, label in zip(records, labels, strict=True):
            r["Churn"] = label
    with dst.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    return dst
