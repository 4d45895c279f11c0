"""Registry of live streams: what is on air, its codecs, health and consumers."""

from .packets import CodecConfig, MediaKind, MediaPacket
from .registry import AlreadyLive, LiveRegistry
from .stream import IngestStats, LiveStream
from .subscription import Subscription

__all__ = ["AlreadyLive", "CodecConfig", "IngestStats", "LiveRegistry", "LiveStream",
           "MediaKind", "MediaPacket", "Subscription"]
