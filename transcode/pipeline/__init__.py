"""The live transcoder: decode once, scale once per rung, encode each rung in its own thread.

One reader thread takes packets from the stream's subscription, decodes video once (threaded
PyAV decoder), decides segment boundaries once, scales each frame once per transcoded rung
(largest first, each from the next larger rung's picture) and hands (frame, boundary) to that
rung's bounded queue. Scaling stays in the reader thread on purpose: two threads calling
``reformat()`` on one ``VideoFrame`` deadlock in PyAV, and every frame is scaled before any
encoder thread can see it.

Every rendition has its own worker thread (libx264 for transcoded rungs; the copy rung just
forwards the source's AVCC packets) that also delivers the shared audio to the sink, so a slow
sink or a slow encoder only ever stalls its own rendition. A full rung queue drops frames up
to the next segment boundary and counts them; the reader never waits on a rung, just as ingest
never waits on the reader (the subscription drops to the next keyframe instead). Only in
``lossless`` mode (files, benchmarks) does the reader wait for the slowest rung.

Because every rung forces its keyframes on the frames the reader marked as boundaries, segment
starts have identical timestamps in every rendition. With a copy (passthrough) rung, boundaries
can only be source keyframes, so then they are the first source keyframe at/after each
multiple of the segment duration.

The modules, bottom up: ``contracts`` (the source and sink protocols), ``timebase``, ``rate``,
``boundaries`` (pure: where segments start), ``queues`` (the bounded hand-off to a rung),
``rendition`` (a rung's worker: encode or copy, deliver), ``audio`` (AAC copy or re-encode),
``thumbnails``, ``reader`` (decode, plan, cut, scale, route) and ``transcoder``
(``LiveTranscoder``: the threads and their lifecycle). The options are ``transcode.options``,
outside this package because the settings loader imports them without PyAV.
"""

from ..options import OptionError, TranscodeOptions
from .contracts import PacketSource, TranscodeSink
from .transcoder import LiveTranscoder

__all__ = ["LiveTranscoder", "OptionError", "PacketSource", "TranscodeOptions", "TranscodeSink"]
