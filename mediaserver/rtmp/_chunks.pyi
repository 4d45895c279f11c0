"""Type stub of the compiled chunk reader and chunker (``_chunks.c``)."""

from typing import Any

class Reader:
    def __init__(
        self,
        max_chunk_size: int,
        max_message_size: int,
        max_chunk_streams: int,
        error: type[Exception],
    ) -> None: ...
    chunk_size: int
    @property
    def buffered(self) -> int: ...
    def feed(
        self, data: bytes | bytearray | memoryview, /
    ) -> list[tuple[int, int, int, bytes]]: ...
    def limit_message_size(self, size: int, name: str, /) -> None: ...
    def media_lane(
        self, publishing: set[int], video_frame: type[Any], audio_frame: type[Any], /
    ) -> None: ...

class Chunker:
    chunk_size: int

    def __init__(self, chunk_size: int = 128) -> None: ...
    def message(
        self,
        csid: int,
        type_id: int,
        stream_id: int,
        timestamp: int,
        head: bytes,
        body: bytes | memoryview = b"",
        /,
    ) -> bytes: ...
