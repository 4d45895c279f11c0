"""H.264 byte-format helpers: Annex B <-> AVCC and the AVCDecoderConfigurationRecord (avcC).

Why this exists: libx264 driven through a PyAV ``CodecContext`` (no muxer in between) emits
Annex B start codes both in ``extradata`` and in every packet, while fMP4 wants 4-byte
length-prefixed NAL units and an avcC record. The transcoder converts with these functions;
the packager validates avcC with them (ISO/IEC 14496-15, 5.3.3.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

NAL_SPS = 7
NAL_PPS = 8
NAL_SPS_EXT = 13
# profile_idc values whose avcC carries chroma_format / bit depth fields (14496-15, 5.3.3.1.2).
_HIGH_PROFILES = frozenset({100, 110, 122, 144})
# profile_idc values whose SPS carries chroma_format_idc and bit depths (H.264 7.3.2.1.1).
_SPS_CHROMA_PROFILES = frozenset(
    {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135, 144}
)


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (3- or 4-byte start codes), without the start codes."""
    nalus: list[bytes] = []
    n = len(data)
    i = data.find(b"\x00\x00\x01")
    if i < 0:
        return [data] if data else []
    start = i + 3
    while True:
        j = data.find(b"\x00\x00\x01", start)
        if j < 0:
            end = n
        else:
            # A 4-byte start code leaves one zero byte before the 3-byte pattern; trailing
            # zero bytes of a NAL unit are never meaningful (rbsp_trailing_bits end in a 1).
            end = j
            while end > start and data[end - 1] == 0:
                end -= 1
        if end > start:
            nalus.append(data[start:end])
        if j < 0:
            return nalus
        start = j + 3


def to_avcc(nalus: list[bytes]) -> bytes:
    """Length-prefixed (4 bytes, big endian) concatenation of NAL units: an fMP4 sample."""
    return b"".join(len(n).to_bytes(4, "big") + n for n in nalus)


def annexb_to_avcc(data: bytes) -> bytes:
    """One encoded access unit from Annex B to the 4-byte AVCC sample format."""
    return to_avcc(split_annexb(data))


def split_avcc(sample: bytes, length_size: int = 4) -> list[bytes]:
    """NAL units of a length-prefixed sample; ``ValueError`` if the lengths do not add up."""
    out: list[bytes] = []
    i = 0
    while i < len(sample):
        if i + length_size > len(sample):
            raise ValueError("truncated NAL unit length")
        size = int.from_bytes(sample[i : i + length_size], "big")
        i += length_size
        if size == 0 or i + size > len(sample):
            raise ValueError("NAL unit length out of range")
        out.append(sample[i : i + size])
        i += size
    return out


