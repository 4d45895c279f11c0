"""From a live stream to a ladder on the live edge and on disk, and the stream row's lifecycle.

For every stream the registry starts, a ``Broadcast``: a ``LiveTranscoder`` (PyAV, its own
threads) reads the stream through a bounded subscription and hands encoded packets to
``HlsSink``, which packages them into parts and segments in those same worker threads (box
building is CPU work that should not sit on the event loop) and posts the results to the loop.
On the loop, the ``LiveEdge`` that the HTTP layer serves is updated and segments are written
to disk by one writer task per stream, in order, off the loop, each as soon as it closes, with
a journal line (``transcode.hls.recording``) once it is in place.

When the publisher goes, the row is marked ENDING at once; the transcoder drains what was
received, the packagers flush, and the row becomes ARCHIVED with a VOD playlist (recording on)
or OFFLINE with its files removed after the live window (recording off).

A stream that a crash left open is found at the next start (``Broadcasts.recover_orphans``)
and closed from what reached the disk: ARCHIVED with the VOD its journal and whole segments
make, OFFLINE if there are none.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import threading
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mediaserver import memory
from mediaserver.live import LiveRegistry, LiveStream, TranscodeProbe
from mediaserver.metrics import Metrics
from mediaserver.objects import RecordingUploads, Uploader, fetch_recording
from mediaserver.restream.rungs import RungTap
from mediaserver.settings import Settings, SettingsError, parse_ladder, transcode_options
from storage import Database, queries
from storage.errors import out_of_room
from storage.models import Channel, StreamStatus
from storage.objects import ObjectStoreError
from storage.videos import measure_recording
from transcode.edge import EdgeRegistry, LiveEdge, RenditionEdge
from transcode.hls import (
    LivePlaylist,
    PartReady,
    RecordedSegment,
    RecordingWriter,
    RenditionMeta,
    RenditionPackager,
    SegmentReady,
    init_uri,
    recover,
    segment_uri,
    write_file_atomic,
    write_vod,
)
from transcode.hls.recording import JOURNAL
from transcode.ladder import Rung
from transcode.pipeline import LiveTranscoder
from transcode.sprites import PREVIEW_DIR, PreviewOptions, build_previews
from transcode.types import AudioTrackInfo, EncodedPacket, VideoTrackInfo

log = logging.getLogger(__name__)

# How long the transcoder may take to drain and flush after the publisher left.
FINISH_TIMEOUT = 120.0


def _on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[Path], Any], path: Path) -> None:
    """From the writer thread: run ``fn(path)`` on the loop (once the file is in place)."""
    loop.call_soon_threadsafe(fn, path)


class HlsSink:
    """Receives the transcoder's output in its worker threads; packages; posts to the loop."""

    def __init__(self, broadcast: Broadcast, loop: asyncio.AbstractEventLoop) -> None:
        self.broadcast = broadcast
        self.loop = loop
        self._packagers: dict[str, RenditionPackager] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def on_track_info(
        self, rendition: str, video: VideoTrackInfo, audio: AudioTrackInfo | None
    ) -> None:
        """A rendition's tracks, first or again (the source changed mid-stream).

        A re-announced rendition flushes its packager and continues the segment numbers with a
        discontinuity, so playlists and files never reuse a number.
        """
        hls = self.broadcast.settings.hls
        self.broadcast.rung_tap.track_info(rendition, video, audio)  # relays of this rung
        with self._guard:
            previous = self._packagers.get(rendition)
            lock = self._locks.setdefault(rendition, threading.Lock())
        with lock:
            events: list[PartReady | SegmentReady] = []
            if previous is not None:
                events = previous.flush()
                first, discontinuity = previous.next_segment, True
            else:  # a resumed edge continues its numbering after a discontinuity
                first = self.broadcast.first_segments.get(rendition, self.broadcast.first_segment)
                discontinuity = self.broadcast.resumed
            packager = RenditionPackager(
                rendition,
                video,
                audio,
                segment_duration=hls.segment_duration,
                part_duration=hls.part_duration,
                start_time=self.broadcast.stream.started_at,
                first_segment=first,
                discontinuity=discontinuity,
            )
            self._packagers[rendition] = packager
        if previous is not None and events:
            self.loop.call_soon_threadsafe(
                self.broadcast.on_events,
                rendition,
                events,
                (previous.peak_bandwidth, previous.average_bandwidth),
            )
        self.loop.call_soon_threadsafe(self.broadcast.add_rendition, rendition, packager, video)

    def on_packet(self, rendition: str, packet: EncodedPacket) -> None:
        self.broadcast.rung_tap.packet(rendition, packet)
        packager = self._packagers.get(rendition)
        if packager is None:
            return
        with self._locks[rendition]:
            events = packager.add(packet)
            stats = (packager.peak_bandwidth, packager.average_bandwidth) if events else None
        if events:
            self.loop.call_soon_threadsafe(self.broadcast.on_events, rendition, events, stats)

    def on_thumbnail(self, jpeg: bytes) -> None:
        self.loop.call_soon_threadsafe(self.broadcast.save_thumbnail, jpeg)

    def on_end(self) -> None:
        with self._guard:
            items = list(self._packagers.items())
        for rendition, packager in items:
            with self._locks[rendition]:
                events = packager.flush()
                stats = (packager.peak_bandwidth, packager.average_bandwidth)
            if events:
                self.loop.call_soon_threadsafe(self.broadcast.on_events, rendition, events, stats)
        self.loop.call_soon_threadsafe(self.broadcast.transcoder_done)
        self.broadcast.rung_tap.end()


