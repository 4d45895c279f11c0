"""Frame-accurate clips from a recording without re-encoding it: the smart cut.

A clip ``[start, end)`` of a recording (its renditions' fMP4 segments, as the packager wrote
them under ``data_dir/streams/{id}/{rendition}/``, video and AAC audio muxed in each) is made
per rendition from three kinds of pieces (``transcode.cut.plan``): whole GOPs inside the range
are copied sample for sample; the partial GOPs at the edges are decoded from their IDR and only
their frames inside the range re-encoded (``transcode.cut.reencode``), as closed GOPs whose
parameter sets sit beside the source's in one avcC; audio is copied from the AAC frame nearest
the first video frame to the one nearest the end. The clip's timeline starts at 0.

Outputs, under ``out_dir``: ``clip.mp4`` (progressive, moov first) from the best rendition,
``hls/master.m3u8`` with one fMP4 media playlist per rendition, and ``thumb.jpg`` of the first
frame. Blocking (PyAV, files): the webapp runs it in a thread with bounded concurrency.
"""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av

from transcode.avc import parse_avcc, split_avcc
from transcode.cut.hls_out import ClipTrackSet, write_hls
from transcode.cut.mp4 import Mp4Track, avc1_entry, mp4a_entry, write_mp4
from transcode.cut.plan import Piece, plan_cut
from transcode.cut.reader import InitInfo, MediaError, Sample, read_init, read_segment
from transcode.cut.reencode import (
    Encoded,
    EncodeSettings,
    SourceVideo,
    decode_first,
    free_parameter_set_ids,
    jpeg,
    merged_avcc,
    reencode,
)
from transcode.types import AudioTrackInfo, EncodedPacket, Track, VideoTrackInfo

MP4_NAME = "clip.mp4"
THUMB_NAME = "thumb.jpg"
HLS_DIR = "hls"
NAL_IDR = 5


class CutError(ValueError):
    """The clip cannot be made from this media (bad range, too long, nothing there)."""


@dataclass(frozen=True)
class SourceSegment:
    path: Path  # one fMP4 media segment of one rendition, as the packager writes them
    start: float  # seconds on the source's timeline (0 = the recording's first segment)
    duration: float
    # The initialization section it plays after, when not the rendition's (a segment after a
    # restart of the source, EXT-X-MAP ``init{K}.mp4``). A clip may not span two of them.
    init: Path | None = None


@dataclass(frozen=True)
class SourceRendition:
    name: str  # "1080p", "720p", ... (as in the master playlist)
    init: Path  # its initialization section
    segments: tuple[SourceSegment, ...]


@dataclass(frozen=True)
class CutResult:
    mp4: Path  # out_dir/clip.mp4 (faststart), from the best rendition
    hls_master: Path  # out_dir/hls/master.m3u8, one media playlist per rendition (fMP4)
    thumbnail: Path  # out_dir/thumb.jpg, the clip's first frame
    duration: float  # seconds of video in the clip
    copied_video_frames: int  # over all renditions
    reencoded_video_frames: int  # over all renditions
    width: int = 0  # the MP4's picture (og:video:width / height)
    height: int = 0


@dataclass(frozen=True, slots=True)
class CutOptions:
    """Limits and knobs; the server builds one from its settings."""

    max_duration: float = 300.0  # longest clip, seconds
    segment_seconds: float = 2.0  # HLS segment target of the clip's playlists
    thumbnail_width: int = 640
    workers: int = 2  # edge pieces re-encoded at once (each also runs libx264's threads)
    encode: EncodeSettings = EncodeSettings()


# -- playlists ---------------------------------------------------------------------------------


def rendition_from_playlist(media_playlist: Path) -> SourceRendition:
    """A VOD media playlist on disk (``{rendition}/index.m3u8``) -> its segments with their
    start times (the sum of the EXTINF before them). The rendition is named for its folder."""
    folder = media_playlist.parent
    init: Path | None = None
    first_init: Path | None = None
    segments: list[SourceSegment] = []
    t = 0.0
    duration: float | None = None
    for raw in media_playlist.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#EXT-X-MAP:"):
            uri = line.split('URI="', 1)[1].split('"', 1)[0]
            init = _inside(folder, uri)
            first_init = first_init or init
        elif line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:") :].split(",", 1)[0])
        elif line and not line.startswith("#"):
            if duration is None or init is None:
                raise MediaError(f"{media_playlist}: segment {line!r} without EXTINF or EXT-X-MAP")
            own = None if init == first_init else init
            segments.append(SourceSegment(_inside(folder, line), t, duration, own))
            t += duration
            duration = None
    if first_init is None or not segments:
        raise MediaError(f"{media_playlist}: no segments")
    return SourceRendition(folder.name, first_init, tuple(segments))


