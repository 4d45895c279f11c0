"""What a :class:`~mediaserver.rtmp.client.ClientConnection` reports to its owner.

The owner (the restream glue) needs to know three things: when it may send media
(:class:`PublishStarted`), when it must give up on this connection and retry later
(:class:`RequestRejected`, :class:`PublishStopped`, :class:`SetupTimedOut`; the connection is
closed when one of them is reported), and what the server said otherwise, for the status page
(:class:`StatusReceived`). Every text field comes from the peer, is clipped to
``Limits.max_name_length`` and has our stream key replaced by ``<key>``: these records end up
in logs and dashboards, and a server that echoes the key (many do, in onStatus descriptions)
must not leak it there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias


@dataclass(frozen=True, slots=True)
class ConnectAccepted:
    """The server answered ``connect`` with ``_result``; ``properties`` and ``info`` are its two
    objects (fmsVer/capabilities, and code/description/objectEncoding; Enhanced RTMP servers
    list their codecs in ``fourCcList`` there)."""

    properties: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamCreated:
    """``createStream`` answered: the message stream id our publish and media use."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PublishStarted:
    """onStatus NetStream.Publish.Start: media may be sent from now on."""

    stream_id: int
    description: str


@dataclass(frozen=True, slots=True)
class StatusReceived:
    """Any other onStatus/onFCPublish the server sent that changes nothing by itself (e.g.
    NetStream.Publish.Idle, NetStream.Unpublish.Success); for the owner's status page."""

    stream_id: int
    level: str
    code: str
    description: str


@dataclass(frozen=True, slots=True)
class RequestRejected:
    """The server refused a step of the setup; the connection is closed.

    ``stage`` is the refused command ("connect", "createStream" or "publish"); ``code`` the
    server's (NetConnection.Connect.Rejected, NetStream.Publish.BadName, ...), or "" when the
    answer carried none.
    """

    stage: str
    code: str
    description: str


@dataclass(frozen=True, slots=True)
class PublishStopped:
    """The server ended an accepted publish with an error-level onStatus; the connection is
    closed."""

    code: str
    description: str


@dataclass(frozen=True, slots=True)
class SetupTimedOut:
    """The publish had not started by the setup deadline; ``stage`` is what we were waiting
    for ("handshake", "connect", "createStream" or "publish"). The connection is closed."""

    stage: str


ClientEvent: TypeAlias = (
    ConnectAccepted
    | StreamCreated
    | PublishStarted
    | StatusReceived
    | RequestRejected
    | PublishStopped
    | SetupTimedOut
)

__all__ = [
    "ClientEvent",
    "ConnectAccepted",
    "PublishStarted",
    "PublishStopped",
    "RequestRejected",
    "SetupTimedOut",
    "StatusReceived",
    "StreamCreated",
]