class _BitReader:
    """Exp-Golomb reader over an RBSP (emulation prevention already removed)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def bit(self) -> int:
        if self._pos >= len(self._data) * 8:
            raise ValueError("SPS truncated")
        byte = self._data[self._pos >> 3]
        self._pos += 1
        return (byte >> (7 - ((self._pos - 1) & 7))) & 1

    def bits(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | self.bit()
        return v

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("Exp-Golomb code too long")
        return (1 << zeros) - 1 + self.bits(zeros)


def _rbsp(nal: bytes) -> bytes:
    """Drop emulation_prevention_three_byte (00 00 03 -> 00 00) from a NAL unit payload."""
    out = bytearray()
    zeros = 0
    for b in nal:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


@dataclass(frozen=True, slots=True)
class SpsInfo:
    """The SPS fields the avcC record and the codec string repeat."""

    profile_idc: int
    constraint_flags: int
    level_idc: int
    chroma_format_idc: int = 1
    bit_depth_luma: int = 8
    bit_depth_chroma: int = 8


def parse_sps(sps: bytes) -> SpsInfo:
    """Profile, level and (for High profiles) chroma format and bit depths of an SPS NAL unit."""
    if len(sps) < 4 or sps[0] & 0x1F != NAL_SPS:
        raise ValueError("not an SPS NAL unit")
    profile, constraints, level = sps[1], sps[2], sps[3]
    if profile not in _SPS_CHROMA_PROFILES:
        return SpsInfo(profile, constraints, level)
    r = _BitReader(_rbsp(sps[4:]))
    r.ue()  # seq_parameter_set_id
    chroma = r.ue()
    if chroma > 3:
        raise ValueError("bad chroma_format_idc in SPS")
    if chroma == 3:
        r.bit()  # separate_colour_plane_flag
    luma = r.ue() + 8
    chroma_depth = r.ue() + 8
    if luma > 14 or chroma_depth > 14:
        raise ValueError("bad bit depth in SPS")
    return SpsInfo(profile, constraints, level, chroma, luma, chroma_depth)


def make_avcc(
    sps_list: Sequence[bytes], pps_list: Sequence[bytes], sps_ext: Sequence[bytes] = ()
) -> bytes:
    """An AVCDecoderConfigurationRecord declaring 4-byte NAL lengths (what ``to_avcc`` writes)."""
    if not sps_list or not pps_list:
        raise ValueError("avcC needs at least one SPS and one PPS")
    if len(sps_list) > 31 or len(pps_list) > 255:
        raise ValueError("too many parameter sets for avcC")
    info = parse_sps(sps_list[0])
    out = bytearray([1, info.profile_idc, info.constraint_flags, info.level_idc, 0xFC | 3])
    out.append(0xE0 | len(sps_list))
    for s in sps_list:
        out += len(s).to_bytes(2, "big") + s
    out.append(len(pps_list))
    for p in pps_list:
        out += len(p).to_bytes(2, "big") + p
    if info.profile_idc in _HIGH_PROFILES:
        out.append(0xFC | info.chroma_format_idc)
        out.append(0xF8 | (info.bit_depth_luma - 8))
        out.append(0xF8 | (info.bit_depth_chroma - 8))
        out.append(len(sps_ext))
        for e in sps_ext:
            out += len(e).to_bytes(2, "big") + e
    return bytes(out)


def avcc_from_annexb(extradata: bytes) -> bytes:
    """The avcC record for Annex B parameter sets (libx264 ``extradata`` with GLOBAL_HEADER).

    Also accepts a buffer that already is an avcC record and returns it unchanged, so the
    caller need not know which form an encoder produced.
    """
    if extradata[:1] == b"\x01":
        parse_avcc(extradata)
        return bytes(extradata)
    nalus = split_annexb(extradata)
    sps = [n for n in nalus if n[0] & 0x1F == NAL_SPS]
    pps = [n for n in nalus if n[0] & 0x1F == NAL_PPS]
    ext = [n for n in nalus if n[0] & 0x1F == NAL_SPS_EXT]
    return make_avcc(sps, pps, ext)


@dataclass(frozen=True, slots=True)
class AvccInfo:
    """What the packager needs from an avcC record."""

    length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]


def parse_avcc(avcc: bytes) -> AvccInfo:
    """Validate an avcC record; ``ValueError`` names what is wrong."""
    if len(avcc) < 7:
        raise ValueError("avcC record too short")
    if avcc[0] != 1:
        raise ValueError(f"avcC configurationVersion is {avcc[0]}, expected 1 (Annex B given?)")
    length_size = (avcc[4] & 3) + 1
    i = 6
    sps: list[bytes] = []
    pps: list[bytes] = []
    for count, target in ((avcc[5] & 0x1F, sps), (None, pps)):
        if count is None:
            if i >= len(avcc):
                raise ValueError("avcC record truncated before the PPS count")
            count = avcc[i]
            i += 1
        for _ in range(count):
            if i + 2 > len(avcc):
                raise ValueError("avcC record truncated")
            size = int.from_bytes(avcc[i : i + 2], "big")
            i += 2
            if size == 0 or i + size > len(avcc):
                raise ValueError("avcC parameter set length out of range")
            target.append(avcc[i : i + size])
            i += size
    if not sps:
        raise ValueError("avcC record has no SPS")
    if sps[0][0] & 0x1F != NAL_SPS:
        raise ValueError("first avcC parameter set is not an SPS")
    return AvccInfo(length_size, tuple(sps), tuple(pps))


def codec_string_avc(avcc: bytes) -> str:
    """RFC 6381 ``avc1.PPCCLL`` from the first SPS (profile_idc, constraint flags, level_idc)."""
    sps = parse_avcc(avcc).sps[0]
    if len(sps) < 4:
        raise ValueError("SPS too short")
    return f"avc1.{sps[1]:02x}{sps[2]:02x}{sps[3]:02x}"
