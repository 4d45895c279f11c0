"""Re-encoding the partial GOPs at a clip's edges with PyAV, so copied GOPs still decode.

The copied GOPs keep the source's parameter sets; a new encoder writes its own. Rather than
hope libx264 writes byte-identical SPS/PPS (it does not for another encoder, e.g. a passthrough
rendition from OBS), every re-encoded piece is encoded with parameter-set ids the source does
not use (x264 ``sps-id``) and the clip's avcC lists both sets: one sample description, one
init section, and each IDR activates its own SPS. Pieces are closed GOPs (they start with an
IDR, and no B-frames, so decode order is presentation order), encoded with the source's
profile, level, size and pixel format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
from av.codec.context import Flags
from av.video.reformatter import ColorRange, Interpolation, VideoReformatter

from transcode.avc import (
    NAL_PPS,
    NAL_SPS,
    annexb_to_avcc,
    make_avcc,
    parse_avcc,
    split_annexb,
)

_PROFILES = {66: "baseline", 77: "main", 100: "high", 110: "high10", 122: "high422", 244: "high444"}
# Headroom over the source GOP's bit rate for the VBV cap of a re-encoded piece: the piece
# is a fresh GOP (an extra IDR), so it needs a little more than the source spent there.
VBV_HEADROOM = 1.5


@dataclass(frozen=True, slots=True)
class EncodeSettings:
    preset: str = "veryfast"
    crf: float = 18.0
    threads: int = 0  # 0: libx264 picks


@dataclass(frozen=True, slots=True)
class SourceVideo:
    avcc: bytes
    width: int
    height: int
    timescale: int
    frame_rate: float


@dataclass(frozen=True, slots=True)
class Encoded:
    """A re-encoded piece: samples (pts, AVCC data, keyframe) in the source timescale, already
    moved to the clip's timeline, and the encoder's parameter sets."""

    samples: list[tuple[int, bytes, bool]]
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    first_frame: av.VideoFrame | None


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def bit(self) -> int:
        if self.pos >= len(self.data) * 8:
            raise ValueError("parameter set truncated")
        b = (self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return b

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code")
        value = 0
        for _ in range(zeros):
            value = (value << 1) | self.bit()
        return (1 << zeros) - 1 + value


def _unescape(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def parameter_set_ids(avcc: bytes) -> tuple[set[int], set[int]]:
    """(SPS ids, PPS ids) an avcC record uses."""
    info = parse_avcc(avcc)
    sps_ids = {_Bits(_unescape(s[4:])).ue() for s in info.sps}
    pps_ids = {_Bits(_unescape(p[1:])).ue() for p in info.pps}
    return sps_ids, pps_ids


def free_parameter_set_ids(avcc: bytes, count: int) -> list[int]:
    """``count`` ids (0-31) no SPS or PPS of ``avcc`` uses; x264 gives its PPS the SPS's id."""
    sps_ids, pps_ids = parameter_set_ids(avcc)
    free = [i for i in range(32) if i not in sps_ids and i not in pps_ids]
    if len(free) < count:
        raise ValueError("the source uses every parameter set id")
    return free[:count]


def merged_avcc(source: bytes | None, extra: Sequence[Encoded]) -> bytes:
    """One avcC with the source's parameter sets (first: they name the profile) and those of
    each re-encoded piece (duplicates dropped)."""
    sps: list[bytes] = []
    pps: list[bytes] = []
    if source is not None:
        info = parse_avcc(source)
        sps += info.sps
        pps += info.pps
    for piece in extra:
        sps += [s for s in piece.sps if s not in sps]
        pps += [p for p in piece.pps if p not in pps]
    return make_avcc(sps, pps)


def _encoder(
    src: SourceVideo, frame: av.VideoFrame, sps_id: int, kbps: int, settings: EncodeSettings
) -> av.video.codeccontext.VideoCodecContext:
    info = parse_avcc(src.avcc)
    sps = info.sps[0]
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height = frame.width, frame.height
    ctx.pix_fmt = frame.format.name
    # The decoder read the source's VUI colour description into the frame: write it again,
    # so re-encoded and copied GOPs are shown with the same range and matrix.
    ctx.color_range = frame.color_range
    ctx.colorspace = frame.colorspace
    ctx.color_primaries = frame.color_primaries
    ctx.color_trc = frame.color_trc
    ctx.time_base = Fraction(1, src.timescale)
    if src.frame_rate > 0:
        ctx.framerate = Fraction(src.frame_rate).limit_denominator(1001)
    ctx.flags |= Flags.global_header
    ctx.thread_count = settings.threads
    params = [
        "annexb=0",
        "bframes=0",
        "scenecut=0",
        "keyint=infinite",
        "min-keyint=1",
        f"sps-id={sps_id}",
        f"vbv-maxrate={max(64, kbps)}",
        f"vbv-bufsize={max(64, kbps) * 2}",
    ]
    options = {
        "preset": settings.preset,
        "crf": f"{settings.crf:g}",
        "x264-params": ":".join(params),
    }
    profile = _PROFILES.get(sps[1])
    if profile is not None:
        options["profile"] = profile
    if sps[3] and sps[3] != 9:  # level_idc 9 is level 1b, which x264 spells differently
        options["level"] = f"{sps[3] // 10}.{sps[3] % 10}"
    ctx.options = options
    ctx.open()
    return ctx


