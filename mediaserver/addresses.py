"""One rule for "the same client" wherever a per-address limit counts (RTMP and HTTP caps,
login and sign-up limits, viewer sessions): an IPv4 address, also when a dual-stack socket
shows it IPv4-mapped, or an IPv6 /64, the block one subscriber usually holds whole, so
switching addresses inside it gains nothing. A leaf module, so ingest and webapp share it.
"""

from __future__ import annotations

import ipaddress


def address_key(host: str | None) -> str | None:
    """The key a peer address is counted under; None for a peer without an IP address (a Unix
    socket), which only global caps cover. A host that is not an IP address is its own key."""
    if not host:
        return None
    if ":" not in host:
        return host
    try:
        ip = ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return host
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))
