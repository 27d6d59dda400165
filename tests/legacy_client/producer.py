"""The replaced system's producer, as it ran: kafka-python, JSON bodies, gzip.

Sends each line of a JSON-lines file (one customer event per line) to a topic, keyed by
``customerID`` and serialised with ``json.dumps``, then prints one JSON line of counts.

    python producer.py --bootstrap HOST:PORT --topic T --events events.jsonl
"""

from __future__ import annotations

import argparse
import json

from kafka import KafkaProducer

FLUSH_TIMEOUT_S = 60.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", required=True, help="JSON-lines file of events")
    parser.add_argument("--compression", default="gzip")
    args = parser.parse_args()

    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap,
        compression_type=args.compression,
        acks="all",
        key_serializer=lambda key: key.encode("utf-8"),
        value_serializer=lambda value: json.dumps(value).encode("utf-8"),
    )
    futures = []
    with open(args.events, encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            futures.append(producer.send(args.topic, key=event["customerID"], value=event))
    producer.flush(FLUSH_TIMEOUT_S)
    producer.close()
    sent = sum(1 for future in futures if future.succeeded())
    print(json.dumps({"sent": sent, "failed": len(futures) - sent}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