def _parameter_sets(extradata: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    if extradata[:1] == b"\x01":
        info = parse_avcc(extradata)
        return info.sps, info.pps
    nalus = split_annexb(extradata)
    return (
        tuple(n for n in nalus if n[0] & 0x1F == NAL_SPS),
        tuple(n for n in nalus if n[0] & 0x1F == NAL_PPS),
    )


def reencode(
    src: SourceVideo,
    packets: Sequence[tuple[int, int, bytes]],
    lo: int,
    hi: int,
    origin: int,
    sps_id: int,
    settings: EncodeSettings,
    *,
    keep_first: bool = False,
) -> Encoded:
    """Decode ``packets`` ((pts, dts, AVCC data) on the source timeline, from an IDR), keep
    the frames presented in ``[lo, hi)`` and encode them as one closed GOP; output pts are
    ``pts - origin``. ``keep_first``: also return the first kept frame (for a thumbnail)."""
    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = src.avcc
    decoder.thread_type = "AUTO"
    seconds = max(1, len(packets)) / (src.frame_rate or 30.0)
    kbps = round(sum(len(d) for _, _, d in packets) * 8 / seconds / 1000 * VBV_HEADROOM)
    encoder: av.video.codeccontext.VideoCodecContext | None = None
    out: list[tuple[int, bytes, bool]] = []
    first: av.VideoFrame | None = None
    annexb = False

    def drain(packets_out: list[av.Packet]) -> None:
        for p in packets_out:
            data = bytes(p)
            assert p.pts is not None
            out.append((p.pts, annexb_to_avcc(data) if annexb else data, p.is_keyframe))

    def take(frames: list[av.VideoFrame]) -> None:
        nonlocal encoder, first, annexb
        for frame in frames:
            if frame.pts is None or not lo <= frame.pts < hi:
                continue
            if encoder is None:
                encoder = _encoder(src, frame, sps_id, kbps, settings)
                annexb = (encoder.extradata or b"")[:1] != b"\x01"
            if keep_first and first is None:
                first = frame
            frame.pts -= origin
            frame.time_base = Fraction(1, src.timescale)
            frame.pict_type = av.video.frame.PictureType.NONE
            drain(encoder.encode(frame))

    for pts, dts, data in packets:
        packet = av.Packet(data)
        packet.pts, packet.dts = pts, dts
        take(decoder.decode(packet))
    take(decoder.decode(None))
    if encoder is None:
        raise ValueError("no frame of the piece lies in the window")
    drain(encoder.encode(None))
    sps, pps = _parameter_sets(bytes(encoder.extradata or b""))
    if not out or not out[0][2]:
        raise ValueError("the re-encoded piece does not start with a keyframe")
    return Encoded(out, sps, pps, first)


def jpeg(frame: av.VideoFrame, width: int) -> bytes:
    """A JPEG of ``frame`` scaled to ``width`` (even) keeping its aspect ratio."""
    width = min(width, frame.width) // 2 * 2 or 2
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    small = VideoReformatter().reformat(
        frame,
        width,
        height,
        "yuvj420p",
        dst_color_range=ColorRange.JPEG,
        interpolation=Interpolation.BICUBIC,
    )
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    ctx.qscale = True
    ctx.global_quality = 3 * 118  # q 3 in FF_QP2LAMBDA units
    ctx.color_range = ColorRange.JPEG
    small.pts = 0
    data = b"".join(bytes(p) for p in ctx.encode(small))
    return data + b"".join(bytes(p) for p in ctx.encode(None))


def decode_first(src: SourceVideo, data: bytes) -> av.VideoFrame:
    """The picture of one IDR sample."""
    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = src.avcc
    packet = av.Packet(data)
    packet.pts = packet.dts = 0
    frames = [*decoder.decode(packet), *decoder.decode(None)]
    if not frames:
        raise ValueError("the first keyframe does not decode")
    return frames[0]


__all__ = [
    "EncodeSettings",
    "Encoded",
    "SourceVideo",
    "decode_first",
    "free_parameter_set_ids",
    "jpeg",
    "merged_avcc",
    "reencode",
]
