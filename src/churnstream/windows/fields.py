"""The window summary's shape: its keys, sections, bins and the columns a scored batch has.

Shared by :mod:`~churnstream.windows.stats`, which builds summaries, and the readers of
summaries (reports, threshold checks, metrics), which recognise one by these keys.
"""

from __future__ import annotations

from collections.abc import Mapping

SUMMARY_SCHEMA_VERSION = 1
RISK_BINS = 10
#: Lower edges (ms) of the latency histogram's bins; the last bin is open-ended.
LATENCY_BIN_EDGES_MS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000)
ERROR_TYPES = ("validation_error", "inference_error", "processing_error", "unknown_error")
KEY_COLUMNS = ("source_topic", "source_partition", "source_offset")
GROUP_COLUMNS: Mapping[str, str] = {
    "by_contract": "Contract",
    "by_internet_service": "InternetService",
    "by_payment_method": "PaymentMethod",
}
TOP_RISK_COLUMNS = (
    "customerID",
    "churn_probability",
    "Contract",
    "InternetService",
    "PaymentMethod",
)
REQUIRED_COLUMNS = frozenset(
    {
        *TOP_RISK_COLUMNS,
        "prediction",
        "inference_latency_ms",
        "e2e_latency_ms",
        *KEY_COLUMNS,
    }
)
# Top-level keys of every summary; reports use them to recognise one.
SUMMARY_KEYS = (
    "schema_version",
    "window",
    "model_version",
    "counts",
    "churn",
    *GROUP_COLUMNS,
    "top_risk",
    "latency_ms",
    "throughput",
    "batch_sizes",
    "risk_histogram",
)
#: Keys newer summaries add; older summaries without them stay readable.
OPTIONAL_SUMMARY_KEYS = ("latency_histogram", "drift", "shadow", "reasons")
#: How many of the most frequent reasons a summary lists.
TOP_REASON_FEATURES = 10
UNKNOWN_LEVEL = "unknown"
