"""Registry of live streams: what is on air, its codecs, health and consumers."""

from .health import HealthPolicy, TranscodeProbe, stream_health
from .packets import CodecConfig, MediaKind, MediaPacket
from .registry import AlreadyLive, LiveRegistry
from .stream import IngestStats, LiveStream
from .subscription import Subscription

__all__ = ["AlreadyLive", "CodecConfig", "HealthPolicy", "IngestStats", "LiveRegistry",
           "LiveStream", "MediaKind", "MediaPacket", "Subscription", "TranscodeProbe",
           "stream_health"]
