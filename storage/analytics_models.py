"""Tables of the analytics (issue 13): raw samples of live streams, viewer sessions, one
summary per broadcast, and per-channel hourly and daily rollups. ``storage.analytics`` says
how they fit together and how long each is kept.

Times here are whole seconds since the epoch (UTC) in ``BigInteger`` columns, not datetimes:
bucketing a sample into its hour or day is then ``at / 3600 * 3600`` in plain SQL, the same
integer arithmetic on SQLite and PostgreSQL, and the buckets' keys are small integers that
sort and compare without a date function.

They share ``models.Base`` so one metadata describes the whole schema (the migration test
compares it with 0009), like ``storage.creator_models``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, false, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, ChannelFollow


class AnalyticsSample(Base):
    """One live stream at one moment (every ``analytics.sample_interval`` seconds while it is
    live): the raw events the rollups are made of. Kept ``analytics.raw_retention_days``."""

    __tablename__ = "analytics_samples"
    __table_args__ = (
        Index("ix_analytics_samples_stream_id_at", "stream_id", "at"),
        Index("ix_analytics_samples_at", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    at: Mapped[int] = mapped_column(BigInteger)  # epoch seconds
    # Seconds of the stream this sample stands for (since the previous sample).
    seconds: Mapped[int] = mapped_column(Integer)
    viewers: Mapped[int] = mapped_column(Integer)
    # Viewers per rendition ({"720p": 12, "480p": 3}).
    renditions: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Chat messages, distinct chatters and new follows since the previous sample.
    messages: Mapped[int] = mapped_column(Integer)
    chatters: Mapped[int] = mapped_column(Integer)
    follows: Mapped[int] = mapped_column(Integer)


class AnalyticsWatch(Base):
    """One viewer session's watching of one broadcast in one rendition: the seconds it was
    counted as a viewer. A session that switches quality has a row per rendition."""

    __tablename__ = "analytics_watch"
    __table_args__ = (Index("ix_analytics_watch_last_at", "last_at"),)

    stream_id: Mapped[int] = mapped_column(
        ForeignKey("streams.id", ondelete="CASCADE"), primary_key=True
    )
    # A hash of the HLS playback session (never the client's address).
    viewer_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    rendition: Mapped[str] = mapped_column(String(32), primary_key=True)
    first_at: Mapped[int] = mapped_column(BigInteger)
    last_at: Mapped[int] = mapped_column(BigInteger)
    seconds: Mapped[int] = mapped_column(Integer)


class AnalyticsStream(Base):
    """A broadcast's figures, recomputed from its samples and sessions while it is live and
    once more (``final``) after it ended; kept as long as the stream row."""

    __tablename__ = "analytics_streams"
    __table_args__ = (
        Index("ix_analytics_streams_channel_id_started_at", "channel_id", "started_at"),
        Index("ix_analytics_streams_final", "final"),
    )

    stream_id: Mapped[int] = mapped_column(
        ForeignKey("streams.id", ondelete="CASCADE"), primary_key=True
    )
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    started_at: Mapped[int] = mapped_column(BigInteger)
    last_at: Mapped[int] = mapped_column(BigInteger)
    live_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    viewer_seconds: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    peak_viewers: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    unique_viewers: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    watch_seconds: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    messages: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    chatters: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    follows: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # {rendition: {"viewers": sessions that watched it, "seconds": watched}}.
    renditions: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The curve, downsampled: [[offset s, average viewers, peak, messages, chatters], ...].
    series: Mapped[list[Any]] = mapped_column(JSON)
    final: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class _ChannelBucket:
    """The columns of an hourly and a daily rollup: sums and maxima, so a longer range is the
    sum (and max) of its buckets."""

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    live_seconds: Mapped[int] = mapped_column(Integer)
    # Σ viewers x seconds over the samples: watch time, and with live_seconds the average.
    viewer_seconds: Mapped[int] = mapped_column(BigInteger)
    peak_viewers: Mapped[int] = mapped_column(Integer)
    messages: Mapped[int] = mapped_column(Integer)
    # New follows in the bucket, live or not.
    follows: Mapped[int] = mapped_column(Integer)


class AnalyticsChannelHour(_ChannelBucket, Base):
    """A channel's hour (``hour``: its first second). Kept ``analytics.hourly_retention_days``."""

    __tablename__ = "analytics_channel_hours"
    # Recomputing or pruning a span of hours of every channel at once.
    __table_args__ = (Index("ix_analytics_channel_hours_hour", "hour"),)

    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class AnalyticsChannelDay(_ChannelBucket, Base):
    """A channel's UTC day (``day``: its first second). Kept as long as the channel."""

    __tablename__ = "analytics_channel_days"
    __table_args__ = (Index("ix_analytics_channel_days_day", "day"),)

    day: Mapped[int] = mapped_column(BigInteger, primary_key=True)


# Follows gained per hour are counted from channel_follows by creation time; the index belongs
# to the analytics, so it is declared (and migrated, 0009) here rather than in models.py.
CHANNEL_FOLLOWS_CREATED_AT = Index("ix_channel_follows_created_at", ChannelFollow.created_at)
