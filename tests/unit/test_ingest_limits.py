"""How the ingest glue turns settings into the core's limits and counts peers per address."""

from __future__ import annotations

from mediaserver.addresses import address_key
from mediaserver.ingest.server import limits_from_settings
from mediaserver.settings import load_settings


def test_per_address_cap_counts_ipv4_and_ipv6_slash_64() -> None:
    assert address_key("203.0.113.7") == "203.0.113.7"
    assert address_key("::ffff:203.0.113.7") == "203.0.113.7"  # a dual-stack socket's IPv4 peer
    # One host usually holds a whole /64: its addresses count together.
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("fe80::1%eth0") == "fe80::/64"


def test_setup_limits_reach_the_core() -> None:
    settings = load_settings(
        None,
        env={"AETHEX_RTMP__MAX_SETUP_MESSAGE_SIZE": "4096", "AETHEX_RTMP__MAX_NAME_LENGTH": "64"},
    )
    limits = limits_from_settings(settings)
    assert (limits.max_setup_message_size, limits.max_name_length) == (4096, 64)
    assert limits.setup_message_size == 4096
