"""The media units ingest hands to the live registry; defined at the bottom, in transcode.

Kept as a module so ``mediaserver.live.packets`` imports keep working.
"""

from transcode.media import CodecConfig, MediaKind, MediaPacket

__all__ = ["CodecConfig", "MediaKind", "MediaPacket"]
