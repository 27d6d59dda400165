"""The replaced system's consumer, as its users run it: kafka-python and jsonschema only.

Reads a topic from the beginning in a consumer group, decodes each record with
``json.loads``, validates it against a JSON Schema, and prints one JSON line of counts.
Nothing else is installed beside it, so a topic written with a codec it has no library for
fails the read (``UnsupportedCodecError``) and the script exits non-zero, as that consumer
would.

    python consumer.py --bootstrap HOST:PORT --topic T [--schema S.json] [--expect N]
"""

from __future__ import annotations

import argparse
import json
import time

import jsonschema
from kafka import KafkaConsumer

POLL_TIMEOUT_MS = 500
#: Once ``--expect`` records are in, keep reading this long to catch any extra ones.
SETTLE_S = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", default="legacy-consumer")
    parser.add_argument("--schema", help="JSON Schema every record must satisfy")
    parser.add_argument("--expect", type=int, help="stop soon after this many records")
    parser.add_argument("--idle", type=float, default=20.0, help="stop after this long idle")
    args = parser.parse_args()

    validator = None
    if args.schema:
        with open(args.schema, encoding="utf-8") as f:
            schema = json.load(f)
        validator = jsonschema.validators.validator_for(schema)(schema)
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        value_deserializer=lambda raw: json.loads(raw.decode("utf-8")),
    )
    read = valid = 0
    keys: set[bytes | None] = set()
    errors: list[str] = []
    last = time.monotonic()
    try:
        while True:
            idle = SETTLE_S if args.expect is not None and read >= args.expect else args.idle
            if time.monotonic() - last >= idle:
                break
            for records in consumer.poll(timeout_ms=POLL_TIMEOUT_MS).values():
                last = time.monotonic()
                for record in records:
                    read += 1
                    keys.add(record.key)
                    error = next(validator.iter_errors(record.value), None) if validator else None
                    if error is None:
                        valid += 1
                    else:
                        errors.append(f"{record.partition}@{record.offset}: {error.message}")
    finally:
        consumer.close()
    print(
        json.dumps(
            {
                "read": read,
                "valid": valid,
                "invalid": read - valid,
                "distinct_keys": len(keys),
                "errors": errors[:5],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
