"""One faststart MP4 from a recorded fMP4 rendition: no re-encode, no buffering of the file.

A recording is an initialization section (ftyp + moov describing the tracks, no samples) and
media segments made of moof + mdat pairs, where every moof's truns give each sample's duration,
size, flags and composition offset. That is everything a flat MP4's sample tables hold, so the
whole ``moov`` can be computed before one media byte is read: ``plan_mp4`` reads the init
sections and the moofs only (a few KiB per segment), builds ftyp + moov + the mdat header, and
lists the byte ranges of the segment files that make up the mdat, in order. ``Mp4Plan.read``
then yields the file as it goes, reading sample data straight from the segments: the output is
"faststart" (moov before mdat) and streams with a known length, and any byte range of it can
be produced on its own (HTTP Range).

Each trun run becomes one chunk of the output. Sample entries (avcC, hvcC, esds...) are copied
from the init's stsd; a recording whose init changes (a discontinuity with a new codec
configuration) gets one sample entry per distinct init, as long as the tracks stay the same.
Decode times are concatenated (a discontinuity plays on, as an HLS player does); an edit list
keeps the tracks' relative start and hides any leading composition offset.

Blocking file I/O: run it in a worker thread. ``RemuxError`` for anything that is not a
recording this can copy faithfully.
"""

from transcode.remux.fragments import RemuxError
from transcode.remux.plan import (
    DEFAULT_READ_BYTES,
    Mp4Plan,
    Mp4Reader,
    plan_mp4,
    rendition_groups,
    rendition_names,
)

__all__ = [
    "DEFAULT_READ_BYTES",
    "Mp4Plan",
    "Mp4Reader",
    "RemuxError",
    "plan_mp4",
    "rendition_groups",
    "rendition_names",
]
