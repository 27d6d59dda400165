"""``churnstream dashboard``: a live web view of the pipeline (predictions, dead letters,
the scorer's metrics). :mod:`.follower` reads Kafka, :mod:`.app` serves the page."""
