"""Admission of HTTP connections at accept: a cap in all and a cap per client address.

Why both: a global cap alone is a shared pool that one client can drain. A few hundred idle
sockets from a single address would fill it (or the process's open files) and every other
viewer would be refused. Counting per address makes the flooding address hit its own cap while
everyone else is still admitted; the global cap keeps the total under the file limit.

The address is the socket peer's, never a header: admission happens before a byte of the
request is read. IPv6 clients are grouped by /64, the block one subscriber usually gets, so
walking through its addresses does not multiply a client's share.
"""

from __future__ import annotations

# Reasons, as the ``reason`` label of aethex_http_rejected_total.
TOO_MANY_CONNECTIONS = "too_many_connections"
TOO_MANY_FROM_ADDRESS = "too_many_from_address"
# Not an admission: a connection closed because a request head missed its deadline.
HEAD_TIMEOUT = "head_timeout"


class Admission:
    """Counts open connections in all and per address key; refuses those over a cap."""

    __slots__ = ("max_total", "max_per_address", "total", "by_address")

    def __init__(self, max_total: int, max_per_address: int) -> None:
        """``max_per_address`` 0 turns the per-address cap off (behind a reverse proxy every
        connection comes from the proxy's address)."""
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.total = 0
        self.by_address: dict[str, int] = {}

    def admit(self, key: str | None) -> str | None:
        """Count a new connection and return None, or return why it is refused (uncounted)."""
        if self.total >= self.max_total:
            return TOO_MANY_CONNECTIONS
        if key is not None and self.max_per_address:
            n = self.by_address.get(key, 0)
            if n >= self.max_per_address:
                return TOO_MANY_FROM_ADDRESS
            self.by_address[key] = n + 1
        self.total += 1
        return None

    def release(self, key: str | None) -> None:
        """Uncount a connection that ``admit`` let in."""
        self.total -= 1
        if key is not None and self.max_per_address:
            n = self.by_address[key] - 1
            if n:
                self.by_address[key] = n
            else:
                del self.by_address[key]
