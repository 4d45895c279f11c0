"""The clip's HLS rendition set: per rendition an init section, fMP4 segments cut at keyframes
and a VOD media playlist, plus the master playlist, all written with the packager's own box
writer and playlist functions so the clip plays exactly like a recording."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transcode.avc import codec_string_avc
from transcode.hls.fmp4 import codec_string_aac, fragment, init_segment
from transcode.hls.recording import MASTER_PLAYLIST, MEDIA_PLAYLIST, write_file_atomic
from transcode.hls.syntax import INIT_URI, segment_uri
from transcode.hls.vod import RenditionInfo, master_playlist, vod_playlist
from transcode.types import AudioTrackInfo, EncodedPacket, VideoTrackInfo


@dataclass(frozen=True, slots=True)
class ClipTrackSet:
    """One rendition of a finished cut, on the clip's timeline (decode times from 0)."""

    name: str
    video_info: VideoTrackInfo
    audio_info: AudioTrackInfo | None
    video: list[EncodedPacket]
    audio: list[EncodedPacket]


def _segments(video: Sequence[EncodedPacket], ticks: int) -> list[tuple[int, int]]:
    """[first, end) video sample ranges: a new segment at the first keyframe at least
    ``ticks`` after the current segment's start."""
    ranges: list[tuple[int, int]] = []
    first = 0
    for i, p in enumerate(video):
        if i > first and p.keyframe and p.dts - video[first].dts >= ticks:
            ranges.append((first, i))
            first = i
    if video:
        ranges.append((first, len(video)))
    return ranges


def write_rendition(directory: Path, clip: ClipTrackSet, segment_seconds: float) -> RenditionInfo:
    """``directory/{name}/`` with init.mp4, seg{N}.m4s and index.m3u8; returns the master
    playlist's entry for it."""
    folder = directory / clip.name
    folder.mkdir(parents=True, exist_ok=True)
    write_file_atomic(folder / INIT_URI, init_segment(clip.video_info, clip.audio_info))
    vts = clip.video_info.timescale
    ranges = _segments(clip.video, round(segment_seconds * vts))
    entries: list[tuple[str, float, bool]] = []
    audio_i = 0
    peak = 0.0
    total_bytes = 0
    for n, (first, end) in enumerate(ranges):
        video = clip.video[first:end]
        seg_end = video[-1].dts + video[-1].duration
        audio: list[EncodedPacket] = []
        last = n == len(ranges) - 1
        while audio_i < len(clip.audio):
            a = clip.audio[audio_i]
            assert clip.audio_info is not None
            if not last and a.dts * vts >= seg_end * clip.audio_info.timescale:
                break
            audio.append(a)
            audio_i += 1
        data = fragment(n + 1, video, audio)
        duration = (seg_end - video[0].dts) / vts
        write_file_atomic(folder / segment_uri(n), data)
        entries.append((segment_uri(n), duration, False))
        total_bytes += len(data)
        if duration > 0:
            peak = max(peak, len(data) * 8 / duration)
    seconds = sum(d for _, d, _ in entries)
    write_file_atomic(folder / MEDIA_PLAYLIST, vod_playlist(entries, segment_seconds).encode())
    codecs = codec_string_avc(clip.video_info.avcc)
    if clip.audio_info is not None:
        codecs += "," + codec_string_aac(clip.audio_info.asc)
    return RenditionInfo(
        uri=f"{clip.name}/{MEDIA_PLAYLIST}",
        bandwidth=max(1, math.ceil(peak)),
        average_bandwidth=max(1, math.ceil(total_bytes * 8 / seconds)) if seconds > 0 else 1,
        width=clip.video_info.width,
        height=clip.video_info.height,
        frame_rate=clip.video_info.frame_rate,
        codecs=codecs,
    )


def write_hls(directory: Path, clips: Sequence[ClipTrackSet], segment_seconds: float) -> Path:
    """Every rendition, then the master playlist; returns the master's path."""
    infos = [write_rendition(directory, clip, segment_seconds) for clip in clips]
    master = directory / MASTER_PLAYLIST
    write_file_atomic(master, master_playlist(infos).encode())
    return master
