"""Ingest behind a TCP proxy (haproxy ``send-proxy``/``send-proxy-v2``): the PROXY header is
read before the RTMP (or RTMPS) session exists, and the session is then made with the client's
address as its peer, so everything ingest does with the peer (per-address caps, logs, the
connection accounting) sees the publisher, not the proxy.

Only connections from ``rtmp.proxy_trusted`` are asked for a header; anyone else is served as
a direct client and its own address counts (a header it sends is just a bad RTMP handshake), so
no client can choose the address it is counted under. A trusted connection must deliver the
whole header within ``rtmp.proxy_header_timeout`` seconds and ``rtmp.proxy_header_max_size``
bytes; otherwise, or when the header is malformed, it is closed, logged and counted in
``aethex_rtmp_rejected_total`` (reasons ``proxy_header`` and ``proxy_timeout``). A proxy's own
connections (LOCAL or UNKNOWN headers, e.g. health checks) keep the proxy's address, and a
connection closed before its first byte (a plain TCP check) ends quietly.

Once the header is read, the socket's transport is handed to the session (``set_protocol``):
the header reader does not sit in the media path. The session sees the transport through
``PeerTransport``, which only answers ``peername`` differently.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from mediaserver.metrics import Metrics
from mediaserver.settings import RtmpSettings

from .proxy_header import ProxyHeader, ProxyHeaderError, ProxyHeaderReader

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(text: str) -> tuple[Network, ...]:
    """``rtmp.proxy_trusted``: comma-separated networks (CIDR) or single addresses."""
    items = (n.strip() for n in text.split(","))
    return tuple(ipaddress.ip_network(n, strict=False) for n in items if n)


def is_trusted(host: str | None, networks: tuple[Network, ...]) -> bool:
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack listener shows IPv4 peers as ::ffff:a.b.c.d
    return any(ip in net for net in networks)


class ProxyAcceptor:
    """A listener's protocol factory: each connection starts with a ``ProxyHeaderProtocol``
    that becomes ``make()``'s protocol once the client's address is known."""

    def __init__(
        self, make: Callable[[], asyncio.Protocol], settings: RtmpSettings, metrics: Metrics
    ) -> None:
        self.make = make
        self.networks = trusted_networks(settings.proxy_trusted)
        self.timeout = settings.proxy_header_timeout
        self.max_size = settings.proxy_header_max_size
        self.metrics = metrics

    def __call__(self) -> asyncio.Protocol:
        return ProxyHeaderProtocol(self)


class ProxyHeaderProtocol(asyncio.Protocol):
    def __init__(self, acceptor: ProxyAcceptor) -> None:
        self.acceptor = acceptor
        self.reader = ProxyHeaderReader(acceptor.max_size)
        self.raw: asyncio.Transport | None = None
        self.peer = "?"
        self.timer: asyncio.TimerHandle | None = None
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if peer else None
        if peer:
            self.peer = f"{peer[0]}:{peer[1]}"
        if not is_trusted(host, self.acceptor.networks):
            self._hand_over(None)
            return
        # One timer for the header phase only; the session's deadlines start at hand-over.
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.acceptor.timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        try:
            header = self.reader.feed(data)
        except ProxyHeaderError as exc:
            self._refuse("proxy_header", f"bad PROXY header: {exc}")
            return
        if header is not None:
            self._hand_over(header)

    def eof_received(self) -> bool | None:
        if not self.done:
            if self.reader.received:
                log.info("rtmp %s: closed in the middle of its PROXY header", self.peer)
            else:
                log.debug("rtmp %s: closed before a PROXY header (a TCP check)", self.peer)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()

    def _timed_out(self) -> None:
        if not self.done:
            self._refuse("proxy_timeout", f"no PROXY header within {self.acceptor.timeout:g} s")

    def _refuse(self, reason: str, message: str) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        log.info("rtmp %s: %s; closing", self.peer, message)
        self.acceptor.metrics.rtmp_rejected.labels(reason).inc()
        if self.raw is not None:
            self.raw.abort()

    def _hand_over(self, header: ProxyHeader | None) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        raw = self.raw
        assert raw is not None
        inner = self.acceptor.make()
        transport: asyncio.BaseTransport = raw
        if header is not None and header.source is not None:
            transport = PeerTransport(raw, header.source)
        # The socket's events go to the session from here on; set before connection_made so
        # a session that aborts at once (a per-address cap) gets its own connection_lost.
        raw.set_protocol(inner)
        inner.connection_made(transport)
        rest = self.reader.rest
        if rest and not raw.is_closing():
            inner.data_received(rest)


class PeerTransport(asyncio.Transport):
    """The socket's transport with the client's address (from the PROXY header) as its
    ``peername``; everything else is the socket's."""

    def __init__(self, raw: asyncio.Transport, peer: tuple[str, int]) -> None:
        super().__init__()
        self._raw = raw
        self._peer = peer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peer
        if name == "proxy_peername":
            return self._raw.get_extra_info("peername", default)
        return self._raw.get_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._raw.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._raw.writelines(list_of_data)

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    def close(self) -> None:
        self._raw.close()

    def abort(self) -> None:
        self._raw.abort()

    def pause_reading(self) -> None:
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw.is_reading()

    def can_write_eof(self) -> bool:
        return self._raw.can_write_eof()

    def write_eof(self) -> None:
        self._raw.write_eof()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._raw.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._raw.get_protocol()
