"""The one exception type the RTMP core lets escape.

Following h11's rule: whatever bytes a peer sends, the parser either produces events or raises
:class:`ProtocolError`. Callers then need exactly one ``except`` to drop a bad connection, and a
``struct.error`` or ``IndexError`` leaking out of a parser is a bug, not a peer's fault.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer broke the RTMP protocol (or exceeded a configured limit); close the connection."""
