"""Dead-letter tools: read a dead-letter topic, summarise it, replay letters with markers.

The pure part decides what to report and what to re-send, and is unit-tested without a
broker: :mod:`.letters` (read one letter, dedupe), :mod:`.originals` (rebuild the original
message), :mod:`.markers` (which letters were replayed), :mod:`.summary` (``dlq inspect``)
and :mod:`.plan` (``dlq replay``'s choices). The Kafka I/O is in :mod:`.reading`,
:mod:`.replay` and :mod:`.commands`.
"""
