"""Operating churnstream on one host: the dev broker, the scorer supervisor, the demo.

``devbroker`` runs a single-node Kafka for development and tests, ``supervisor`` keeps a
streaming scorer alive for schedulers, ``processes`` holds what both need to run a detached
child (its pid record, lock and log), and ``demo`` is what ``churnstream demo`` runs.
"""
