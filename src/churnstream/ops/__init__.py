"""Operating churnstream on one host: the dev broker, the scorer supervisors, the demo.

``devbroker`` runs a single-node Kafka for development and tests, ``supervisor`` keeps a
streaming scorer alive for schedulers, ``workers`` runs and restarts the processes of
``consume --workers N``, ``processes`` holds what the detached children need (their pid
record, lock and log), and ``demo`` is what ``churnstream demo`` runs.
"""
