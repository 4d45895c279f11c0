"""Restreaming destinations (issue 14): where a channel's live stream is relayed.

Shares ``models.Base`` so one metadata describes the whole schema, like
``storage.creator_models``. The stream key is a secret that lets anyone broadcast as the
creator on the other platform: it is stored as given (the relay must send it), and every
reader outside the relay sees only its last characters (``storage.restream.key_hint``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, true
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow

# Platforms whose ingest URL the preset fills in; "custom" takes the creator's URL.
PRESET_URLS: dict[str, str] = {
    "twitch": "rtmp://live.twitch.tv/app",
    "youtube": "rtmp://a.rtmp.youtube.com/live2",
    "facebook": "rtmps://live-api-s.facebook.com:443/rtmp",
    "kick": "rtmps://fa723fc1b171.global-contribute.live-video.net/app",
}
PRESETS = (*PRESET_URLS, "custom")
# What a destination receives: the publisher's stream as it came in, or a rung by name.
ORIGINAL = "original"


class RestreamDestination(Base):
    """One place a channel relays to while it is live."""

    __tablename__ = "restream_destinations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    preset: Mapped[str] = mapped_column(String(16), default="custom", server_default="custom")
    ingest_url: Mapped[str] = mapped_column(String(1024))
    stream_key: Mapped[str] = mapped_column(String(512))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # "original" or the name of one rung of the channel's ladder.
    source: Mapped[str] = mapped_column(String(32), default=ORIGINAL, server_default=ORIGINAL)
    # A CA file (path on the server) trusted for this rtmps destination, beside the system's.
    ca_file: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ = ["ORIGINAL", "PRESETS", "PRESET_URLS", "RestreamDestination"]
