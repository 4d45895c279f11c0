"""The VOD byte cache keeps recent objects within its budget, least recently used out first."""

from pathlib import Path

from webapp.hls import _ByteCache


def key(name: str) -> tuple[Path, str, str]:
    return (Path("/vod/1"), "720p", name)


def test_lru_within_budget() -> None:
    cache = _ByteCache(80)
    for name in ("a", "b", "c", "d"):
        cache.put(key(name), name.encode() * 10)  # 10 bytes each
    assert cache.total == 40 and cache.get(key("a")) == b"a" * 10
    for name in ("e", "f", "g", "h", "i"):
        cache.put(key(name), name.encode() * 10)
    assert cache.total <= 80
    assert cache.get(key("b")) is None  # oldest unused went first
    assert cache.get(key("a")) == b"a" * 10  # recently read, kept
    assert cache.get(key("i")) == b"i" * 10


def test_objects_over_an_eighth_of_the_budget_are_not_cached() -> None:
    cache = _ByteCache(80)
    cache.put(key("big"), b"x" * 11)
    assert cache.get(key("big")) is None and cache.total == 0
    off = _ByteCache(0)
    off.put(key("a"), b"a")
    assert off.get(key("a")) is None