def renditions_from_master(master_playlist: Path) -> list[SourceRendition]:
    """Every rendition a VOD master playlist lists, in its order (highest bandwidth first)."""
    folder = master_playlist.parent
    lines = [ln.strip() for ln in master_playlist.read_text().splitlines()]
    uris = [ln for ln in lines if ln and not ln.startswith("#")]
    return [rendition_from_playlist(_inside(folder, uri)) for uri in uris]


def _inside(folder: Path, uri: str) -> Path:
    path = (folder / uri).resolve()
    if "://" in uri or not path.is_relative_to(folder.resolve().parent):
        raise MediaError(f"playlist URI {uri!r} leaves the recording")
    return path


# -- one rendition -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Cut:
    tracks: ClipTrackSet
    copied: int
    reencoded: int
    first_frame: av.VideoFrame | None
    source: SourceVideo


def _is_idr(sample: Sample, length_size: int) -> bool:
    if not sample.sync:
        return False
    try:
        return any(n[0] & 0x1F == NAL_IDR for n in split_avcc(sample.data, length_size))
    except ValueError:
        return False


def _load(
    rendition: SourceRendition, start: float, end: float
) -> tuple[InitInfo, list[tuple[int, int, Sample]], list[tuple[int, Sample]]]:
    """The init and, on the recording's timeline, the video (pts, dts, sample) and audio
    (pts, sample) of the segments overlapping [start, end). The audio of the segments either
    side comes too: the AAC frame nearest a cut on a segment boundary may lie across it."""
    segments = rendition.segments
    chosen = [k for k, s in enumerate(segments) if s.start < end and s.start + s.duration > start]
    if not chosen:
        raise CutError(f"rendition {rendition.name}: no media between {start:.3f}s and {end:.3f}s")
    init = segments[chosen[0]].init or rendition.init
    if any((segments[k].init or rendition.init) != init for k in chosen):
        raise CutError("the clip spans a restart of the stream; clip either side of it")
    neighbours = [
        k
        for k in (chosen[0] - 1, chosen[-1] + 1)
        if 0 <= k < len(segments) and (segments[k].init or rendition.init) == init
    ]
    info = read_init(init)
    assert info.video is not None
    vid, vts = info.video.track_id, info.video.timescale
    video: list[tuple[int, int, Sample]] = []
    audio: list[tuple[int, Sample]] = []
    offset: int | None = None
    next_dts: int | None = None
    for k in sorted(chosen + neighbours):
        segment = segments[k]
        tracks = read_segment(segment.path)
        vs = tracks.get(vid, [])
        if not vs:
            continue
        if offset is None or vs[0].dts != next_dts:
            if k not in chosen and next_dts is not None:
                break  # the next segment is not continuous: nothing of it is near the end
            offset = round(segment.start * vts) - vs[0].pts
        next_dts = vs[-1].dts + vs[-1].duration
        if k in chosen:
            video += [(s.pts + offset, s.dts + offset, s) for s in vs]
        if info.audio is not None:
            ats = info.audio.timescale
            aoff = round(offset * ats / vts)
            audio += [(s.pts + aoff, s) for s in tracks.get(info.audio.track_id, [])]
    return info, video, audio


@dataclass(slots=True)
class _Pending:
    """A rendition whose edges are being re-encoded in the pool."""

    rendition: SourceRendition
    info: InitInfo
    video: list[tuple[int, int, Sample]]
    audio: list[tuple[int, Sample]]
    pieces: list[Piece]
    jobs: dict[int, Future[Encoded]]
    src: SourceVideo
    origin: int
    fd: int
    want_first: bool


