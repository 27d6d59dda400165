"""Types of churnstream's optional native Kafka client (native_io/src)."""

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

_R = TypeVar("_R")
Header = tuple[str, bytes | None]
#: (code, name, text, fatal, topic, partition)
StreamError = tuple[int, str, str, bool, str, int]

__version__: str
librdkafka_version: str

class KafkaError(Exception):
    """args = (code, name, text, fatal, retriable)."""

class Consumer:
    def __init__(
        self,
        config: dict[str, str],
        error_cb: Callable[[int, str, str, bool], None] | None = None,
    ) -> None: ...
    def subscribe(
        self,
        topics: list[str],
        on_assign: Callable[[list[tuple[str, int]]], None] | None = None,
    ) -> None: ...
    def take(
        self,
        max_records: int,
        wait_s: float,
        make: Callable[[str, int, int, bytes | None, bytes | None, list[Header] | None], _R],
    ) -> tuple[list[_R], list[StreamError]]: ...
    def commit(self, offsets: list[tuple[str, int, int]]) -> None: ...
    def seek(self, topic: str, partition: int, offset: int, timeout_s: float) -> None: ...
    def committed(
        self, partitions: list[tuple[str, int]], timeout_s: float
    ) -> list[tuple[str, int, int]]: ...
    def position(self, partitions: list[tuple[str, int]]) -> list[tuple[str, int, int]]: ...
    def assignment(self) -> list[tuple[str, int]]: ...
    def assign(self, partitions: list[tuple[str, int, int]]) -> None: ...
    def get_watermark_offsets(
        self, topic: str, partition: int, timeout_s: float, cached: bool
    ) -> tuple[int, int]: ...
    def close(self) -> None: ...

class Producer:
    def __init__(
        self,
        config: dict[str, str],
        on_failure: Callable[[int, str, str, bool, str, int, int | None], None] | None = None,
        error_cb: Callable[[int, str, str, bool], None] | None = None,
    ) -> None: ...
    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[Header] | None = None,
    ) -> None: ...
    def produce_all(
        self,
        topic: str,
        messages: Iterable[
            tuple[bytes | None, bytes | None, Sequence[Header] | None] | Sequence[Any]
        ],
    ) -> None: ...
    def poll(self, timeout_s: float) -> int: ...
    def flush(self, timeout_s: float) -> int: ...
    def purge(self, in_queue: bool = True, in_flight: bool = True) -> None: ...
    def __len__(self) -> int: ...
    @property
    def delivered(self) -> int: ...
    @property
    def failed(self) -> int: ...
    def fatal_error(self) -> tuple[int, str, str] | None: ...
