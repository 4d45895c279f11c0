"""CMAF/fMP4 packaging and LL-HLS playlists for one stream's renditions.

Pure code (no I/O, no threads, no clock): the transcoder feeds ``RenditionPackager`` with
``EncodedPacket``s, hands the resulting parts/segments to storage and to a ``LivePlaylist``,
and the HTTP layer renders playlists and maps resource names back with
``parse_segment_name``. The one exception is ``recording``: the blocking file side of a
recording (segment files, their journal, VOD playlists, recovery after a crash), meant for a
writer thread, with ``scan`` to check what a crash left on disk.
"""

from transcode.avc import annexb_to_avcc, avcc_from_annexb, codec_string_avc, split_annexb
from transcode.hls.fmp4 import (
    AUDIO_TRACK_ID,
    VIDEO_TRACK_ID,
    codec_string_aac,
    fragment,
    init_segment,
)
from transcode.hls.packager import (
    PackagerCounters,
    PackagerEvent,
    PartReady,
    RenditionPackager,
    SegmentReady,
)
from transcode.hls.playlist import LivePlaylist, RenditionReport
from transcode.hls.recording import (
    RecordedSegment,
    RecordingWriter,
    Recovered,
    RenditionMeta,
    recover,
    write_file_atomic,
    write_vod,
)
from transcode.hls.syntax import (
    INIT_URI,
    ResourceName,
    init_uri,
    parse_segment_name,
    part_uri,
    segment_uri,
)
from transcode.hls.vod import RenditionInfo, master_playlist, vod_playlist

__all__ = [
    "init_uri",
    "AUDIO_TRACK_ID",
    "INIT_URI",
    "VIDEO_TRACK_ID",
    "LivePlaylist",
    "PackagerCounters",
    "PackagerEvent",
    "PartReady",
    "RecordedSegment",
    "Recovered",
    "RecordingWriter",
    "RenditionMeta",
    "RenditionInfo",
    "RenditionPackager",
    "RenditionReport",
    "ResourceName",
    "SegmentReady",
    "annexb_to_avcc",
    "avcc_from_annexb",
    "codec_string_aac",
    "codec_string_avc",
    "fragment",
    "init_segment",
    "master_playlist",
    "parse_segment_name",
    "part_uri",
    "recover",
    "segment_uri",
    "split_annexb",
    "vod_playlist",
    "write_file_atomic",
    "write_vod",
]