def _start_rendition(
    rendition: SourceRendition,
    start: float,
    end: float,
    options: CutOptions,
    want_first: bool,
    pool: Executor,
) -> _Pending:
    """Read and plan one rendition, and hand its edge pieces to ``pool``."""
    info, video, audio = _load(rendition, start, end)
    v = info.video
    assert v is not None
    vts = v.timescale
    length_size = parse_avcc(v.config).length_size
    fd = round(statistics.median(s.duration for _, _, s in video)) or 1
    src = SourceVideo(v.config, v.width, v.height, vts, vts / fd)
    lo = round(start * vts) - fd // 2
    hi = round(end * vts) - fd // 2
    pts = [p for p, _, _ in video]
    try:
        pieces = plan_cut(pts, [_is_idr(s, length_size) for _, _, s in video], lo, hi)
    except ValueError as exc:
        raise CutError(f"rendition {rendition.name}: {exc}") from exc
    if not pieces:
        raise CutError(f"rendition {rendition.name}: no frame between {start:.3f}s and {end:.3f}s")
    origin = min(p for p in pts if lo <= p < hi)
    encode_pieces = [p for p in pieces if not p.copy]
    ids = free_parameter_set_ids(v.config, len(encode_pieces)) if encode_pieces else []
    jobs: dict[int, Future[Encoded]] = {}
    for n, piece in enumerate(encode_pieces):
        packets = [(p, d, s.data) for p, d, s in video[piece.first : piece.end]]
        first = want_first and piece is pieces[0]
        jobs[piece.first] = pool.submit(
            reencode, src, packets, lo, hi, origin, ids[n], options.encode, keep_first=first
        )
    return _Pending(rendition, info, video, audio, pieces, jobs, src, origin, fd, want_first)


def _finish_rendition(job: _Pending) -> _Cut:
    """Wait for the rendition's edges and put its clip together."""
    encoded = {first: future.result() for first, future in job.jobs.items()}
    v = job.info.video
    assert v is not None
    pieces, src = job.pieces, job.src
    out = _video_packets(job.video, pieces, encoded, job.origin, job.fd)
    copied = sum(p.frames for p in pieces if p.copy)
    reencoded = sum(len(e.samples) for e in encoded.values())
    avcc = merged_avcc(v.config if copied else None, list(encoded.values()))
    first_frame = encoded[pieces[0].first].first_frame if not pieces[0].copy else None
    if job.want_first and first_frame is None:
        first_frame = decode_first(src, job.video[pieces[0].first][2].data)
    video_end = max(p.pts + p.duration for p in out)
    audio_info, audio_out = _audio(job.info, job.audio, job.origin, src.timescale, video_end)
    vinfo = VideoTrackInfo(avcc, v.width, v.height, round(src.timescale / job.fd, 3), src.timescale)
    tracks = ClipTrackSet(job.rendition.name, vinfo, audio_info, out, audio_out)
    return _Cut(tracks, copied, reencoded, first_frame, src)


def _video_packets(
    video: list[tuple[int, int, Sample]],
    pieces: Sequence[Piece],
    encoded: dict[int, Encoded],
    origin: int,
    fd: int,
) -> list[EncodedPacket]:
    out: list[EncodedPacket] = []
    for piece in pieces:
        if piece.copy:
            for i in range(piece.first, piece.end):
                p, d, s = video[i]
                out.append(
                    EncodedPacket(
                        Track.VIDEO,
                        p - origin,
                        d - origin,
                        s.duration,
                        i == piece.first or s.sync,
                        s.data,
                    )
                )
        else:
            samples = encoded[piece.first].samples
            for k, (p, data, key) in enumerate(samples):
                nxt = samples[k + 1][0] if k + 1 < len(samples) else p + fd
                out.append(EncodedPacket(Track.VIDEO, p, p, nxt - p, key, data))
    low = min(packet.dts for packet in out)
    if low < 0:  # a copied IDR first with reordered frames after it: start decoding at 0
        for packet in out:
            packet.dts -= low
    for a, b in zip(out, out[1:], strict=False):
        if b.dts <= a.dts:
            raise CutError("decode times of the clip do not increase (irregular source timestamps)")
    return out


