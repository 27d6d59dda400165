"""THE prediction body and its headers: :func:`encode_predictions`, and nothing else, writes them.

Every prediction churnstream emits comes from here: the scorer's predictions and shadow
predictions on Kafka, the REST API's answers, ``churnstream predict --json``. The body is the
``Prediction`` contract (:class:`churnstream.schemas.Prediction`), byte for byte what
``orjson.dumps(dump_body(Prediction(...)))`` writes (the tests hold it to that); it is
written from a %-template instead, because building and dumping one pydantic model per row
costs more than the rest of scoring. With the native engine (:mod:`churnstream.scoring.engine`)
the bodies are written in Rust from the same pieces, floats by the crate orjson uses; the
template stays the Python engine's writer, the fallback for strings JSON must escape, and the
oracle of the differential tests.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson

from churnstream.headers import (
    CHAMPION_PROBABILITY_HEADER,
    CHAMPION_VERSION_HEADER,
    MODEL_VERSION_HEADER,
    REASONS_HEADER,
    RISK_BAND_HEADER,
    SOURCE_HEADER,
    Headers,
)
from churnstream.model.contributions import REASON_FEATURES, TopReasons
from churnstream.scoring import engine
from churnstream.scoring.bands import BAND_VALUES, band_indices
from churnstream.scoring.infer import SMALL_BATCH_ROWS
from churnstream.scoring.messages import OutMessage

logger = logging.getLogger(__name__)

POSITIVE_LABEL = "Yes"
NEGATIVE_LABEL = "No"
# What JSON must escape in a string (orjson escapes exactly these).
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


@dataclass(frozen=True)
class Champion:
    """For shadow predictions: the model that served the same inputs, and its probabilities."""

    version: str
    probabilities: Sequence[float]


def encode_predictions(
    customer_ids: Sequence[str],
    event_ts: Sequence[str],
    probabilities: np.ndarray,
    labels_yes: np.ndarray,
    *,
    processed_ts: str,
    model_version: str,
    inference_ms: float,
    sources: Sequence[bytes] | None = None,
    champion: Champion | None = None,
    reasons: TopReasons | None = None,
) -> list[OutMessage]:
    """One prediction message per row: key (the customerID), body and headers.

    ``probabilities`` must be finite and within [0, 1]; ``labels_yes`` says which rows are
    labelled "Yes". Headers: none without ``sources`` (an answer over HTTP or on the
    console); else the input's source, the risk band and the model version; for a shadow
    prediction (``champion`` given), the source, the champion's version and its probability.

    ``reasons`` (each row's top reasons, see :func:`reason_texts`) go into the
    ``churnstream.reasons`` header on Kafka (the body stays the contract's), or, in an answer
    over HTTP or on the console, into a last body field ``reasons``. Shadow predictions
    carry none.
    """
    n = len(customer_ids)
    values = np.asarray(probabilities, dtype=np.float64)
    if values.shape != (n,) or len(event_ts) != n or len(labels_yes) != n:
        raise ValueError(f"{n} customers but {values.shape[0]} probabilities / other lengths")
    if not n:
        return []
    if not _within_unit_interval(values):
        raise ValueError("a prediction's probability must be finite and within [0, 1]")
    if reasons is not None and (len(reasons) != n or champion is not None):
        raise ValueError(f"{n} predictions but {len(reasons)} reasons, or reasons on a shadow")
    reason_json = reason_texts(reasons) if reasons is not None else None
    tail = _body_tail(processed_ts, model_version, inference_ms)
    bodies = None
    write = engine.native_bodies() if reason_json is None or sources is not None else None
    if write is not None:
        bodies = write(
            [*_FIELD_PIECES[:-1], _FIELD_PIECES[-1] + tail],
            customer_ids if type(customer_ids) is list else list(customer_ids),
            event_ts if type(event_ts) is list else list(event_ts),
            np.ascontiguousarray(values, dtype="<f8").tobytes(),
            np.asarray(labels_yes, dtype=bool).tobytes(),
            (POSITIVE_LABEL, NEGATIVE_LABEL),
        )
    if bodies is None:  # the Python engine, or a string to escape: the Python writer
        bodies = _python_bodies(
            customer_ids, event_ts, values, labels_yes, _template(tail), reason_json, sources
        )
    keys = [customer_id.encode() for customer_id in customer_ids]
    make = tuple.__new__  # a third faster than OutMessage(...) for thousands of rows
    if sources is None:
        return [make(OutMessage, (key, body, [])) for key, body in zip(keys, bodies, strict=True)]
    if len(sources) != n:
        raise ValueError(f"{n} predictions but {len(sources)} sources")
    if champion is None:
        bands = [(RISK_BAND_HEADER, value) for value in BAND_VALUES]
        version = (MODEL_VERSION_HEADER, model_version.encode())
        if reason_json is not None:
            return [
                make(
                    OutMessage,
                    (
                        key,
                        body,
                        [
                            (SOURCE_HEADER, source),
                            bands[band],
                            version,
                            (REASONS_HEADER, text.encode()),
                        ],
                    ),
                )
                for key, body, source, band, text in zip(
                    keys, bodies, sources, band_indices(values), reason_json, strict=True
                )
            ]
        return [
            make(OutMessage, (key, body, [(SOURCE_HEADER, source), bands[band], version]))
            for key, body, source, band in zip(
                keys, bodies, sources, band_indices(values), strict=True
            )
        ]
    served_by = (CHAMPION_VERSION_HEADER, champion.version.encode())
    return [
        make(OutMessage, (key, body, _shadow_headers(source, served_by, probability)))
        for key, body, source, probability in zip(
            keys, bodies, sources, champion.probabilities, strict=True
        )
    ]


def _python_bodies(
    customer_ids: Sequence[str],
    event_ts: Sequence[str],
    values: np.ndarray,
    labels_yes: np.ndarray,
    template: str,
    reason_json: list[str] | None,
    sources: Sequence[bytes] | None,
) -> list[bytes]:
    """The bodies from the %-template: the Python engine's writer, and the native one's oracle."""
    texts = number_texts(values.tolist())
    labels = [POSITIVE_LABEL if yes else NEGATIVE_LABEL for yes in np.asarray(labels_yes).tolist()]
    fields_of_rows = zip(json_texts(customer_ids), texts, labels, json_texts(event_ts), strict=True)
    if reason_json is not None and sources is None:
        # An answer, not a Kafka record: the reasons are a last field of the body.
        field = template[:-1] + ',"reasons":%s}'
        return [
            (field % (*fields, text)).encode()
            for fields, text in zip(fields_of_rows, reason_json, strict=True)
        ]
    return [(template % fields).encode() for fields in fields_of_rows]


def reason_texts(reasons: TopReasons) -> list[str]:
    """Each row's reasons as JSON text: a list of ``{"feature", "value", "contribution"}``,
    largest contribution first; numbers as orjson writes them, so they read back exactly."""
    values = {reason: _value_texts(column) for reason, column in reasons.values.items()}
    amounts = number_texts(reasons.contributions.ravel().tolist())
    width = reasons.features.shape[1] if reasons.features.ndim == 2 else 0
    out = []
    for row, features in enumerate(reasons.features.tolist()):
        items = [
            _REASON_ITEM % (_FEATURE_TEXTS[f], values[f][row], amounts[row * width + j])
            for j, f in enumerate(features)
            if f >= 0
        ]
        out.append("[" + ",".join(items) + "]")
    return out


_REASON_ITEM = '{"feature":"%s","value":%s,"contribution":%s}'
_FEATURE_TEXTS = [orjson.dumps(name).decode()[1:-1] for name in REASON_FEATURES]


def _value_texts(column: np.ndarray) -> list[str]:
    """JSON text of each value: numbers as orjson writes them, strings quoted and escaped."""
    if column.dtype != object:
        return number_texts(column.tolist())
    quoted = {value: orjson.dumps(value).decode() for value in set(column.tolist())}
    return [quoted[value] for value in column.tolist()]


def _within_unit_interval(values: np.ndarray) -> bool:
    """Every value finite and within [0, 1] (NaN fails every comparison)."""
    if len(values) <= SMALL_BATCH_ROWS:  # numpy's per-call overhead dominates
        return all(0.0 <= value <= 1.0 for value in values.tolist())
    return bool(values.min() >= 0.0 and values.max() <= 1.0)


def _shadow_headers(source: bytes, served_by: tuple[str, bytes], probability: float) -> Headers:
    return [
        (SOURCE_HEADER, source),
        served_by,
        (CHAMPION_PROBABILITY_HEADER, repr(float(probability)).encode()),
    ]


# A body's text around its four per-row fields (customerID, probability, label, event_ts);
# the last piece is followed by the batch-wide fields (see _body_tail).
_FIELD_PIECES = (
    '{"customerID":"',
    '","churn_probability":',
    ',"prediction":"',
    '","event_ts":"',
    '",',
)


def _body_tail(processed_ts: str, model_version: str, inference_ms: float) -> str:
    """The body's batch-wide fields and closing brace, as orjson writes them."""
    return orjson.dumps(
        {
            "processed_ts": processed_ts,
            "model_version": model_version,
            "inference_latency_ms": inference_ms,
        }
    ).decode()[1:]


def _template(tail: str) -> str:
    """The %-template of a prediction body, its batch-wide ``tail`` filled in already.

    Its four slots are customerID, probability, label and event_ts, as JSON text without the
    quotes (see :func:`json_texts`). Field order and number formatting are those of
    ``orjson.dumps(dump_body(Prediction))``.
    """
    return "%s".join(_FIELD_PIECES) + tail.replace("%", "%%")


def number_texts(values: list[float]) -> list[str]:
    """orjson's text for each float (one call for the whole batch)."""
    if not values:
        return []
    return orjson.dumps(values).decode()[1:-1].split(",")


def json_texts(values: Sequence[str]) -> Sequence[str]:
    """Each string as the inside of a JSON string: itself unless it has something to escape
    (one scan of the whole column decides; valid events seldom have any)."""
    if _NEEDS_ESCAPE.search("".join(values)) is None:
        return values
    return [orjson.dumps(value).decode()[1:-1] for value in values]
