"""The benchmarks' minimal HTTP/1.1 client (``benchmarks/hls_delivery.py``): it stands in for
thousands of players in the HLS and cluster benchmarks, so a body it cut short or ran together
with the next answer would turn into wrong part sizes and errors there. Fed whole and a byte at
a time, Content-Length and chunked (how Varnish streams a miss)."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.hls_delivery import RawConnection

CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Cache: MISS\r\n\r\n"
    b"5\r\nhello\r\n1;ext=1\r\n \r\nb\r\nworld-of-hl\r\n0\r\n\r\n"
)
SIZED = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnah"


class _Sink:
    def write(self, data: bytes) -> None:
        pass


async def _answers(stream: bytes, count: int, step: int) -> list[tuple[int, bytes]]:
    conn = RawConnection()
    conn.connection_made(_Sink())
    out = []
    pos = 0
    for _ in range(count):
        fut = asyncio.ensure_future(conn.get("/x", b"h"))
        await asyncio.sleep(0)
        while not fut.done() and pos < len(stream):
            conn.data_received(stream[pos : pos + step])
            pos += step
            await asyncio.sleep(0)
        out.append(await fut)
    return out


@pytest.mark.parametrize("step", [1, 7, 10_000])
async def test_chunked_then_sized_on_one_connection(step: int) -> None:
    """A chunked answer (with a chunk extension) then a sized one, back to back."""
    got = await _answers(CHUNKED + SIZED + CHUNKED, 3, step)
    assert got == [(200, b"hello world-of-hl"), (404, b"nah"), (200, b"hello world-of-hl")]
