"""Registry of live streams: what is on air, its codecs, health and consumers."""

from transcode.media import CodecConfig, MediaKind, MediaPacket

from .health import HealthPolicy, TranscodeProbe, stream_health
from .registry import AlreadyLive, LiveRegistry
from .stats import IngestStats
from .stream import LiveStream
from .subscription import Subscription

__all__ = [
    "AlreadyLive",
    "CodecConfig",
    "HealthPolicy",
    "IngestStats",
    "LiveRegistry",
    "LiveStream",
    "MediaKind",
    "MediaPacket",
    "Subscription",
    "TranscodeProbe",
    "stream_health",
]
