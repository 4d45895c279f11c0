"""Sans-I/O RTMP protocol core: bytes in -> events out; decisions in -> bytes out.

Layers, each usable and tested alone: :mod:`.handshake`, :mod:`.chunk` (chunk stream and
protocol control messages), :mod:`.amf0`, :mod:`.media` (FLV / Enhanced RTMP tag bodies) and
:mod:`.connection`, the server state machine the asyncio ingest drives. The client (publisher)
role for restreaming sits beside it: :mod:`.client_handshake`, :mod:`.chunk_out`,
:mod:`.media_write`, :mod:`.windows`, :mod:`.target` and :mod:`.client`. Nothing here does I/O,
reads a clock or imports the rest of the project. :class:`ProtocolError` is the only exception a
peer can provoke.
"""

from .amf0 import UNDEFINED, AmfDate, EcmaArray
from .chunk import ChunkReader, ChunkWriter
from .chunk_out import MessageChunker
from .client import ClientConnection, ClientState
from .client_events import (
    ClientEvent,
    ConnectAccepted,
    PublishStarted,
    PublishStopped,
    RequestRejected,
    SetupTimedOut,
    StatusReceived,
    StreamCreated,
)
from .client_handshake import ClientHandshake
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
from .target import PublishTarget

__all__ = [
    "UNDEFINED",
    "AmfDate",
    "AudioConfig",
    "AudioFrame",
    "ChunkReader",
    "ChunkWriter",
    "ClientConnection",
    "ClientEvent",
    "ClientHandshake",
    "ClientState",
    "ConnectAccepted",
    "ConnectRequested",
    "ConnectionState",
    "EcmaArray",
    "Event",
    "Limits",
    "MediaIgnored",
    "MessageChunker",
    "MetadataReceived",
    "PingResponded",
    "ProtocolError",
    "PublishEnded",
    "PublishRequested",
    "PublishStarted",
    "PublishStopped",
    "PublishTarget",
    "RequestRejected",
    "ServerConnection",
    "ServerHandshake",
    "SetupTimedOut",
    "StatusReceived",
    "StreamCreated",
    "VideoConfig",
    "VideoFrame",
    "VideoSequenceEnd",
    "parse_audio",
    "parse_audio_specific_config",
    "parse_video",
]
