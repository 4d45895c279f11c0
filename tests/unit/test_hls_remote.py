"""The request a node forwards to the stream's owner (webapp/hls/remote.py): the same route
and every query value, encoded, whichever live route matched."""

from __future__ import annotations

from webapp.hls.remote import _target
from webapp.hls.reply import HlsRequest


def request(params: dict[str, str], query: dict[str, list[str]]) -> HlsRequest:
    return HlsRequest("GET", params, query, {}, "127.0.0.1")


def test_each_live_route_is_rebuilt() -> None:
    assert _target(request({"slug": "a"}, {}), "master") == "/hls/a/master.m3u8"
    assert (
        _target(request({"slug": "a"}, {"session": ["s" * 16]}), "beacon")
        == "/hls/a/watching?session=ssssssssssssssss"
    )
    tokened = {"slug": "a", "token": "0a1b2c3d4e", "rendition": "480p", "name": "index.m3u8"}
    query = {"_HLS_msn": ["12"], "_HLS_part": ["3"], "_HLS_skip": ["YES"]}
    assert (
        _target(request(tokened, query), "blocking_playlist")
        == "/hls/a/0a1b2c3d4e/480p/index.m3u8?_HLS_msn=12&_HLS_part=3&_HLS_skip=YES"
    )
    short = {"slug": "a", "rendition": "480p", "name": "part12.3.m4s"}
    assert _target(request(short, {}), "part") == "/hls/a/480p/part12.3.m4s"


def test_values_are_encoded_and_repeats_kept() -> None:
    """The owner sees what the player sent (a repeated directive is its 400 to give), and
    nothing in a value can change the path or add parameters."""
    params = {"slug": "a b", "token": "t", "rendition": "r", "name": "index.m3u8"}
    target = _target(request(params, {"_HLS_msn": ["1", "2"], "x": ["&y=1 /"]}), "playlist")
    assert target == "/hls/a%20b/t/r/index.m3u8?_HLS_msn=1&_HLS_msn=2&x=%26y%3D1+%2F"
