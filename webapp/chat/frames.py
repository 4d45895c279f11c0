"""Server frames built once per broadcast and written as the same bytes to every socket.

A room's tick turns its events into ONE JSON array and ONE WebSocket text frame. Server-to-
client frames are never masked and we turn per-message compression off, so the frame bytes
are identical for every receiver and can go straight to each connection's transport: no
coroutine, no copy, no re-encoding per socket (aiohttp's ``send_str`` would schedule a
coroutine per socket per tick, which is what limits fan-out in a 1000-viewer room).
``transport.get_write_buffer_size()`` is the socket's send queue: the room checks it before
every write and disconnects a reader that lets it grow past ``chat.send_queue_bytes``.
"""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from typing import Any

_TEXT_FIN = 0x81


def iso_time(dt: datetime) -> str:
    """A time as events carry it: ISO 8601 in UTC with a ``Z``."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode_events(events: list[dict[str, Any]]) -> bytes:
    """The JSON array of ``events`` as compact UTF-8 (the payload every receiver gets)."""
    return json.dumps(events, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455 §5.2) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        header = bytes((_TEXT_FIN, n))
    elif n < 0x10000:
        header = struct.pack("!BBH", _TEXT_FIN, 126, n)
    else:
        header = struct.pack("!BBQ", _TEXT_FIN, 127, n)
    return header + payload


def events_frame(events: list[dict[str, Any]]) -> bytes:
    return text_frame(encode_events(events))
