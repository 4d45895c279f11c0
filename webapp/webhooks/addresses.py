"""Where a webhook may be delivered: public addresses only, unless the operator allows more.

A creator types the URL, the server makes the request: without a check a creator could make
the server probe its own network (``http://127.0.0.1:5432/``, the cloud metadata service at
``169.254.169.254``, a LAN admin page). The host is checked when the endpoint is registered
(a clear 400) and again at every delivery, because a name can resolve elsewhere later. At
delivery the connection itself goes through ``GuardedResolver``, so the address checked is the
address connected to (a name that answers a public address to the check and a private one to
the connection, DNS rebinding, gains nothing). IP literals skip aiohttp's resolver, so
``check_host`` looks at them directly.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedDestination(OSError):
    """The host is, or resolves to, an address deliveries may not go to."""


def is_public(address: Address) -> bool:
    """Whether ``address`` is a globally routable unicast address (IPv4 inside IPv6 included)."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return is_public(mapped)
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


def literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def refuse_unless_public(host: str, addresses: list[str]) -> None:
    for text in addresses:
        address = literal_address(text)
        if address is None or not is_public(address):
            raise RefusedDestination(
                f"refused: {host} is {text}, a loopback, private or otherwise non-public "
                "address (webhooks.allow_private_addresses is off)"
            )


async def check_host(host: str, port: int, *, allow_private: bool, within: float) -> None:
    """RefusedDestination unless ``host`` may be delivered to: every address it resolves to
    public (or ``allow_private``); a name that does not resolve within ``within`` seconds
    is refused too, saying so."""
    if allow_private:
        return
    if literal_address(host) is not None:
        refuse_unless_public(host, [host])
        return
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(within):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise RefusedDestination(f"refused: {host} did not resolve within {within:g} s") from None
    except OSError as exc:
        raise RefusedDestination(f"refused: {host} does not resolve ({exc.strerror})") from None
    refuse_unless_public(host, [str(info[4][0]) for info in infos])


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing names that resolve to a non-public address."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        refuse_unless_public(host, [result["host"] for result in results])
        return results

    async def close(self) -> None:
        await self._inner.close()
