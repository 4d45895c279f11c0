"""Relaying live streams to other RTMP(S) servers: the asyncio glue around the RTMP client
role of :mod:`mediaserver.rtmp`."""

from .client import PublishError, RtmpPublisher, client_ssl_context

__all__ = ["PublishError", "RtmpPublisher", "client_ssl_context"]
