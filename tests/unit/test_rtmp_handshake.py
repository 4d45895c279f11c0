"""Server handshake, checked the way clients check it (independent HMAC code in rtmp_client)."""

from __future__ import annotations

import random

import pytest

from mediaserver.rtmp.errors import ProtocolError
from mediaserver.rtmp.handshake import HANDSHAKE_SIZE, ServerHandshake, build_server_response
from tests.rtmp_client import check_server_hello, make_c1


def handshake(c0c1: bytes, *, bytewise: bool = False) -> tuple[ServerHandshake, bytes]:
    hs = ServerHandshake()
    if bytewise:
        for i in range(len(c0c1)):
            assert hs.receive_data(c0c1[i : i + 1]) == 1
    else:
        assert hs.receive_data(c0c1) == len(c0c1)
    return hs, hs.data_to_send()


@pytest.mark.parametrize("bytewise", [False, True])
def test_plain_handshake_echoes_c1(bytewise):
    c1 = make_c1(digest=False)
    hs, out = handshake(b"\x03" + c1, bytewise=bytewise)
    assert len(out) == 1 + 2 * HANDSHAKE_SIZE
    hello = check_server_hello(c1, out)
    assert hello.version == 3
    assert hello.s1[4:8] == b"\x00\x00\x00\x00"  # plain S1
    assert hello.s2_echoes_c1
    assert hs.digest_schema is None
    assert not hs.done
    assert hs.receive_data(random.Random(0).randbytes(HANDSHAKE_SIZE)) == HANDSHAKE_SIZE
    assert hs.done
    assert hs.data_to_send() == b""


@pytest.mark.parametrize("schema_base,schema", [(8, 0), (772, 1)])
@pytest.mark.parametrize("seed", range(4))
def test_digest_handshake(schema_base, schema, seed):
    c1 = make_c1(digest=True, schema_base=schema_base, rng=random.Random(seed))
    hs, out = handshake(b"\x03" + c1)
    hello = check_server_hello(c1, out, schema_base=schema_base)
    assert hello.version == 3
    assert hello.s1[4] >= 3  # ffmpeg checks this byte before validating our digest
    assert hello.s1_digest_valid
    assert hello.s2_digest_valid
    assert not hello.s2_echoes_c1
    assert hs.digest_schema == schema


def test_invalid_digest_falls_back_to_echo():
    c1 = bytearray(make_c1(digest=True))
    c1[100] ^= 0xFF  # breaks the HMAC whichever schema the digest sits in
    c1[900] ^= 0xFF
    hs, out = handshake(b"\x03" + bytes(c1))
    hello = check_server_hello(bytes(c1), out)
    assert hello.s2_echoes_c1
    assert not hello.s1_digest_valid
    assert hs.digest_schema is None


def test_c2_content_is_not_checked_and_extra_bytes_are_left_over():
    hs, _ = handshake(b"\x03" + make_c1(digest=True))
    tail = b"\x03first chunk bytes"
    assert hs.receive_data(b"\x00" * HANDSHAKE_SIZE + tail) == HANDSHAKE_SIZE
    assert hs.done
    assert hs.receive_data(tail) == 0


def test_c0_c1_c2_in_one_segment():
    hs = ServerHandshake()
    data = b"\x03" + make_c1(digest=False) + bytes(HANDSHAKE_SIZE) + b"rest"
    assert hs.receive_data(data) == 1 + 2 * HANDSHAKE_SIZE
    assert hs.done


@pytest.mark.parametrize("version", [0, 4, 31])
def test_other_versions_are_answered_with_3(version):
    _, out = handshake(bytes([version]) + make_c1(digest=False))
    assert out[0] == 3


@pytest.mark.parametrize("first", [b"\x06", b"\x08", b"\x09"])
def test_rtmpe_refused(first):
    with pytest.raises(ProtocolError, match="RTMPE"):
        ServerHandshake().receive_data(first)


def test_text_protocol_refused_at_first_byte():
    with pytest.raises(ProtocolError, match="not an RTMP handshake"):
        ServerHandshake().receive_data(b"GET / HTTP/1.1\r\n")


def test_s1_uses_injected_randomness_and_time():
    out, schema = build_server_response(
        b"\x03" + make_c1(digest=False), now_ms=0x01020304, random_bytes=lambda n: b"\xab" * n
    )
    assert schema is None
    assert out[1:5] == b"\x01\x02\x03\x04"
    assert out[9 : 1 + HANDSHAKE_SIZE] == b"\xab" * (HANDSHAKE_SIZE - 8)
