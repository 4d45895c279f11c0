"""A progressive (non-fragmented) MP4 with the ``moov`` first ("faststart"): what a browser
or a chat app's unfurler downloads and plays from the first bytes.

The clip is small (bounded duration), so it is built in memory: sample tables, then the media
in chunks of about half a second per track, interleaved in time order. Decode times start at 0
on both tracks; B-frame reordering keeps composition offsets non-negative by delaying the
video's composition timeline, undone by an edit list (as libx264/ffmpeg files do).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transcode.hls.fmp4 import box, full_box

MOVIE_TIMESCALE = 1000
CHUNK_SECONDS = 0.5
_UNITY_MATRIX = struct.pack(">9i", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
_LANGUAGE_UND = 0x55C4


@dataclass(slots=True)
class Mp4Track:
    """One track's samples in decode order (durations and composition offsets in
    ``timescale`` ticks, offsets possibly negative: the writer shifts them)."""

    kind: str  # "video" or "audio"
    timescale: int
    sample_entry: bytes  # the stsd entry (avc1 or mp4a box)
    width: int = 0
    height: int = 0
    durations: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    sync: list[bool] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)

    def add(self, duration: int, offset: int, sync: bool, data: bytes) -> None:
        self.durations.append(duration)
        self.offsets.append(offset)
        self.sync.append(sync)
        self.data.append(data)


def avc1_entry(avcc: bytes, width: int, height: int) -> bytes:
    return box(
        b"avc1",
        bytes(6),
        struct.pack(">H", 1),
        bytes(16),
        struct.pack(">HH", width, height),
        struct.pack(">II", 0x00480000, 0x00480000),
        bytes(4),
        struct.pack(">H", 1),
        bytes(32),
        struct.pack(">Hh", 0x0018, -1),
        box(b"avcC", avcc),
    )


def _descriptor(tag: int, payload: bytes) -> bytes:
    n = len(payload)
    size = [n & 0x7F]
    n >>= 7
    while n:
        size.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes([tag, *reversed(size)]) + payload


def mp4a_entry(asc: bytes, sample_rate: int, channels: int) -> bytes:
    config = _descriptor(
        0x04,
        bytes([0x40, (0x05 << 2) | 0x01])
        + bytes(3)
        + struct.pack(">II", 0, 0)
        + _descriptor(0x05, asc),
    )
    es = _descriptor(0x03, struct.pack(">HB", 0, 0) + config + _descriptor(0x06, b"\x02"))
    rate = sample_rate if sample_rate <= 0xFFFF else 0
    return box(
        b"mp4a",
        bytes(6),
        struct.pack(">H", 1),
        bytes(8),
        struct.pack(">HHHH", channels, 16, 0, 0),
        struct.pack(">I", rate << 16),
        full_box(b"esds", 0, 0, es),
    )


def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in values:
        if out and out[-1][1] == v:
            out[-1] = (out[-1][0] + 1, v)
        else:
            out.append((1, v))
    return out


def _chunks(track: Mp4Track) -> list[tuple[int, int, int]]:
    """(decode time of the first sample, first sample, end) of each chunk."""
    limit = max(1, round(CHUNK_SECONDS * track.timescale))
    chunks: list[tuple[int, int, int]] = []
    t = start_t = start = 0
    for i, d in enumerate(track.durations):
        if i > start and t - start_t >= limit:
            chunks.append((start_t, start, i))
            start, start_t = i, t
        t += d
    if track.durations:
        chunks.append((start_t, start, len(track.durations)))
    return chunks


def _stbl(
    track: Mp4Track, chunks: list[tuple[int, int, int]], offsets: list[int], wide: bool
) -> bytes:
    shift = max(0, *(-o for o in track.offsets)) if track.offsets else 0
    parts = [
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), track.sample_entry),
        full_box(
            b"stts",
            0,
            0,
            struct.pack(">I", len(r := _runs(track.durations))),
            b"".join(struct.pack(">II", n, v) for n, v in r),
        ),
    ]
    shifted = [o + shift for o in track.offsets]
    if any(shifted):
        r = _runs(shifted)
        parts.append(
            full_box(
                b"ctts",
                0,
                0,
                struct.pack(">I", len(r)),
                b"".join(struct.pack(">II", n, v) for n, v in r),
            )
        )
    if not all(track.sync):
        keys = [i + 1 for i, s in enumerate(track.sync) if s]
        parts.append(full_box(b"stss", 0, 0, struct.pack(f">I{len(keys)}I", len(keys), *keys)))
    per_chunk = _runs([e - s for _, s, e in chunks])
    stsc_rows = []
    chunk_no = 1
    for n, v in per_chunk:
        stsc_rows.append(struct.pack(">III", chunk_no, v, 1))
        chunk_no += n
    parts.append(full_box(b"stsc", 0, 0, struct.pack(">I", len(stsc_rows)), *stsc_rows))
    sizes = [len(d) for d in track.data]
    parts.append(full_box(b"stsz", 0, 0, struct.pack(f">II{len(sizes)}I", 0, len(sizes), *sizes)))
    if wide:
        parts.append(
            full_box(b"co64", 0, 0, struct.pack(f">I{len(offsets)}Q", len(offsets), *offsets))
        )
    else:
        parts.append(
            full_box(b"stco", 0, 0, struct.pack(f">I{len(offsets)}I", len(offsets), *offsets))
        )
    return box(b"stbl", *parts)


def _trak(track: Mp4Track, track_id: int, stbl: bytes) -> bytes:
    duration = sum(track.durations)
    movie_duration = round(duration * MOVIE_TIMESCALE / track.timescale)
    video = track.kind == "video"
    tkhd = full_box(
        b"tkhd",
        0,
        0x000003,
        struct.pack(">IIIII", 0, 0, track_id, 0, movie_duration),
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0 if video else 0x0100, 0),
        _UNITY_MATRIX,
        struct.pack(">II", track.width << 16, track.height << 16),
    )
    shift = max(0, *(-o for o in track.offsets)) if track.offsets else 0
    edts = b""
    if shift:
        elst = full_box(b"elst", 0, 0, struct.pack(">IIiI", 1, movie_duration, shift, 0x00010000))
        edts = box(b"edts", elst)
    mdhd = full_box(
        b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, track.timescale, duration, _LANGUAGE_UND, 0)
    )
    handler = b"vide" if video else b"soun"
    name = b"VideoHandler\x00" if video else b"SoundHandler\x00"
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s", 0, handler), bytes(12), name)
    header = full_box(b"vmhd", 0, 1, bytes(8)) if video else full_box(b"smhd", 0, 0, bytes(4))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    minf = box(b"minf", header, dinf, stbl)
    return box(b"trak", tkhd, edts, box(b"mdia", mdhd, hdlr, minf))


def write_mp4(path: Path, tracks: Sequence[Mp4Track]) -> None:
    """ftyp, moov (every table), then one mdat; tracks numbered from 1 in the order given."""
    ftyp = box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isom", b"iso2", b"avc1", b"mp41")
    chunked = [(k, _chunks(t)) for k, t in enumerate(tracks)]
    order = sorted(
        ((start / tracks[k].timescale, k, s, e) for k, chunks in chunked for start, s, e in chunks)
    )
    media_size = sum(len(d) for t in tracks for d in t.data)

    def moov(offsets: dict[tuple[int, int], int], wide: bool) -> bytes:
        traks = []
        for k, chunks in chunked:
            offs = [offsets.get((k, s), 0) for _, s, _ in chunks]
            traks.append(_trak(tracks[k], k + 1, _stbl(tracks[k], chunks, offs, wide)))
        duration = max(
            (round(sum(t.durations) * MOVIE_TIMESCALE / t.timescale) for t in tracks), default=0
        )
        mvhd = full_box(
            b"mvhd",
            0,
            0,
            struct.pack(">IIII", 0, 0, MOVIE_TIMESCALE, duration),
            struct.pack(">iH", 0x00010000, 0x0100),
            bytes(10),
            _UNITY_MATRIX,
            bytes(24),
            struct.pack(">I", len(tracks) + 1),
        )
        return box(b"moov", mvhd, *traks)

    wide = False
    size = len(moov({}, wide))
    if len(ftyp) + size + 16 + media_size > 0xFFFFFFFF:
        wide = True
        size = len(moov({}, wide))
    mdat_header = struct.pack(">I4sQ", 1, b"mdat", 16 + media_size)
    pos = len(ftyp) + size + len(mdat_header)
    offsets: dict[tuple[int, int], int] = {}
    for _, k, s, e in order:
        offsets[(k, s)] = pos
        pos += sum(len(d) for d in tracks[k].data[s:e])
    header = ftyp + moov(offsets, wide) + mdat_header
    assert len(header) == len(ftyp) + size + 16
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header)
        for _, k, s, e in order:
            f.writelines(tracks[k].data[s:e])
    tmp.replace(path)
