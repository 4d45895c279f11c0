"""Admission counting (webapp/admission.py): the caps, their release, and address grouping."""

from __future__ import annotations

from mediaserver.addresses import address_key
from webapp.admission import TOO_MANY_CONNECTIONS, TOO_MANY_FROM_ADDRESS, Admission


def test_ipv4_is_its_own_key_and_ipv6_is_grouped_by_64() -> None:
    assert address_key("203.0.113.7") == "203.0.113.7"
    assert (
        address_key("2001:db8:1:2:aaaa::1")
        == address_key("2001:db8:1:2:ffff::9")
        == "2001:db8:1:2::/64"
    )
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:198.51.100.4") == "198.51.100.4"  # a dual-stack socket
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key(None) is None and address_key("") is None


def test_per_address_cap_leaves_room_for_other_addresses() -> None:
    adm = Admission(max_total=4, max_per_address=2)
    assert [adm.admit("a") for _ in range(3)] == [None, None, TOO_MANY_FROM_ADDRESS]
    assert adm.admit("b") is None and adm.admit("c") is None
    assert adm.total == 4
    adm.release("a")
    assert adm.admit("a") is None
    assert adm.admit("d") == TOO_MANY_CONNECTIONS  # the global cap, whoever asks
    assert adm.admit(None) == TOO_MANY_CONNECTIONS


def test_release_forgets_an_address_and_zero_turns_the_per_address_cap_off() -> None:
    adm = Admission(max_total=10, max_per_address=3)
    for _ in range(3):
        assert adm.admit("a") is None
    for _ in range(3):
        adm.release("a")
    assert adm.by_address == {} and adm.total == 0
    off = Admission(max_total=10, max_per_address=0)
    assert all(off.admit("proxy") is None for _ in range(10))
    assert off.admit("proxy") == TOO_MANY_CONNECTIONS and off.by_address == {}
    off.release("proxy")
    assert off.total == 9
