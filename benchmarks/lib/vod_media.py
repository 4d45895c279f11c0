"""A recording on disk exactly as the server leaves one, made at test time: ffmpeg CLI encodes
a test pattern and a tone per rendition, and the product's own packager and VOD writer turn
the packets into ``{rendition}/init.mp4``, ``seg{N}.m4s``, ``index.m3u8`` and ``master.m3u8``.

Used by the clip tests and the clip benchmark, so both cut the files the product cuts.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av

from transcode.avc import avcc_from_annexb
from transcode.hls import (
    PackagerEvent,
    RecordedSegment,
    RecordingWriter,
    RenditionInfo,
    RenditionMeta,
    RenditionPackager,
    SegmentReady,
    master_playlist,
    write_vod,
)
from transcode.types import VIDEO_TIMESCALE, AudioTrackInfo, EncodedPacket, Track, VideoTrackInfo


@dataclass(frozen=True)
class Rung:
    name: str
    width: int
    height: int
    kbps: int = 1000


def encode_source(
    path: Path,
    rung: Rung,
    seconds: float,
    *,
    fps: int = 30,
    gop_seconds: float = 2.0,
    bframes: int = 0,
    preset: str = "ultrafast",
    audio: bool = True,
) -> Path:
    """An MP4 of ``testsrc2`` (+ a sine tone) in H.264/AAC with an IDR every ``gop_seconds``."""
    gop = round(gop_seconds * fps)
    cmd = [
        "ffmpeg",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={rung.width}x{rung.height}:rate={fps}",
    ]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    cmd += [
        "-t",
        f"{seconds}",
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-pix_fmt",
        "yuv420p",
        "-b:v",
        f"{rung.kbps}k",
        "-maxrate",
        f"{rung.kbps * 11 // 10}k",
        "-bufsize",
        f"{rung.kbps * 2}k",
        "-g",
        str(gop),
        "-keyint_min",
        str(gop),
        "-sc_threshold",
        "0",
        "-bf",
        str(bframes),
        # What OBS signals: BT.709, limited range; a clip must keep it on every frame.
        "-colorspace",
        "bt709",
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
        "-color_range",
        "tv",
    ]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "128k", "-ac", "2"]
    cmd += ["-f", "mp4", str(path)]
    subprocess.run(cmd, check=True)
    return path


def package(
    source: Path,
    directory: Path,
    name: str,
    *,
    segment_duration: float = 2.0,
    frame_rate: float = 30.0,
    init_uri: str = "init.mp4",
    first_segment: int = 0,
) -> tuple[list[RecordedSegment], RenditionInfo]:
    """Feed one source file's packets through the product's packager into ``directory/name``.
    ``first_segment > 0``: the source restarted, as the server records it (a new init
    section ``init_uri`` and a discontinuity)."""
    with av.open(str(source)) as container:
        vstream = container.streams.video[0]
        astream = container.streams.audio[0] if container.streams.audio else None
        video = VideoTrackInfo(
            avcc_from_annexb(bytes(vstream.codec_context.extradata or b"")),
            vstream.codec_context.width,
            vstream.codec_context.height,
            frame_rate,
        )
        audio = None
        if astream is not None:
            audio = AudioTrackInfo(
                bytes(astream.codec_context.extradata or b""),
                astream.codec_context.sample_rate,
                astream.codec_context.channels,
            )
        packager = RenditionPackager(
            name,
            video,
            audio,
            segment_duration=segment_duration,
            start_time=datetime(2026, 1, 1, tzinfo=UTC),
            first_segment=first_segment,
            discontinuity=first_segment > 0,
        )
        writer = RecordingWriter(directory, journal=False, fsync=False)
        writer.write_init(name, init_uri, packager.init, _meta(packager, video), first_segment)
        segments: list[RecordedSegment] = []
        sizes: list[int] = []
        next_boundary = 0.0
        frame_ticks = round(VIDEO_TIMESCALE / frame_rate)

        def take(events: list[PackagerEvent]) -> None:
            for event in events:
                if isinstance(event, SegmentReady):
                    seg = RecordedSegment(
                        event.segment, event.duration, event.discontinuity, init_uri
                    )
                    writer.write_segment(name, seg, event.data)
                    segments.append(seg)
                    sizes.append(len(event.data))

        for packet in container.demux():
            if packet.pts is None or packet.dts is None or packet.size == 0:
                continue
            tb = packet.time_base
            assert tb is not None
            if packet.stream.type == "video":
                pts = round(packet.pts * tb * VIDEO_TIMESCALE)
                dts = round(packet.dts * tb * VIDEO_TIMESCALE)
                key = packet.is_keyframe
                start = key and pts / VIDEO_TIMESCALE >= next_boundary - 1e-6
                if start:
                    next_boundary = pts / VIDEO_TIMESCALE + segment_duration
                take(
                    packager.add(
                        EncodedPacket(Track.VIDEO, pts, dts, frame_ticks, key, bytes(packet), start)
                    )
                )
            elif audio is not None:
                ts = Fraction(audio.sample_rate)
                pts = round(packet.pts * tb * ts)
                take(
                    packager.add(
                        EncodedPacket(
                            Track.AUDIO, pts, pts, packet.duration or 1024, True, bytes(packet)
                        )
                    )
                )
        take(packager.flush())
        writer.close()
    seconds = sum(s.duration for s in segments)
    info = RenditionInfo(
        f"{name}/index.m3u8",
        packager.peak_bandwidth or 1,
        round(sum(sizes) * 8 / seconds) if seconds else 1,
        video.width,
        video.height,
        frame_rate,
        packager.codecs,
    )
    return segments, info


def _meta(packager: RenditionPackager, video: VideoTrackInfo) -> RenditionMeta:
    return RenditionMeta(
        packager.codecs, video.width, video.height, video.frame_rate, video.timescale
    )


def make_vod(
    directory: Path,
    rungs: list[Rung],
    seconds: float,
    *,
    gop_seconds: float = 2.0,
    segment_duration: float = 2.0,
    bframes: int = 0,
    audio: bool = True,
    fps: int = 30,
) -> Path:
    """A whole recording under ``directory``; returns its master playlist."""
    directory.mkdir(parents=True, exist_ok=True)
    recorded = {}
    infos = []
    for rung in rungs:
        source = encode_source(
            directory / f"source-{rung.name}.mp4",
            rung,
            seconds,
            fps=fps,
            gop_seconds=gop_seconds,
            bframes=bframes,
            audio=audio,
        )
        segments, info = package(
            source, directory, rung.name, segment_duration=segment_duration, frame_rate=fps
        )
        recorded[rung.name] = segments
        infos.append(info)
    write_vod(directory, recorded, master_playlist(infos), segment_duration)
    return directory / "master.m3u8"


def make_restarted_vod(directory: Path, rung: Rung, first: float, second: float) -> Path:
    """One rendition whose source stopped after ``first`` seconds and came back for ``second``
    (another encoder's parameter sets, timestamps from 0 again): ``init.mp4`` then
    ``init1.mp4`` behind a discontinuity, as the server records a reconnecting publisher."""
    directory.mkdir(parents=True, exist_ok=True)
    a = encode_source(directory / "source-a.mp4", rung, first)
    b = encode_source(directory / "source-b.mp4", rung, second, preset="superfast")
    seg_a, info = package(a, directory, rung.name)
    seg_b, _ = package(b, directory, rung.name, init_uri="init1.mp4", first_segment=len(seg_a))
    write_vod(directory, {rung.name: seg_a + seg_b}, master_playlist([info]), 2.0)
    return directory / "master.m3u8"
