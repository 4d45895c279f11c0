"""Sans-I/O RTMP server protocol core: bytes in -> events out; decisions in -> bytes out.

Layers, each usable and tested alone: :mod:`.handshake`, :mod:`.chunk` (chunk stream and
protocol control messages), :mod:`.amf0`, :mod:`.media` (FLV / Enhanced RTMP tag bodies) and
:mod:`.connection`, the state machine the asyncio ingest drives. Nothing here does I/O, reads
a clock or imports the rest of the project. :class:`ProtocolError` is the only exception a peer
can provoke.
"""

from .amf0 import UNDEFINED, AmfDate, EcmaArray
from .chunk import ChunkReader, ChunkWriter
from .connection import ConnectionState, ServerConnection
from .errors import ProtocolError
from .events import (
    AudioConfig,
    AudioFrame,
    ConnectRequested,
    Event,
    MediaIgnored,
    MetadataReceived,
    PingResponded,
    PublishEnded,
    PublishRequested,
    VideoConfig,
    VideoFrame,
    VideoSequenceEnd,
)
from .handshake import ServerHandshake
from .limits import Limits
from .media import parse_audio, parse_audio_specific_config, parse_video

__all__ = [
    "UNDEFINED",
    "AmfDate",
    "AudioConfig",
    "AudioFrame",
    "ChunkReader",
    "ChunkWriter",
    "ConnectRequested",
    "ConnectionState",
    "EcmaArray",
    "Event",
    "Limits",
    "MediaIgnored",
    "MetadataReceived",
    "PingResponded",
    "ProtocolError",
    "PublishEnded",
    "PublishRequested",
    "ServerConnection",
    "ServerHandshake",
    "VideoConfig",
    "VideoFrame",
    "VideoSequenceEnd",
    "parse_audio",
    "parse_audio_specific_config",
    "parse_video",
]
