"""Every Prometheus metric name churnstream exposes, in one place.

The exporters (:mod:`churnstream.observability.metrics`) register them, and the readers of
a ``/metrics`` page (the scorer supervisor's status, the dashboard; see
:mod:`churnstream.observability.scrape`) look them up by the same constants. Counters are
named with their ``_total`` sample name, as a scrape shows them.
"""

from __future__ import annotations

SCORER_CONSUMED = "churnstream_scorer_consumed_messages_total"
SCORER_SCORED = "churnstream_scorer_scored_messages_total"
SCORER_PREDICTED_CHURN = "churnstream_scorer_predicted_churn_messages_total"
SCORER_PRODUCED = "churnstream_scorer_produced_messages_total"
SCORER_DEAD_LETTERS = "churnstream_scorer_dead_letters_total"
SCORER_DEAD_LETTER_CODES = "churnstream_scorer_dead_letter_codes_total"
SCORER_BATCHES = "churnstream_scorer_batches_total"
SCORER_REDELIVERED = "churnstream_scorer_redelivered_batches_total"
SCORER_PRODUCER_RECOVERIES = "churnstream_scorer_producer_recoveries_total"
SCORER_BATCH_SIZE = "churnstream_scorer_batch_size_messages"
SCORER_INFERENCE = "churnstream_scorer_inference_latency_seconds"
SCORER_END_TO_END = "churnstream_scorer_end_to_end_latency_seconds"
SCORER_LAG = "churnstream_scorer_consumer_lag_messages"
SCORER_LAG_AGE = "churnstream_scorer_consumer_lag_age_seconds"
SCORER_LAST_BATCH = "churnstream_scorer_last_batch_timestamp_seconds"
SCORER_LAST_POLL = "churnstream_scorer_last_poll_timestamp_seconds"
SCORER_RUNNING = "churnstream_scorer_running"
MODEL_INFO = "churnstream_model_info"
DRIFT_PSI = "churnstream_drift_psi"
DRIFT_CHURN_RATE = "churnstream_drift_predicted_churn_ratio"
DRIFT_EXPECTED_CHURN_RATE = "churnstream_drift_expected_churn_ratio"
DRIFT_SAMPLES = "churnstream_drift_window_samples"
DRIFT_DETECTED = "churnstream_drift_detected"
PRODUCER_DELIVERED = "churnstream_producer_delivered_messages_total"
PRODUCER_FAILURES = "churnstream_producer_delivery_failures_total"
PRODUCER_RATE = "churnstream_producer_send_rate_messages_per_second"
PRODUCER_PROGRESS = "churnstream_producer_progress_messages"
PRODUCER_PROGRESS_TOTAL = "churnstream_producer_progress_total_messages"
PRODUCER_LAST_DELIVERY = "churnstream_producer_last_delivery_timestamp_seconds"