class Broadcast:
    """One live stream's transcoding, live edge, files and row lifecycle."""

    def __init__(
        self, manager: Broadcasts, stream: LiveStream, prior: Broadcast | None = None
    ) -> None:
        self.manager = manager
        self.settings: Settings = manager.settings
        self.stream = stream
        self.slug = stream.slug
        self.dir = manager.settings.data_dir / "streams" / str(stream.stream_id)
        # Subscribe now, synchronously: a packet missed here is a GOP missing from the VOD.
        self.subscription = stream.subscribe("transcoder")
        # The channel's previous broadcast, if it is still flushing: wait for it to let go of
        # the live edge before deciding whether to continue it.
        self.prior = prior
        self.released = asyncio.Event()
        self.edge = LiveEdge(stream.slug, stream.stream_id, manager.settings.hls.live_segments)
        self.resumed = False
        self.first_segments: dict[str, int] = {}
        self.first_segment = 0
        self.recording = manager.settings.recording.enabled
        self.publisher_gone = asyncio.Event()
        self._done = asyncio.Event()
        self.files = RecordingWriter(
            self.dir, journal=self.recording, fsync=manager.settings.recording.fsync
        )
        self._writes: asyncio.Queue[Callable[[], None] | None] = asyncio.Queue()
        # S3 mode (issue 15): each recorded file goes to the bucket once it is on disk.
        self.uploads = (
            RecordingUploads(manager.uploader, self.dir)
            if self.recording and manager.uploader is not None and manager.uploader.active
            else None
        )
        self._journal_due = 0  # segments since the journal was last sent to the bucket
        self._writer = asyncio.get_running_loop().create_task(self._write_files())
        self.transcoder: LiveTranscoder | None = None
        # Every finished segment per rendition, for the VOD playlists.
        self.recorded: dict[str, list[RecordedSegment]] = {}
        self.thumbnail_saved = False
        self.last_thumbnail: bytes | None = None  # kept as the past broadcast's thumbnail
        # Each rendition's output for the restream relays that send a rung (issue 14).
        self.rung_tap = RungTap(asyncio.get_running_loop())

    def _take_edge(self) -> None:
        """Continue the channel's edge if its last publisher left within the reconnect grace:
        same media sequence numbers, a discontinuity and a new EXT-X-MAP, so players keep
        playing through an encoder reconnect. Otherwise start a new edge."""
        resume = self.manager.claim_retiring(self.slug)
        if resume is not None:
            log.info("%s: publisher is back; continuing the live playlists", self.slug)
            self.edge, self.resumed = resume, True
            resume.stream_id = self.stream.stream_id
            resume.ended = resume.retiring = False
            for rendition in resume:
                rendition.playlist.resume()
        self.first_segments = {r.name: r.playlist.next_msn for r in self.edge}
        self.first_segment = max(self.first_segments.values(), default=0)
        self.manager.edges.put(self.edge)

    # -- called on the loop by the sink ---------------------------------------------------
    def add_rendition(self, name: str, packager: RenditionPackager, video: VideoTrackInfo) -> None:
        hls = self.settings.hls
        existing = self.edge.renditions.get(name)
        if existing is not None:
            # Same playlist, continued after a discontinuity with a new initialization section.
            init_name = existing.new_init(packager.init)
            existing.codecs = packager.codecs
            existing.width, existing.height = video.width, video.height
            existing.frame_rate = video.frame_rate
        else:
            playlist = LivePlaylist(
                window_segments=hls.live_segments,
                segment_duration=hls.segment_duration,
                part_target=packager.part_target,
                first_segment=self.first_segments.get(name, self.first_segment),
            )
            # Until segments are measured, announce what the rung is meant to use (a player
            # joining in the first seconds must not see every variant at 1 bit/s).
            nominal = self._nominal_bandwidth(name)
            self.edge.renditions[name] = RenditionEdge(
                name=name,
                init=packager.init,
                codecs=packager.codecs,
                width=video.width,
                height=video.height,
                frame_rate=video.frame_rate,
                playlist=playlist,
                bandwidth=nominal,
                average_bandwidth=nominal,
                dvr_seconds=self.settings.clips.dvr_seconds,
            )
            init_name = init_uri(0)
        self.recorded.setdefault(name, [])
        if self.transcoder is not None and self.transcoder.plans is not None:
            self.edge.expected = frozenset(p.name for p in self.transcoder.plans)
        meta = RenditionMeta(
            codecs=packager.codecs,
            width=video.width,
            height=video.height,
            frame_rate=video.frame_rate,
            timescale=video.timescale,
        )
        self._writes.put_nowait(
            functools.partial(
                self.files.write_init, name, init_name, packager.init, meta, packager.first_segment
            )
        )
        self._upload_written(self.dir / name / init_name)
        self._upload_written(self.dir / JOURNAL)  # what a recovery from the bucket reads
        self.edge.notify()

    def _nominal_bandwidth(self, name: str) -> int:
        plan = next(
            (p for p in (self.transcoder.plans if self.transcoder else []) or [] if p.name == name),
            None,
        )
        if plan is None:
            return 0
        return int((plan.maxrate_kbps + self.settings.transcode.audio_kbps) * 1000)

    def on_events(
        self, name: str, events: list[PartReady | SegmentReady], bandwidth: tuple[int, int] | None
    ) -> None:
        rendition = self.edge.renditions.get(name)
        if rendition is None:
            return
        if bandwidth is not None and bandwidth[0] > 0:
            rendition.bandwidth, rendition.average_bandwidth = (int(b) for b in bandwidth)
        for event in events:
            if isinstance(event, PartReady):
                rendition.add_part(event)
                continue
            rendition.add_segment(event, self.edge.window)
            segment = RecordedSegment(
                event.segment, event.duration, event.discontinuity, rendition.playlist.init_uri
            )
            self.recorded[name].append(segment)
            self.manager.metrics.hls_segments.labels(self.slug, name).inc()
            self._writes.put_nowait(
                functools.partial(self.files.write_segment, name, segment, event.data)
            )
            self._upload_written(self.dir / name / segment_uri(event.segment))
            self._journal_due += 1
            if self._journal_due >= self.settings.objects.journal_segments:
                self._journal_due = 0
                self._upload_written(self.dir / JOURNAL)
            # Files stay while in the window or the clips' DVR buffer, whichever is longer.
            expired = rendition.take_expired()
            if not self.recording:
                for msn in expired:
                    self._writes.put_nowait(functools.partial(self.files.delete_segment, name, msn))
        self.edge.notify()

    def _upload_written(self, path: Path) -> None:
        """Queue the upload of a file once the writer has put it in place (S3 mode)."""
        if self.uploads is not None:
            self._writes.put_nowait(functools.partial(self.uploads.file_threadsafe, path))

    def save_thumbnail(self, jpeg: bytes) -> None:
        path = self.manager.thumbnail_path(self.slug)
        self._writes.put_nowait(functools.partial(write_file_atomic, path, jpeg))
        uploader = self.manager.uploader
        if uploader is not None and uploader.active:  # S3 mode: web nodes show it from there
            loop = asyncio.get_running_loop()
            self._writes.put_nowait(functools.partial(_on_loop, loop, uploader.upload, path))
        self.thumbnail_saved = True
        self.last_thumbnail = jpeg

    def transcoder_done(self) -> None:
        self._done.set()

    # -- files ----------------------------------------------------------------------------
    async def _write_files(self) -> None:
        """One writer per stream keeps file operations in order and off the event loop: the
        journal's order is the order things reached the disk, which recovery relies on."""
        no_room = 0  # writes refused in the current run of a full disk
        try:
            while (operation := await self._writes.get()) is not None:
                try:
                    await asyncio.to_thread(operation)
                except Exception as exc:
                    if not out_of_room(exc):
                        log.exception(
                            "%s: could not write the stream's files (%s)",
                            self.slug,
                            getattr(operation, "func", operation),
                        )
                    elif not no_room:  # a full disk is one line, not a traceback a segment
                        log.error(
                            "%s: the disk is full; the recording misses media until "
                            "there is room (%s)",
                            self.slug,
                            exc,
                        )
                    no_room += out_of_room(exc)
                else:
                    if no_room:
                        log.warning(
                            "%s: writing again after %d refused write(s) for want of room",
                            self.slug,
                            no_room,
                        )
                    no_room = 0
        finally:
            await asyncio.to_thread(self.files.close)

    async def _drain_writes(self) -> None:
        self._writes.put_nowait(None)
        await self._writer

    def _write_vod(self) -> float:
        """VOD playlists for every rendition and a master; returns the VOD duration."""
        recorded = {name for name, segments in self.recorded.items() if segments}
        return write_vod(
            self.dir,
            self.recorded,
            self.edge.master(recorded),
            self.settings.hls.segment_duration,
            fsync=self.settings.recording.fsync,
        )

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        m = self.manager
        try:
            ladder = await m.ladder_for(self.stream.channel_id)
            if self.prior is not None:
                await self.prior.released.wait()
                self.prior = None
            self._take_edge()
            self.transcoder = LiveTranscoder(
                self.subscription,
                ladder,
                HlsSink(self, asyncio.get_running_loop()),
                m.transcode_options,
            )
            self.transcoder.start()
            transcoder = self.transcoder
            # The dashboard reads per-rung speed and drops through the live stream.
            self.stream.transcode_probe = TranscodeProbe(transcoder.stats, lambda: transcoder.plans)
            poller = asyncio.get_running_loop().create_task(self._poll_stats())
            await self.publisher_gone.wait()
            await m.mark(self.stream, StreamStatus.ENDING)
            try:
                async with asyncio.timeout(FINISH_TIMEOUT):
                    await self._done.wait()
            except TimeoutError:
                log.error("%s: transcoder did not finish in %.0f s", self.slug, FINISH_TIMEOUT)
                self.transcoder.stop()
            poller.cancel()
            self._publish_stats()
            await asyncio.to_thread(self.transcoder.join, 10)
        except Exception:
            log.exception("%s: broadcast failed", self.slug)
            await self.publisher_gone.wait()
        finally:
            self.stream.unsubscribe(self.subscription)
            self.rung_tap.close()
            m.retire(self.edge)
            self.released.set()
            await self._drain_writes()
        await self._finish()

    async def _finish(self) -> None:
        m = self.manager
        has_media = any(self.recorded.values())
        extra: dict[str, Any] = {"hls_path": f"streams/{self.stream.stream_id}/master.m3u8"}
        if self.thumbnail_saved:
            thumbnail = m.thumbnail_path(self.slug).relative_to(self.settings.data_dir)
            extra["thumbnail_path"] = str(thumbnail)
        if self.last_thumbnail is not None:
            # The channel's live thumbnail is overwritten by its next stream: the channel
            # page's past broadcasts show this copy of the stream's last frame instead.
            own = m.stream_thumbnail_path(self.stream.stream_id)
            try:
                await asyncio.to_thread(write_file_atomic, own, self.last_thumbnail)
                extra["thumbnail_path"] = str(own.relative_to(self.settings.data_dir))
            except OSError as exc:
                log.warning("%s: stream thumbnail not kept: %s", self.slug, exc)
        if self.recording and has_media:
            duration = await asyncio.to_thread(self._write_vod)
            # Its size on disk, for the video library (storage used, retention by size).
            size = await asyncio.to_thread(measure_recording, self.dir)
            await m.mark(
                self.stream,
                StreamStatus.ARCHIVED,
                vod_path=extra["hls_path"],
                vod_duration_seconds=round(duration, 3),
                vod_available=True,
                size_bytes=size,
                **extra,
            )
            log.info(
                "%s: stream %d archived, VOD %.1f s", self.slug, self.stream.stream_id, duration
            )
            if self.uploads is not None:  # the rest, then the playlists naming it
                m.track(asyncio.ensure_future(self._publish(extra.get("thumbnail_path"))))
            m.make_previews(self.stream.stream_id, self.dir)
        else:
            await m.mark(self.stream, StreamStatus.OFFLINE, **extra)
        linger = self.settings.hls.reconnect_grace + (
            self.settings.hls.live_segments * self.settings.hls.segment_duration
        )
        if not self.recording:
            asyncio.get_running_loop().call_later(
                linger,
                lambda: m.track(
                    asyncio.ensure_future(asyncio.to_thread(shutil.rmtree, self.dir, True))
                ),
            )
        if self.settings.memory.trim_after_stream:
            # The transcoder's threads are gone; what they freed goes back to the system.
            await asyncio.to_thread(memory.release_free_memory)

    async def _publish(self, thumbnail: str | None) -> None:
        """S3 mode: the recording's thumbnail and whatever of it is not in the bucket yet,
        then its playlists (a retried upload may take a while: the row is ARCHIVED already
        and this node serves the VOD from its disk meanwhile)."""
        assert self.uploads is not None
        uploader = self.uploads.uploader
        if thumbnail:
            await uploader.upload(self.settings.data_dir / thumbnail)
        await self.uploads.publish(f"{self.slug}: stream {self.stream.stream_id}")

    async def _poll_stats(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._publish_stats()

    def _publish_stats(self) -> None:
        if self.transcoder is None:
            return
        m = self.manager.metrics
        stats = self.transcoder.stats()
        m.transcode_speed.labels(self.slug).set(stats.get("speed", 0.0))
        for name, r in stats.get("renditions", {}).items():
            m.transcode_fps.labels(self.slug, name).set(r.get("fps", 0.0))
            counter = m.transcode_dropped.labels(self.slug, name)
            seen = self.manager.dropped_seen.get((self.slug, name, self.stream.stream_id), 0)
            dropped = int(r.get("dropped_frames", 0))
            if dropped > seen:
                counter.inc(dropped - seen)
                self.manager.dropped_seen[(self.slug, name, self.stream.stream_id)] = dropped


class Broadcasts:
    """Attaches a ``Broadcast`` to every stream the registry starts; owns the row lifecycle."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        registry: LiveRegistry,
        metrics: Metrics,
        *,
        uploader: Uploader | None = None,
    ) -> None:
        self.settings = settings
        self.uploader = uploader  # S3 mode: recordings go to the bucket (issue 15)
        # Built (and checked) once: every stream's transcoder works the same way.
        self.transcode_options = transcode_options(settings)
        self.db = db
        self.metrics = metrics
        self.edges = EdgeRegistry()
        self.active: dict[int, Broadcast] = {}  # stream id -> broadcast
        self.dropped_seen: dict[tuple[str, str, int], int] = {}
        # Edges whose publisher left, waiting out hls.reconnect_grace for a reconnect.
        self._retiring: dict[str, tuple[LiveEdge, asyncio.TimerHandle]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        registry.on_started(self._started)
        registry.on_ended(self._ended)
        # Scrubbing previews of new recordings: a few at a time, each in a thread.
        self._previews = asyncio.Semaphore(max(1, settings.replay.preview_concurrency))

    def thumbnail_path(self, slug: str) -> Path:
        return self.settings.data_dir / "thumbnails" / f"{slug}.jpg"

    def stream_thumbnail_path(self, stream_id: int) -> Path:
        return self.settings.data_dir / "thumbnails" / "streams" / f"{stream_id}.jpg"

    def track(self, task: asyncio.Future[Any]) -> None:
        self._tasks.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self._tasks.discard)

    def make_previews(self, stream_id: int, directory: Path) -> None:
        """Start making a new recording's scrubbing previews (``transcode.sprites``) beside
        it, in a thread, at most ``replay.preview_concurrency`` recordings at once."""
        r = self.settings.replay
        if r.preview_concurrency <= 0:
            return
        options = PreviewOptions(
            interval=r.preview_interval,
            width=r.preview_width,
            columns=r.preview_columns,
            rows=r.preview_rows,
            quality=r.preview_quality,
            max_thumbnails=r.preview_max_thumbnails,
        )

        async def make() -> None:
            async with self._previews:
                try:
                    made = await asyncio.to_thread(
                        build_previews, directory, options, fsync=self.settings.recording.fsync
                    )
                except Exception:
                    log.exception("stream %d: scrubbing previews failed", stream_id)
                    return
            if made is not None:
                log.info(
                    "stream %d: %d scrubbing previews in %d sprite(s)",
                    stream_id,
                    made.thumbnails,
                    made.sheets,
                )
                if self.uploader is not None and self.uploader.active:
                    sprites = RecordingUploads(self.uploader, directory / PREVIEW_DIR)
                    await sprites.publish(f"stream {stream_id} previews")

        self.track(asyncio.get_running_loop().create_task(make()))

    def _started(self, stream: LiveStream) -> None:
        if not self.settings.transcode.enabled:
            return
        prior = next((b for b in self.active.values() if b.slug == stream.slug), None)
        broadcast = Broadcast(self, stream, prior)
        self.active[stream.stream_id] = broadcast
        task = asyncio.get_running_loop().create_task(broadcast.run())
        task.add_done_callback(lambda _: self.active.pop(stream.stream_id, None))
        self.track(task)

    def _ended(self, stream: LiveStream) -> None:
        broadcast = self.active.get(stream.stream_id)
        if broadcast is not None:
            broadcast.publisher_gone.set()
        else:
            self.track(
                asyncio.get_running_loop().create_task(self.mark(stream, StreamStatus.OFFLINE))
            )

    def rung_tap(self, stream_id: int) -> RungTap | None:
        """The stream's rendition outputs (None: not transcoded here, or already finished)."""
        broadcast = self.active.get(stream_id)
        return broadcast.rung_tap if broadcast is not None else None

    def claim_retiring(self, slug: str) -> LiveEdge | None:
        """The channel's edge if it is waiting out its reconnect grace (and no longer)."""
        pending = self._retiring.pop(slug, None)
        if pending is None:
            return None
        pending[1].cancel()
        return pending[0]

    def retire(self, edge: LiveEdge) -> None:
        """The publisher left: end the playlists after the reconnect grace unless a new
        stream of the channel resumes the edge first; drop it one window later."""
        loop = asyncio.get_running_loop()
        hls = self.settings.hls

        def end() -> None:
            if self._retiring.get(edge.slug, (None,))[0] is not edge:
                return
            del self._retiring[edge.slug]
            for rendition in edge:
                rendition.playlist.end()
            edge.ended = True
            edge.notify()
            # Players see the end for one window, then the edge leaves memory.
            loop.call_later(hls.live_segments * hls.segment_duration, self.edges.remove, edge)

        previous = self._retiring.pop(edge.slug, None)
        if previous is not None:
            previous[1].cancel()
        edge.retiring = True
        self._retiring[edge.slug] = (edge, loop.call_later(hls.reconnect_grace, end))

    async def ladder_for(self, channel_id: int) -> list[Rung]:
        """The channel's own ladder if it has a valid one, else the server's."""
        rungs: tuple[Rung, ...] = self.settings.transcode.ladder
        async with self.db.session() as session:
            channel = await session.get(Channel, channel_id)
            if channel is not None and channel.ladder:
                try:
                    rungs = parse_ladder(channel.ladder, f"channel {channel.slug} ladder")
                except SettingsError as exc:
                    log.warning("%s; using the default ladder", exc)
        return list(rungs)

    async def mark(self, stream: LiveStream, status: StreamStatus, **fields: Any) -> None:
        """Move the row on; the first call after LIVE stamps the end time and duration."""
        await self._end_row(
            stream.stream_id, status, datetime.now(UTC), stream.describe(), **fields
        )

    async def _end_row(
        self,
        stream_id: int,
        status: StreamStatus,
        now: datetime,
        source_info: dict[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        try:
            async with self.db.session() as session:
                if source_info is not None:
                    await queries.set_stream_source_info(session, stream_id, source_info)
                row = await queries.end_stream(session, stream_id, now, status)
                for key, value in fields.items():
                    setattr(row, key, value)
                await session.commit()
        except Exception:
            log.exception("could not mark stream %d %s", stream_id, status.value)

    # -- crash recovery -------------------------------------------------------------------
    async def recover_orphans(self, keep_channels: Collection[int] = ()) -> None:
        """At start, before ingest: close the streams an earlier run left open.

        They leave LIVE at once (so their channels can go live again); each recording is then
        rebuilt from the disk in the background, so a long one does not hold up the start.
        ``keep_channels``: channels live on another origin of the cluster, left alone.
        """
        async with self.db.session() as session:
            orphans = await queries.take_orphaned_streams(session, keep_channels)
            await session.commit()
        if orphans:
            log.warning("recovering %d stream(s) left open by an earlier run", len(orphans))
            self.track(asyncio.get_running_loop().create_task(self._recover_all(orphans)))

    def recover(self, orphans: list[queries.OrphanedStream]) -> None:
        """Recover these streams (taken out of LIVE by the caller) in the background: in a
        cluster, those of an origin that died, found when their channel goes live again."""
        if orphans:
            log.warning("recovering %d stream(s) of an origin that died", len(orphans))
            self.track(asyncio.get_running_loop().create_task(self._recover_all(orphans)))

    async def _recover_all(self, orphans: list[queries.OrphanedStream]) -> None:
        for orphan in orphans:
            await self._recover(orphan)

    async def _recover(self, orphan: queries.OrphanedStream) -> None:
        """ARCHIVED with a VOD of every whole segment that reached the disk, ended when media
        last did; OFFLINE (ended now) if none did or recording is off."""
        directory = self.settings.data_dir / "streams" / str(orphan.id)
        now = datetime.now(UTC)
        fields: dict[str, Any] = {"hls_path": f"streams/{orphan.id}/master.m3u8"}
        present: frozenset[Path] = frozenset()
        if self.uploader is not None and self.settings.recording.enabled:
            try:  # made on another node, or this disk lost it: what the bucket has
                present = await fetch_recording(self.uploader, directory)
            except ObjectStoreError as exc:
                log.warning(
                    "%s: stream %d not read from the bucket: %s", orphan.slug, orphan.id, exc
                )
        try:
            found = (
                await asyncio.to_thread(recover, directory)
                if self.settings.recording.enabled
                else None
            )
            if found is not None:
                duration = await asyncio.to_thread(
                    write_vod,
                    directory,
                    found.recorded,
                    found.master,
                    self.settings.hls.segment_duration,
                    fsync=self.settings.recording.fsync,
                )
                ended = min(now, datetime.fromtimestamp(found.last_write, UTC))
                thumbnail = self.thumbnail_path(orphan.slug)
                if (
                    orphan.started_at is not None
                    and thumbnail.exists()
                    and thumbnail.stat().st_mtime >= orphan.started_at.timestamp()
                ):
                    fields["thumbnail_path"] = str(thumbnail.relative_to(self.settings.data_dir))
                size = await asyncio.to_thread(measure_recording, directory)
                await self._end_row(
                    orphan.id,
                    StreamStatus.ARCHIVED,
                    ended,
                    vod_path=fields["hls_path"],
                    vod_duration_seconds=round(duration, 3),
                    vod_available=True,
                    size_bytes=size,
                    **fields,
                )
                self.make_previews(orphan.id, directory)
                if self.uploader is not None and self.uploader.active:
                    recovered = RecordingUploads(self.uploader, directory, present)
                    self.track(asyncio.ensure_future(recovered.publish(f"stream {orphan.id}")))
                log.warning(
                    "%s: stream %d recovered after a crash: VOD %.1f s (%d segment(s) unusable)",
                    orphan.slug,
                    orphan.id,
                    duration,
                    found.dropped,
                )
                return
        except Exception:
            log.exception("%s: could not recover stream %d", orphan.slug, orphan.id)
        await self._end_row(orphan.id, StreamStatus.OFFLINE, now, **fields)
        log.warning("%s: stream %d closed after a crash with no recording", orphan.slug, orphan.id)

    async def stop(self) -> None:
        """Server shutdown: let running broadcasts finish what they received."""
        for broadcast in list(self.active.values()):
            broadcast.publisher_gone.set()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=FINISH_TIMEOUT)
