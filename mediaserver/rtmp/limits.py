"""Resource limits of one RTMP connection, validated when built.

Every size a peer can make us allocate or every depth it can make us recurse is bounded by one of
these numbers; exceeding one at run time is a :class:`~mediaserver.rtmp.errors.ProtocolError`.
A nonsensical value is rejected here, at configuration load, rather than at the first publish.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

# The message length field is 24 bits and the chunk size field 31 bits; limits beyond those
# could never be reached, so they are configuration mistakes.
_MAX_MESSAGE_LENGTH = 1 << 24
_MAX_CHUNK_SIZE_FIELD = 0x7FFFFFFF


@dataclass(frozen=True)
class Limits:
    # Largest chunk size a peer may announce with Set Chunk Size.
    max_chunk_size: int = 1 << 20
    # Largest single message (and largest total of partially received messages).
    max_message_size: int = 16 << 20
    # Most distinct chunk stream ids a peer may use on one connection.
    max_chunk_streams: int = 64
    # Deepest nesting of AMF0 objects/arrays in a command or metadata.
    max_amf_depth: int = 32
    # Chunk size we announce and use for what we send.
    out_chunk_size: int = 4096
    # Window acknowledgement size we announce (and the peer bandwidth we set).
    window_ack_size: int = 2_500_000
    # Most message streams (createStream) one connection may open.
    max_message_streams: int = 16
    # Largest message (and total of partial messages) accepted until a publish is accepted.
    # connect, releaseStream, FCPublish, createStream and publish fit in well under 1 KiB, so a
    # client without a stream key cannot make us buffer max_message_size per connection.
    # Capped by max_message_size.
    max_setup_message_size: int = 64 * 1024
    # Longest stream name a publish may carry (longer: refused before any key lookup), and the
    # most characters of any peer-chosen string echoed back (onFCPublish, onStatus, _error).
    max_name_length: int = 256

    @property
    def setup_message_size(self) -> int:
        """The message size limit in force before the first accepted publish."""
        return min(self.max_setup_message_size, self.max_message_size)

    def __post_init__(self) -> None:
        bounds = {
            "max_chunk_size": (128, _MAX_CHUNK_SIZE_FIELD),
            "max_message_size": (1, _MAX_MESSAGE_LENGTH),
            "max_chunk_streams": (2, 65599 - 2 + 1),
            "max_amf_depth": (1, 256),
            "out_chunk_size": (128, 0xFFFFFF),
            "window_ack_size": (1, 0xFFFFFFFF),
            "max_message_streams": (1, 1 << 16),
            "max_setup_message_size": (128, _MAX_MESSAGE_LENGTH),
            "max_name_length": (16, 1 << 16),
        }
        for f in fields(self):
            value = getattr(self, f.name)
            lo, hi = bounds[f.name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"rtmp limit {f.name!r} must be an integer, got {value!r}")
            if not lo <= value <= hi:
                raise ValueError(
                    f"rtmp limit {f.name!r} must be between {lo} and {hi}, got {value}"
                )