def _audio(
    info: InitInfo, audio: list[tuple[int, Sample]], origin: int, vts: int, video_end: int
) -> tuple[AudioTrackInfo | None, list[EncodedPacket]]:
    """AAC frames from the one nearest the first video frame to the one nearest the end,
    moved so the first starts at 0 (off by at most half a frame from the video)."""
    a = info.audio
    if a is None or not audio:
        return None, []
    ats = a.timescale
    frame = round(statistics.median(s.duration for _, s in audio)) or 1024
    lo = origin * ats / vts - frame / 2
    hi = (origin + video_end) * ats / vts - frame / 2
    chosen = [(p, s) for p, s in audio if lo <= p < hi]
    if not chosen:
        return None, []
    base = chosen[0][0]
    out = [
        EncodedPacket(Track.AUDIO, p - base, p - base, s.duration, True, s.data) for p, s in chosen
    ]
    return AudioTrackInfo(a.config, a.sample_rate or ats, a.channels or 2), out


# -- the clip ----------------------------------------------------------------------------------


def _write_mp4(path: Path, clip: ClipTrackSet) -> None:
    v = clip.video_info
    video = Mp4Track("video", v.timescale, avc1_entry(v.avcc, v.width, v.height), v.width, v.height)
    for p in clip.video:
        video.add(p.duration, p.pts - p.dts, p.keyframe, p.data)
    tracks = [video]
    if clip.audio_info is not None and clip.audio:
        ai = clip.audio_info
        audio = Mp4Track("audio", ai.timescale, mp4a_entry(ai.asc, ai.sample_rate, ai.channels))
        for p in clip.audio:
            audio.add(p.duration, 0, True, p.data)
        tracks.append(audio)
    write_mp4(path, tracks)


def cut_clip(
    renditions: Sequence[SourceRendition],
    start: float,
    end: float,
    out_dir: Path,
    options: CutOptions | None = None,
) -> CutResult:
    """Cut ``[start, end)`` (seconds on the recording's timeline) from every rendition into
    ``out_dir`` (created; an ``hls`` folder already there is replaced). ``CutError`` for a
    range that is empty, negative, longer than ``options.max_duration`` or outside the media;
    ``MediaError`` for files that are not a recording's."""
    options = options or CutOptions()
    if not renditions:
        raise CutError("no rendition to cut from")
    if not (0 <= start < end):
        raise CutError(f"bad range {start!r}..{end!r}: need 0 <= start < end")
    if end - start > options.max_duration + 1e-9:
        raise CutError(f"clips are at most {options.max_duration:g} s long")
    out_dir.mkdir(parents=True, exist_ok=True)
    hls_dir = out_dir / HLS_DIR
    if hls_dir.exists():
        shutil.rmtree(hls_dir)
    # Every edge of every rendition is one job: with two cores, the head and the tail of the
    # best rendition encode side by side (x264's own threads do poorly on a few frames).
    with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        pending = [
            _start_rendition(r, start, end, options, k == 0, pool)
            for k, r in enumerate(_best_first(renditions))
        ]
        cuts = [_finish_rendition(job) for job in pending]
    best = cuts[0]
    mp4 = out_dir / MP4_NAME
    _write_mp4(mp4, best.tracks)
    master = write_hls(hls_dir, [c.tracks for c in cuts], options.segment_seconds)
    thumb = out_dir / THUMB_NAME
    assert best.first_frame is not None
    tmp = thumb.with_name(thumb.name + ".tmp")
    tmp.write_bytes(jpeg(best.first_frame, options.thumbnail_width))
    tmp.replace(thumb)
    v = best.tracks.video
    duration = (max(p.pts + p.duration for p in v) - min(p.pts for p in v)) / best.source.timescale
    return CutResult(
        mp4,
        master,
        thumb,
        duration,
        sum(c.copied for c in cuts),
        sum(c.reencoded for c in cuts),
        best.tracks.video_info.width,
        best.tracks.video_info.height,
    )


def _best_first(renditions: Sequence[SourceRendition]) -> list[SourceRendition]:
    """Largest picture first (read from each init section); the MP4 comes from the first."""

    def area(r: SourceRendition) -> int:
        video = read_init(r.init).video
        return video.width * video.height if video else 0

    return sorted(renditions, key=area, reverse=True)
