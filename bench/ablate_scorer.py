"""`churnstream consume` with one plumbing lever set, for the ablation (``bench/ablation.py``).

    python -m bench.ablate_scorer [--delivery-reports all|errors] [--produce classic|lean]
        [--compression CODEC] [--pipeline] [--client confluent|native]
        [--drop-header NAME ...] [--select-headers]
        [--timings FILE] -- <consume arguments>

Only the bench runs it. The levers that are product options are set as a user would (the
``CHURNSTREAM_PRODUCER__DELIVERY_REPORTS`` and ``..._COMPRESSION`` environment variables,
gzip unless given, ``CHURNSTREAM_CONSUMER__PIPELINE`` for ``--pipeline`` and
``CHURNSTREAM_CONSUMER__CLIENT`` for ``--client``); the others
replace
``Publisher._produce`` in this process before the command runs:

- ``--produce classic``: the per-message path the product used before
  ``SafeProducer.produce_all``: one ``SafeProducer.produce`` per message (a copied header
  list, a delivery callback passed with each message, ``poll(0)`` after each message);
- ``--drop-header NAME`` (``source``, ``risk_band``, ``model_version``): predictions leave
  without that header. Bench-only: every header is part of the interface. The headers then
  go through a selection, one new list per message; ``--select-headers`` alone runs the same
  selection keeping all three, the reference the header rows are compared with.

``--timings FILE``: time spent producing, in ``flush()`` and committing, summed over the
batches, written as JSON when the command exits: the loop's wait for acknowledgements and
commits (what pipelining, scoring the next batch meanwhile, can hide).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: The prediction headers in the order the scoring core writes them (see scoring/encode.py).
PREDICTION_HEADERS = ("source", "risk_band", "model_version")


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m bench.ablate_scorer", description=__doc__)
    parser.add_argument("--delivery-reports", choices=("all", "errors"), default="all")
    parser.add_argument("--produce", choices=("classic", "lean"), default="lean")
    parser.add_argument(
        "--compression", choices=("none", "gzip", "snappy", "lz4", "zstd"), default="gzip"
    )
    parser.add_argument("--pipeline", action="store_true")
    parser.add_argument("--client", choices=("confluent", "native"), default="confluent")
    parser.add_argument("--drop-header", action="append", default=[], choices=PREDICTION_HEADERS)
    parser.add_argument("--select-headers", action="store_true")
    parser.add_argument("--timings", type=Path)
    argv = list(argv)
    if "--" not in argv:
        parser.parse_args(argv)  # --help, or an error about the options
        parser.error("give the consume arguments after --")
    split = argv.index("--")
    return parser.parse_args(argv[:split]), argv[split + 1 :]


def main(argv: Sequence[str] | None = None) -> None:
    args, rest = parse(sys.argv[1:] if argv is None else argv)
    os.environ["CHURNSTREAM_PRODUCER__DELIVERY_REPORTS"] = args.delivery_reports
    os.environ["CHURNSTREAM_PRODUCER__COMPRESSION"] = args.compression
    os.environ["CHURNSTREAM_CONSUMER__PIPELINE"] = "true" if args.pipeline else "false"
    os.environ["CHURNSTREAM_CONSUMER__CLIENT"] = args.client
    from churnstream.cli import app
    from churnstream.kafka.producer import SafeProducer
    from churnstream.streaming.publish import Publisher

    Publisher._produce = producing(args)  # type: ignore[method-assign]
    if args.timings is not None:
        _time_publishing(Publisher, SafeProducer, args.timings)
    app(args=rest, prog_name="churnstream")


def producing(args: argparse.Namespace) -> Callable[[Any, Any, Any], None]:
    """A ``Publisher._produce`` for ``args``'s ``--produce``, ``--drop-header`` and
    ``--select-headers`` (shadow predictions are not produced: the bench runs none)."""
    select = None
    if args.drop_header or args.select_headers:
        keep = [i for i, name in enumerate(PREDICTION_HEADERS) if name not in args.drop_header]

        def select(messages: Any) -> Any:
            return [(key, value, [headers[i] for i in keep]) for key, value, headers in messages]

    classic = args.produce == "classic"

    def produce(self: Any, result: Any, shadow: Any) -> None:
        opts, producer = self.options, self.producer
        predictions = result.predictions if select is None else select(result.predictions)
        if classic:
            for key, value, headers in predictions:
                producer.produce(opts.output_topic, value, key, headers)
            for out in result.dead_letters:
                producer.produce(opts.deadletter_topic, out.value, out.key, out.headers)
        else:
            producer.produce_all(opts.output_topic, predictions)
            if result.dead_letters:
                producer.produce_all(opts.deadletter_topic, result.dead_letters)

    return produce


def _time_publishing(publisher: Any, producer: Any, path: Path) -> None:
    """Sum the time spent in each step of publishing (``send``, then ``settle``: flush and
    commit), sequential or pipelined; written to ``path`` at exit."""
    totals: dict[str, Any] = {
        "batches": 0, "publish_s": 0.0, "produce_s": 0.0, "flush_s": 0.0,
        "first_publish": None, "last_publish_end": None, "flush_ms": [],
    }  # fmt: skip

    def timed(cls: Any, name: str, key: str) -> None:
        original = getattr(cls, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                totals[key] += spent
                if key == "flush_s":
                    totals["flush_ms"].append(spent * 1000)
                if name == "send" and totals["first_publish"] is None:
                    totals["first_publish"] = started
                if name == "settle":
                    totals["batches"] += 1
                    totals["last_publish_end"] = started + spent

        setattr(cls, name, wrapper)

    timed(publisher, "send", "publish_s")
    timed(publisher, "settle", "publish_s")
    timed(publisher, "_produce", "produce_s")
    timed(producer, "flush", "flush_s")

    def write() -> None:
        first, last = totals.pop("first_publish"), totals.pop("last_publish_end")
        totals["span_s"] = (last - first) if first is not None and last is not None else 0.0
        # What is left of publish: next_offsets and the synchronous commit.
        totals["commit_s"] = totals["publish_s"] - totals["produce_s"] - totals["flush_s"]
        path.write_text(json.dumps(totals))

    atexit.register(write)


if __name__ == "__main__":
    main()
