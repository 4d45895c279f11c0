"""Acknowledgement windows of one RTMP connection, in both directions, without I/O.

RTMP's flow control is three messages: Window Acknowledgement Size (how often the receiver of
it must acknowledge what it receives), Acknowledgement (the bytes received so far, modulo
2**32) and Set Peer Bandwidth (how many unacknowledged bytes the receiver of it may have in
flight; hard, soft or dynamic). Servers such as nginx-rtmp and FMS stop reading from a peer
that never acknowledges, and the acknowledgements coming back are the only end-to-end measure
of a destination's backlog a restream has, so the publisher side keeps both books here.
"""

from __future__ import annotations

from .chunk import BANDWIDTH_DYNAMIC, BANDWIDTH_HARD, BANDWIDTH_SOFT, parse_u32
from .errors import ProtocolError


class Windows:
    """Counts bytes both ways and says when to acknowledge or announce a window."""

    __slots__ = (
        "bytes_received",
        "ack_window",
        "_last_ack",
        "peer_acknowledged",
        "peer_bandwidth",
        "_hard",
        "_announced",
    )

    def __init__(self, ack_window: int) -> None:
        self.bytes_received = 0
        # Window of our Acknowledgements: the peer's Window Acknowledgement Size once it sent one.
        self.ack_window = ack_window
        self._last_ack = 0
        # What the peer acknowledged of what we sent, unwrapped (bytes, not modulo 2**32).
        self.peer_acknowledged = 0
        # Unacknowledged bytes the peer lets us have in flight (0: no limit was set).
        self.peer_bandwidth = 0
        self._hard = False
        self._announced = 0  # the window we last stated in a Window Acknowledgement Size

    def ack_due(self) -> int | None:
        """The sequence number to acknowledge now, if the received bytes crossed the window
        (asked once the bytes were processed, so the answer goes out after any replies)."""
        if self.bytes_received - self._last_ack >= self.ack_window:
            self._last_ack = self.bytes_received
            return self.bytes_received & 0xFFFFFFFF
        return None

    def on_window_ack_size(self, payload: bytes) -> None:
        size = parse_u32(payload, "Window Acknowledgement Size")
        if size == 0:
            raise ProtocolError("Window Acknowledgement Size of 0")
        self.ack_window = size

    def on_acknowledgement(self, payload: bytes, bytes_sent: int) -> None:
        value = parse_u32(payload, "Acknowledgement")
        # The sequence number wraps at 2**32: take the nearest count not above what we sent.
        acked = bytes_sent - ((bytes_sent - value) & 0xFFFFFFFF)
        if acked > self.peer_acknowledged:
            self.peer_acknowledged = acked

    def on_peer_bandwidth(self, payload: bytes) -> int | None:
        """Apply Set Peer Bandwidth; return the window to announce back, if it changed (the
        specification asks the receiver to state its own window when it differs)."""
        size = parse_u32(payload, "Set Peer Bandwidth")
        if size == 0:
            raise ProtocolError("Set Peer Bandwidth of 0")
        limit_type = payload[4] if len(payload) > 4 else BANDWIDTH_HARD
        if limit_type == BANDWIDTH_HARD or (limit_type == BANDWIDTH_DYNAMIC and self._hard):
            self.peer_bandwidth = size
            self._hard = True
        elif limit_type == BANDWIDTH_SOFT:
            self.peer_bandwidth = min(self.peer_bandwidth, size) if self.peer_bandwidth else size
            self._hard = False
        elif limit_type != BANDWIDTH_DYNAMIC:
            raise ProtocolError(f"Set Peer Bandwidth with unknown limit type {limit_type}")
        elif not self.peer_bandwidth:
            self.peer_bandwidth = size  # a dynamic limit as the first one: take it
        if self.peer_bandwidth != self._announced:
            self._announced = self.peer_bandwidth
            return self.peer_bandwidth
        return None


__all__ = ["Windows"]
