"""RTMP ingest: sockets and deadlines around the sans-I/O core, publish checks via storage."""

from .server import IngestServer, RtmpSession, limits_from_settings

__all__ = ["IngestServer", "RtmpSession", "limits_from_settings"]
