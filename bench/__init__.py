"""churnstream's benchmarks: throughput, latency, single-record cost, the old per-message
baseline, 1-vs-2 worker scaling and honest peers (kcat, a plain batched scorer), against an
embedded Apache Kafka. Run ``make bench`` or ``python -m bench --help``; results go to
``bench/results/*.json`` and ``docs/benchmarks.md``.
"""
