"""Settings: embedded defaults -> TOML file -> ``AETHEX_*`` environment -> validation.

One typed tree of frozen dataclasses, so every limit the server enforces is a named, documented,
validated setting (``config/default.toml`` lists them all). Errors name the dotted key and say
why, because an operator reading a stack trace for a typo in a TOML file is a bad first hour.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import socket
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mediaserver.tls import TlsFilesError, load_server_tls
from transcode.ladder import DEFAULT_LADDER, PassthroughMode, Rung
from transcode.options import OptionError, TranscodeOptions

ENV_PREFIX = "AETHEX_"

# Short environment names the design promises will always work.
SHORT_ENV = {
    "AETHEX_DATA_DIR": "data_dir",
    "AETHEX_DATABASE_URL": "database_url",
    "AETHEX_HTTP_HOST": "http.host",
    "AETHEX_HTTP_PORT": "http.port",
    "AETHEX_RTMP_HOST": "rtmp.host",
    "AETHEX_RTMP_PORT": "rtmp.port",
}


class SettingsError(ValueError):
    """A setting is unknown, of the wrong type or out of range; the message names the key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"setting {key!r}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class HttpSettings:
    host: str = "0.0.0.0"
    port: int = 8080
    # URL viewers use to reach the site; used in links the server prints. Empty: derived.
    public_url: str = ""
    # Origins allowed to fetch HLS/VOD from other sites (CORS): "*" for any, a comma-separated
    # list of origins ("https://a.example, https://b.example"), or "" to send no CORS headers.
    cors_origins: str = "*"
    # Mark the session cookie Secure (sent over HTTPS only). Turn on behind TLS.
    secure_cookies: bool = False
    # Behind a reverse proxy (nginx) every request comes from the proxy's address: take the
    # client's from the last X-Forwarded-For entry instead (per-address login limits). Only
    # turn on when the proxy sets that header; otherwise clients could pick their address.
    trust_forwarded_for: bool = False
    # Serve plain HLS/VOD GETs from a lean HTTP/1.1 path (several times cheaper per request
    # than the full web framework); anything else on the connection goes to aiohttp.
    fast_path: bool = True
    # Seconds an idle keep-alive connection stays open.
    keepalive_timeout: float = 75.0
    # Seconds a client may take to send a whole request head (slow-loris guard).
    request_head_timeout: float = 10.0
    # Largest request head (request line + headers) the fast path reads, in bytes.
    max_request_head: int = 8192
    # Largest JSON request body the API reads, in bytes (uploads are multipart, not JSON).
    max_json_bytes: int = 65536
    # Deepest nesting of arrays and objects accepted in a JSON body or chat frame; deeper input
    # is refused before decoding (the decoder recurses once per level).
    max_json_depth: int = 32
    # Most simultaneous HTTP connections in all; more are refused at accept (503, closed).
    # Keep it under the process's open-file limit so this cap, not accept(), decides.
    max_connections: int = 4096
    # Most simultaneous HTTP connections from one client address (IPv6: one /64), so a flood
    # of idle sockets from one address cannot fill max_connections. Behind a reverse proxy
    # every connection comes from the proxy: set it high or 0 (off) and cap in the proxy.
    max_connections_per_address: int = 128


@dataclass(frozen=True)
class AuthSettings:
    # Seconds a login session lasts; after that the user logs in again.
    session_max_age: int = 1_209_600
    # Failed logins for one account from one client address within login_window before that
    # address gets 429 for that account. Per address, never per account alone: the owner on
    # their own address still gets in while someone else guesses (no lockout to abuse).
    login_max_failures: int = 5
    # Failed logins from one client address (IPv6: its /64) within login_window, whatever the
    # account, before it gets 429 for every account.
    login_max_failures_per_address: int = 20
    # Seconds failed logins are remembered for the two limits above.
    login_window: float = 900.0
    # Sign-ups (created or refused as taken) from one client address within register_window
    # before it gets 429: bounds account spam and testing which emails are registered.
    register_max_per_address: int = 10
    register_window: float = 3600.0
    # Every failed login is answered after a random delay between these (seconds).
    login_failure_delay_min: float = 0.25
    login_failure_delay_max: float = 1.0
    # Most accounts and addresses whose failures are tracked at once (a memory bound).
    login_tracked_keys: int = 100_000
    # Most API tokens one user may hold (revoked ones excluded).
    max_api_tokens: int = 50


@dataclass(frozen=True)
class UploadSettings:
    # Largest avatar or banner file accepted, in bytes.
    max_bytes: int = 5 * 1024 * 1024
    # Most pixels decoded for one image (width x height): a decode holds 4 bytes a pixel, so
    # this bounds an upload's memory (~100 MB here). JPEG may be larger: it is decoded at a
    # reduced scale that fits. WebP gets a quarter (its decoder holds ~4 copies).
    max_pixels: int = 24_000_000
    # Images decoded at once (each in its own thread); uploads past that wait their turn...
    max_concurrent_decodes: int = 1
    # ...and past this many waiting, get 503 at once (each waiting upload holds its file).
    max_waiting_decodes: int = 8
    # Avatars are re-encoded to a square of this many pixels.
    avatar_size: int = 256
    # Banners are re-encoded to fit within this width and height.
    banner_width: int = 1600
    banner_height: int = 400
    # Category box art is re-encoded to fit within this width and height (portrait, 3:4).
    boxart_width: int = 300
    boxart_height: int = 400


@dataclass(frozen=True)
class EmoteSettings:
    # Emotes in chat (issue 16). Most emotes one channel may have, and most global ones.
    channel_limit: int = 50
    global_limit: int = 200
    # Largest emote file accepted, in bytes (emotes are small: 112 px at most once stored).
    max_bytes: int = 1024 * 1024
    # Most frames of an animated GIF or WebP; more is refused (each frame is decoded and
    # scaled three times).
    max_frames: int = 200
    # Most pixels decoded over all frames (frames x width x height): bounds the work of an
    # animation (a single frame is bounded by uploads.max_pixels).
    max_total_pixels: int = 40_000_000
    # Seconds between sweeps for emote files no row names (a deleted channel's; an upload cut
    # short); a file is deleted at the second sweep that finds it so. 0: never.
    sweep_interval: float = 3600.0


@dataclass(frozen=True)
class RtmpSettings:
    host: str = "0.0.0.0"
    port: int = 1935
    # The only application name accepted: rtmp://HOST:PORT/{app}/STREAM_KEY.
    app: str = "live"
    # Base URL shown to creators (OBS "Server"). Empty: rtmp://<hostname>:<port>/<app>.
    public_url: str = ""
    # Seconds a client may take to finish C0-C2 before it is dropped.
    handshake_timeout: float = 5.0
    # Seconds without any byte from a client before it is dropped.
    idle_timeout: float = 30.0
    # Seconds a client may take from the handshake to a publish command.
    publish_timeout: float = 10.0
    # Chunk size we send (Set Chunk Size) and announce.
    out_chunk_size: int = 4096
    # Largest chunk size a peer may set; larger is a protocol error.
    max_chunk_size: int = 1 << 20
    # Largest single RTMP message accepted (a 1080p keyframe at high bitrate is well under this).
    max_message_size: int = 16 << 20
    # Most chunk stream ids one connection may use at once.
    max_chunk_streams: int = 64
    # Most message streams (createStream) one connection may open.
    max_message_streams: int = 16
    # Deepest AMF0 nesting accepted in a command or metadata.
    max_amf_depth: int = 32
    # Window acknowledgement size we announce and the bandwidth we set for the peer.
    window_ack_size: int = 2_500_000
    # Most simultaneous RTMP connections; more are closed at accept.
    max_connections: int = 256
    # Most simultaneous RTMP connections from one IP address (IPv6: one /64), so one host
    # cannot take every slot of max_connections from publishers elsewhere; more are closed at
    # accept (0: off, e.g. behind a TCP proxy where every connection comes from the proxy).
    max_connections_per_address: int = 32
    # Bytes of replies a connection may leave unread in the server (beyond what the kernel
    # took) before it is closed: a client that never reads cannot make the server hold more.
    max_send_buffer: int = 65536
    # SO_SNDBUF of each RTMP socket (0: the kernel's autotuning, up to tcp_wmem's maximum).
    # The server only sends small replies; this bounds the kernel memory a non-reader pins.
    socket_send_buffer: int = 65536
    # SO_RCVLOWAT of a publisher's socket while its video flows steadily (0: off): the kernel
    # wakes ingest once this many bytes wait, so a lone audio frame rides with the next video
    # data instead of costing a wake-up of its own (a quarter of ingest's CPU).
    read_low_water: int = 2048
    # Seconds without a read after which the low-water mark is dropped (data held below it is
    # released): checked by the deadline sweeper, so effective within a quarter second more.
    read_low_water_quiet: float = 0.1
    # Seconds a closed connection may take to receive its last replies (a refusal) before it
    # is cut, so a client that never reads cannot keep a closing connection and its buffers.
    close_linger: float = 5.0
    # Largest message accepted before a publish is accepted (commands are well under 1 KiB).
    max_setup_message_size: int = 65536
    # Longest stream name a publish may carry; also the most characters of a client's string
    # echoed back in replies.
    max_name_length: int = 256
    # A new publisher with the right key takes over a live channel whose current publisher
    # has sent nothing for this many seconds (0 = never take over; the newcomer is refused).
    takeover_after: float = 0.0
    # Seconds a channel whose stream the creator ended refuses new publishers, so an encoder's
    # automatic reconnect does not put it straight back on air (0 = no pause).
    ended_cooldown: float = 15.0
    # RTMPS: a TLS listener for publishers beside the plain one (0 = off). The certificate
    # (PEM, leaf first, then its chain) and unencrypted key are read at start and on SIGHUP.
    tls_port: int = 0
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # PROXY protocol (haproxy send-proxy / send-proxy-v2): connections from proxy_trusted
    # (comma-separated networks) start with a v1 or v2 header naming the client, whose address
    # then counts everywhere the peer's would (per-address caps, logs); others are direct
    # clients. The header must arrive within proxy_header_timeout seconds and
    # proxy_header_max_size bytes (v2's optional TLVs included).
    proxy_protocol: bool = False
    proxy_trusted: str = "127.0.0.0/8, ::1/128"
    proxy_header_timeout: float = 5.0
    proxy_header_max_size: int = 4096


@dataclass(frozen=True)
class LiveSettings:
    # Packets each consumer of a live stream may have queued before it starts losing them.
    consumer_queue_size: int = 512
    # Dashboard health warnings: source video bitrate below this fraction of the top rung's...
    bitrate_warn_low: float = 0.5
    # ...or above this multiple of it; and transcoding slower than this many times real time.
    bitrate_warn_high: float = 2.0
    speed_warn_below: float = 0.95


# A ladder rung (name, height, fps, video_kbps) is the transcoder's own type: settings hold
# exactly what the planner takes.
RungSettings = Rung


@dataclass(frozen=True)
class TranscodeSettings:
    # Transcode live streams into the ladder and package LL-HLS (off: ingest only).
    enabled: bool = True
    # auto: copy an H.264 source that fits the top rung instead of re-encoding it;
    # always: copy the top rung whenever the source is H.264; never: always re-encode.
    passthrough: PassthroughMode = "auto"
    # libx264 preset for every rung (ultrafast … veryslow); veryfast suits 2 cores at 1080p.
    preset: str = "veryfast"
    # Extra libx264 options for every rung (x264-params syntax). The default turns off the
    # rate-control and frame-type lookahead, which holds ~11 frames (0.37 s) at veryfast: live
    # latency matters more than the little quality mb-tree buys.
    x264_params: str = "rc-lookahead=0:sync-lookahead=0"
    # AAC bitrate when the source audio has to be re-encoded.
    audio_kbps: int = 128
    # Decoded frames each rung may have queued; past that it drops to the next keyframe.
    rung_queue_size: int = 30
    # Seconds of media between home-page thumbnails, and their width in pixels.
    thumbnail_interval: float = 10.0
    thumbnail_width: int = 320
    # The default ladder; a channel may carry its own.
    ladder: tuple[Rung, ...] = DEFAULT_LADDER


@dataclass(frozen=True)
class HlsSettings:
    # Target segment duration in seconds; keyframes are forced on every rung at this interval.
    segment_duration: float = 2.0
    # LL-HLS partial segment duration in seconds.
    part_duration: float = 0.333
    # Segments in the sliding live playlist window.
    live_segments: int = 6
    # Seconds the live playlists wait for a publisher that dropped to come back; a reconnect
    # in time continues them after EXT-X-DISCONTINUITY instead of ending them.
    reconnect_grace: float = 10.0
    # A viewer is a playback session that polled a media playlist in the last this many seconds.
    viewer_timeout: float = 15.0
    # Seconds between viewer recounts (the aethex_viewers gauge and the stream row's counts).
    viewer_update_interval: float = 5.0
    # Most viewer sessions tracked per channel; sessions beyond it are not counted (memory bound).
    max_viewer_sessions: int = 100000
    # Most viewer sessions counted per client address (IPv6: per /64) and channel: session ids
    # are free to make up, so one client could pose as a crowd. Viewers behind one NAT share
    # an address; behind a reverse proxy turn on http.trust_forwarded_for.
    max_sessions_per_address: int = 10
    # Seconds between the viewer page's "still watching" beacons (GET /hls/{slug}/watching):
    # what counts players whose playlists and parts come from a cache (Varnish, a CDN).
    viewer_beacon_interval: float = 5.0
    # Memory (MiB) for recently served VOD segments, so popular recordings are not re-read
    # from disk per request (0: always read the file).
    vod_cache_mb: int = 256


@dataclass(frozen=True)
class RecordingSettings:
    # Keep every segment of a stream and publish it as a VOD when the stream ends.
    enabled: bool = True
    # fsync each segment and its journal line as it closes: a power loss must not lose what
    # was received (a killed process loses nothing either way).
    fsync: bool = True


@dataclass(frozen=True)
class LogSettings:
    level: str = "info"


@dataclass(frozen=True)
class DatabaseSettings:
    # SQLite: the longest a read may run on the event loop's thread before it is interrupted
    # and run on the database thread instead (milliseconds; storage/sqlite_inline.py). 0 runs
    # every statement on the thread (aiosqlite's own way).
    inline_read_ms: float = 2.0


@dataclass(frozen=True)
class MemorySettings:
    # Most glibc malloc arenas (0: glibc's default of 8 per core). Each stream's transcoder
    # threads otherwise get heaps of their own that keep freed frames: RSS grew with every
    # stream that started and ended.
    malloc_arena_max: int = 2
    # Return freed native memory to the system after each stream ends (malloc_trim).
    trim_after_stream: bool = True
    # Allocations between two young-generation runs of Python's cyclic garbage collector (0:
    # Python's 700). At 700 a busy room promoted so many short-lived objects that full
    # collections ran every few seconds and each stopped the event loop for 50-140 ms.
    gc_young_threshold: int = 20_000


@dataclass(frozen=True)
class ChatSettings:
    # Longest chat message in characters (after trimming).
    max_length: int = 500
    # Seconds between a room's broadcasts: events of one tick go out as one frame per socket.
    tick: float = 0.05
    # Messages sent to a socket when it joins (chat:history).
    history: int = 50
    # Largest page of GET /api/streams/{id}/messages (?limit=).
    history_page_max: int = 100
    # Bytes a socket may have waiting to be sent (after its join history) before it is
    # disconnected (close 1013): a slow reader never slows the room.
    send_queue_bytes: int = 1_048_576
    # Largest WebSocket frame a client may send (bigger: close 1009).
    max_message_bytes: int = 4096
    # Seconds between WebSocket pings (0: none); a peer that misses the pong is dropped.
    heartbeat: float = 20.0
    # Seconds a socket may stay without any frame (pongs count) before it is closed.
    idle_timeout: float = 60.0
    # Per-user rate limit: at most rate_limit_messages per rate_limit_window seconds...
    rate_limit_messages: int = 3
    rate_limit_window: float = 2.0
    # ...then the user is muted for this many seconds.
    mute_seconds: float = 10.0
    # Longest timeout a moderator may give, and longest slow-mode interval (seconds).
    max_timeout_seconds: int = 1_209_600
    max_slow_mode_seconds: int = 86_400
    # Most words in a channel's word filter.
    max_filter_words: int = 200
    # Rooms with more people than this send join/leave at most every presence_interval
    # seconds (coalesced), instead of every tick.
    big_room: int = 100
    presence_interval: float = 1.0
    # Fan-out between server processes: "memory" (one process) or a Redis URL
    # ("redis://host:6379/0") so several processes share every room.
    bus: str = "memory"
    # Frames a socket may send per frame_window seconds, of any type (sends, moderation,
    # malformed): a refused frame must stay cheap. Past it: chat:error, frames ignored; a
    # socket that sends twice the budget in one window is closed (1008).
    frame_budget: int = 100
    frame_window: float = 10.0
    # Seconds after which a logged-in socket re-reads its account and credential before it
    # acts (account changes also reach open sockets at once through the bus).
    recheck_interval: float = 30.0
    # Typing indicators (issue 16): a client sends "typing" at most every typing_interval
    # seconds (the server ignores more); each process publishes who started typing once per
    # typing_flush seconds per room; a name shows for typing_ttl seconds unless renewed. Off in
    # rooms with more than typing_max_room people, whatever the channel's setting.
    typing_interval: float = 3.0
    typing_flush: float = 0.5
    typing_ttl: float = 6.0
    typing_max_room: int = 200
    # (channel, user) follow dates kept for follower-age badges (one query per user and room).
    badge_cache_size: int = 100_000


@dataclass(frozen=True)
class RaidSettings:
    # Raids (issue 16): a channel may raid while live or up to after_end_seconds after its
    # broadcast ended (viewers are often still on the page), at most once per
    # cooldown_seconds.
    after_end_seconds: float = 600.0
    cooldown_seconds: float = 60.0
    # Live channels the raid picker lists per search, and raids a channel's list shows.
    targets_max: int = 20
    history_max: int = 50


@dataclass(frozen=True)
class PollSettings:
    # Live polls in the chat room (issue 16). Question and option lengths in characters.
    max_question: int = 200
    max_option: int = 80
    # Seconds a poll may run: the shortest and longest a moderator may ask for, and the default.
    min_duration: int = 5
    max_duration: int = 3600
    default_duration: int = 60
    # Seconds between tallies: a process that took votes counts them in the database and
    # publishes the totals at most this often (one event per poll, not one per vote).
    tally_interval: float = 0.25
    # Most polls listed by the API per request.
    list_limit: int = 50


@dataclass(frozen=True)
class ReactionSettings:
    # Live reactions over the player (issue 16): the emojis viewers may tap, space-separated.
    emojis: str = "\U0001f44d \u2764\ufe0f \U0001f602 \U0001f62e \U0001f389 \U0001f525"
    # Least seconds between a room's bursts: taps are counted per emoji and published at most
    # once per tick, just before the room's next chat frame (see config/default.toml).
    tick: float = 0.025
    # Taps a viewer may send per window seconds (per process); more are dropped silently.
    rate_limit: int = 10
    rate_window: float = 2.0


@dataclass(frozen=True)
class MetricsSettings:
    # A bearer token /metrics requires (Authorization: Bearer TOKEN); "" for none.
    token: str = ""
    # A file holding that token instead (first line), so it need not sit in the config.
    token_file: str = ""
    # Client addresses allowed to read /metrics: comma-separated networks
    # ("127.0.0.1/32, 10.0.0.0/8"); "" for any address.
    allow: str = ""


@dataclass(frozen=True)
class NotificationsSettings:
    # Follower rows one INSERT ... SELECT of a go-live fan-out writes; the fan-out yields to the
    # event loop (and lets other writers at the database) between batches.
    fanout_batch_size: int = 5000
    # Go-live fan-outs running at once (more wait their turn: a restart that brings many
    # channels back live must not open a transaction per channel at once).
    fanout_concurrency: int = 2
    # Seconds after a channel's go-live notifications during which a new go-live of the same
    # channel (an encoder reconnecting) notifies nobody again (0: always notify).
    renotify_after: float = 300.0
    # Days a notification is kept; older ones are deleted by a periodic task.
    retention_days: int = 90
    # Seconds between two pruning runs.
    prune_interval: float = 3600.0
    # Largest page of GET /api/notifications (?limit=) and the /notifications page's size.
    page_max: int = 100
    page_size: int = 30
    # Seconds between two looks at the database for notifications written by another process
    # (the bell of a viewer whose stream of events is served here): bounds how late it is.
    poll_interval: float = 1.0
    # Seconds between full recounts of every open stream's unread count (catches marks as read
    # made through another process).
    recount_interval: float = 30.0
    # Open event streams (GET /api/notifications/events) per user and in all; more get 429.
    max_streams_per_user: int = 8
    max_streams: int = 10000
    # Seconds between heartbeat comments on an idle event stream.
    heartbeat: float = 15.0
    # Bytes an event stream may have waiting to be sent before it is closed (a client that
    # never reads), and seconds one write may wait for the client.
    send_buffer_bytes: int = 65536
    write_timeout: float = 10.0


@dataclass(frozen=True)
class EmailSettings:
    # SMTP server that sends go-live emails; "" turns email off.
    smtp_host: str = ""
    smtp_port: int = 587
    # Login for the SMTP server ("" for none).
    smtp_user: str = ""
    smtp_password: str = ""
    # Upgrade the connection with STARTTLS (port 587); off for a local relay without TLS.
    smtp_starttls: bool = True
    # Seconds an SMTP connection or command may take.
    smtp_timeout: float = 30.0
    # The From: header of every email.
    from_address: str = "AeThex Live <noreply@localhost>"
    # Seconds between two digests to one user who asked for digests.
    digest_interval: float = 86400.0
    # Seconds between two looks for notifications owed an email.
    send_interval: float = 5.0
    # Notifications (single emails) or users (digests) handled per look.
    batch_size: int = 100
    # Most notifications listed in one digest (the rest are summed up in a line).
    digest_max_items: int = 50
    # Seconds a sender holds the notifications it is mailing; one it has not marked sent by
    # then (it crashed) is mailed again by any process.
    claim_seconds: float = 300.0


@dataclass(frozen=True)
class WebhookSettings:
    # Seconds one delivery attempt may take in all (connect, send, answer); then it failed.
    timeout: float = 10.0
    # Attempts per delivery before it is marked failed; the waits between them double from
    # backoff_base seconds up to backoff_max.
    max_attempts: int = 8
    backoff_base: float = 15.0
    backoff_max: float = 3600.0
    # Deliveries in flight at once (in this process).
    max_concurrent: int = 8
    # Seconds between looks for deliveries due that no event here announced (a claim another
    # process let lapse); deliveries queued and retried here, and those a restart left, are
    # sent when due without waiting for it.
    poll_interval: float = 15.0
    # Bytes of a receiver's answer read (kept in the delivery's error when it is not 2xx).
    max_response_bytes: int = 4096
    # Longest endpoint URL, and most endpoints per channel.
    max_url_length: int = 2048
    max_per_channel: int = 10
    # Deliveries listed per endpoint on the dashboard; largest page of the deliveries API.
    deliveries_shown: int = 20
    deliveries_page_max: int = 100
    # Days a finished (succeeded or failed) delivery is kept.
    retention_days: int = 30
    # Deliver to loopback, private, link-local and other non-public addresses. Off, an
    # endpoint resolving to one is refused at registration and at every delivery (SSRF).
    allow_private_addresses: bool = False


@dataclass(frozen=True)
class HistorySettings:
    # Seconds between the player page's heartbeats while a logged-in viewer plays a stream.
    heartbeat_interval: float = 30.0
    # Seconds between the batched writes of watch sessions (one transaction per flush).
    flush_interval: float = 15.0
    # Seconds without a heartbeat after which a session is over: the next heartbeat starts a
    # new one. A heartbeat credits at most this many seconds of watching.
    session_gap: float = 90.0
    # Sessions held in memory between flushes, in all and per user (a heartbeat past either
    # is answered but not recorded).
    max_tracked: int = 100000
    max_tracked_per_user: int = 4
    # Entries on /dashboard/history and the largest page of GET /api/me/history (?limit=).
    page_size: int = 50
    page_max: int = 200


@dataclass(frozen=True)
class PointsSettings:
    # Channel points (issue 16). Server defaults of a channel's rates, which its owner tunes:
    # points per minute watched, and extra points per minute for followers and for viewers
    # who chatted in the channel within chat_bonus_window seconds. max_rate bounds each.
    watch_rate: int = 2
    follow_bonus: int = 1
    chat_bonus: int = 1
    max_rate: int = 100
    chat_bonus_window: float = 600.0
    # Seconds between the player page's points heartbeats. A heartbeat is credited only when
    # the same login session fetched media (parts or segments) of the channel within
    # media_window seconds, and credits at most session_gap seconds (the time since that
    # user's previous credited heartbeat on the channel: several tabs share one clock).
    heartbeat_interval: float = 30.0
    media_window: float = 60.0
    session_gap: float = 90.0
    # Seconds between accrual flushes (whole minutes watched become ledger rows in one
    # transaction of a few set-based statements); (user, channel) pairs held in memory.
    flush_interval: float = 60.0
    max_tracked: int = 100000
    # Rewards: most per channel, the largest cost and cooldown, the longest redemption text,
    # and the redemptions the queue lists at once.
    max_rewards: int = 50
    max_cost: int = 10_000_000
    max_cooldown: int = 604800
    max_text: int = 200
    queue_size: int = 100
    # Predictions: the shortest and longest staking window in seconds, the largest stake,
    # and how often each process publishes the running totals (aggregated: one event per
    # prediction per interval, not one per stake).
    min_window: int = 10
    max_window: int = 3600
    max_stake: int = 10_000_000
    publish_interval: float = 0.25


@dataclass(frozen=True)
class RecommendationSettings:
    # Seconds the live channels behind the home page are reused (one query for every visitor).
    live_cache_seconds: float = 2.0
    # Most live channels read for the home page (the most watched first).
    max_live: int = 2000
    # Seconds a user's follows and blocks are reused (a follow through the site drops them at
    # once); 0 reads them on every visit.
    follows_cache_seconds: float = 10.0
    # Seconds a user's watch-history signals are reused; 0 reads them on every visit.
    user_cache_seconds: float = 15.0
    # Users whose signals are cached at once.
    user_cache_entries: int = 10000
    # Follows, latest watch sessions and blocks read per user for their recommendations.
    max_follows_read: int = 500
    max_history_read: int = 200
    max_blocks_read: int = 1000
    # "Viewers of X also watch": the newest coview_sample watch sessions of everybody,
    # recounted every coview_refresh seconds in the background; coview_neighbours channels
    # kept per channel, coview_channels_per_user channels of one user in the sample.
    coview_sample: int = 50000
    coview_refresh: float = 300.0
    coview_neighbours: int = 20
    coview_channels_per_user: int = 16
    # The user's strongest categories and tags that bring in candidates for "Recommended for
    # you", and how many of the most watched live channels of each (bounds the work per visit).
    signals_used: int = 8
    candidates_per_signal: int = 24
    # Cards per home page section.
    following_max: int = 12
    recommended_max: int = 12
    popular_max: int = 24
    new_creators_max: int = 8
    # Most cards of one category in "Popular now" while other categories have live channels.
    popular_per_category: int = 4
    # A channel whose first broadcast started within this many days is a new creator.
    new_creator_days: float = 14.0


@dataclass(frozen=True)
class BrowseSettings:
    # Most categories /categories and GET /api/categories list (1-1000).
    categories_max: int = 200
    # Live channels a category page lists (the most watched first) (1-500).
    live_per_page: int = 60
    # Live streams of a category read to filter them by tag (1-10000).
    live_scan_max: int = 1000
    # Recent past broadcasts a category page lists (0-200).
    past_per_page: int = 24
    # Followed channels /following lists (1-1000).
    following_max: int = 200
    # Seconds a category page's listing serves every visitor (0-60; 0: off), and how many
    # (category, tag, language) listings are kept (1-100000).
    cache_seconds: float = 2.0
    cache_entries: int = 2000
    # Seconds one rendering of a discovery page (/, /categories, a category, /search) serves
    # every anonymous visitor of the same URL (0-60; 0: off), and how many such pages are
    # kept (1-10000).
    page_cache_seconds: float = 2.0
    page_cache_entries: int = 256


@dataclass(frozen=True)
class DownloadSettings:
    # MP4 downloads of past broadcasts (GET /videos/{id}/download) streaming at once; one
    # more gets 503 with Retry-After. Each holds its plan (about 5 bytes a sample: 14 MB for
    # ten hours of 1080p with audio; some 4 times that while it is made) and two read blocks,
    # never the file.
    max_concurrent: int = 4
    # Of those, at most this many from one client address (IPv6: per /64; 0: no such cap), so
    # one client cannot hold every slot; one more gets 429 with Retry-After.
    max_per_address: int = 2
    # KiB read from the recording per step (one worker-thread hop each).
    read_kb: int = 1024
    # Plans (the computed moov and where each byte comes from) kept for seconds after use, so
    # the many Range requests of a player or a download manager are planned once; MiB in all.
    plan_cache_seconds: float = 60.0
    plan_cache_mb: int = 64


@dataclass(frozen=True)
class VideoSettings:
    # Past broadcasts kept per channel: at most retention_days days after they ended and at
    # most retention_max_gb GB on disk (the oldest unpinned go first); 0: no limit. A channel's
    # own limits (its dashboard) replace these.
    retention_days: int = 0
    retention_max_gb: float = 0.0
    # Seconds between retention passes.
    retention_interval: float = 3600.0
    # Seconds a private video's playback link (handed to its owner or an admin) works.
    private_link_seconds: float = 21600.0
    # Videos per page of /dashboard/videos and GET /api/channels/{slug}/videos (the most).
    page_size: int = 100


@dataclass(frozen=True)
class AnalyticsSettings:
    # Seconds between samples of every live stream (viewers, chat, follows).
    sample_interval: float = 10.0
    # Chat and follows are counted this many seconds behind the clock, so a message stamped
    # just before a sample but committed just after it still lands in a sample.
    activity_lag: float = 2.0
    # Seconds between writes of the viewer sessions' watch time (batched, added on).
    watch_flush_interval: float = 60.0
    # Seconds between rollups of the samples into per-channel hours and days (and the
    # summaries of streams that ended).
    rollup_interval: float = 60.0
    # Days raw samples and viewer sessions are kept (finished streams keep their summary).
    raw_retention_days: float = 3.0
    # Days hourly rollups are kept (the 7-day view reads hours; longer ranges read days).
    hourly_retention_days: float = 92.0
    # A stream's stored curve: points at least series_step seconds apart, at most
    # series_max_points of them (a longer stream gets wider points).
    series_step: int = 60
    series_max_points: int = 360
    # Viewer sessions whose watch time is held in memory between flushes.
    max_tracked_sessions: int = 200000
    # Streams and clips listed as a channel's top ones on the dashboard and the API.
    top_streams: int = 5
    top_clips: int = 5


@dataclass(frozen=True)
class ReplaySettings:
    # Chat replay (GET /api/videos/{id}/chat): seconds of the video one request may span (the
    # default window and the most), and messages per page (the default and the most).
    chat_window_seconds: float = 60.0
    chat_window_max: float = 600.0
    chat_page_size: int = 200
    chat_page_max: int = 1000
    # Scrubbing previews made when a stream is archived: a thumbnail every preview_interval
    # seconds of the lowest rendition, preview_width pixels wide (height from the video's
    # shape), packed preview_columns x preview_rows to a sprite JPEG at preview_quality.
    preview_interval: float = 5.0
    preview_width: int = 160
    preview_columns: int = 10
    preview_rows: int = 10
    preview_quality: int = 70
    # Most thumbnails per video (a longer video spaces them out), and recordings worked on at
    # once (each a thread decoding video); more wait their turn.
    preview_max_thumbnails: int = 10000
    preview_concurrency: int = 1


@dataclass(frozen=True)
class ClipSettings:
    # Seconds of the live stream the viewer page's Clip button captures (the draft's length).
    live_seconds: float = 30.0
    # Seconds of a live stream's most recent media kept on disk while it is live, whatever
    # the live window and recording (at least live_seconds plus two segments).
    dvr_seconds: float = 60.0
    # Shortest and longest clip (seconds).
    min_seconds: float = 1.0
    max_seconds: float = 60.0
    # Clips one user may create (live or VOD) per rate_window seconds.
    rate_limit: int = 10
    rate_window: float = 3600.0
    # Cuts running at once (each is CPU work in a thread); more wait their turn.
    concurrent_cuts: int = 1
    # Clips listed under a channel's page (top by views, last 7 days or all time).
    top_clips: int = 8
    # Hours an unpublished draft (and its captured segments) is kept, and seconds between the
    # passes that remove older ones.
    draft_hours: float = 24.0
    prune_interval: float = 3600.0


@dataclass(frozen=True)
class ChannelPageSettings:
    # Past broadcasts per page of a channel's home (/streams/{slug} while offline); older
    # ones are a "next page" link away (1-100).
    past_broadcasts_per_page: int = 12
    # Most channels a public profile (/u/{username}) lists (1-100).
    profile_channels: int = 20


@dataclass(frozen=True)
class CommunitySettings:
    # Community channels (issue 16): persistent text topics beside the live chat. Most topics
    # a channel may open (1-100).
    max_topics: int = 10
    # Messages per history page (GET .../messages?limit=): the default and the most (1-500).
    page_size: int = 50
    page_max: int = 100
    # Unread counts stop at this many per topic (shown as "99+"): a bounded scan (1-10000).
    unread_cap: int = 99


@dataclass(frozen=True)
class SearchSettings:
    # Longest query in characters: the API answers 400 past it (a search box never needs more).
    max_query_chars: int = 100
    # Words of a query that count; the rest are ignored.
    max_words: int = 8
    # Results per page of GET /api/search and /search (?limit=): the default and the most.
    page_size: int = 20
    page_max: int = 50
    # Suggestions of each type (channels, users, categories, videos) under the search box.
    suggest_per_type: int = 3
    # Rows taken from each index per search: what bounds the work of a query matching much of
    # the site, and how deep its pages go.
    candidates: int = 50
    # Typo tolerance runs when fewer rows than this matched the words as typed...
    fuzzy_below: int = 10
    # ...and looks at this many vocabulary words sharing letters with each misspelt word.
    fuzzy_candidates: int = 50
    # Seconds an answer serves every request for the same query, type, page and cursor (search
    # results are the same for everybody); 0: none. At most cache_entries answers are kept.
    cache_seconds: float = 2.0
    cache_entries: int = 2000


@dataclass(frozen=True)
class RestreamSettings:
    # Relay live streams to the destinations creators add (issue 14). Off: nothing is relayed
    # (destinations can still be edited).
    enabled: bool = True
    # Most destinations per channel; longest ingest URL and stream key accepted.
    max_per_channel: int = 10
    max_url_length: int = 1024
    max_key_length: int = 512
    # Seconds for TCP/TLS to connect, then for the RTMP handshake and publish setup.
    connect_timeout: float = 10.0
    setup_timeout: float = 10.0
    # Seconds a destination may stop reading (its socket full) before it is given up and retried.
    stall_timeout: float = 10.0
    # Waits between attempts double from backoff_base seconds up to backoff_max.
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    # Seconds a relay must stay up before the backoff starts again from backoff_base.
    stable_after: float = 30.0
    # Seconds between the relays' refreshes; in a cluster, edits on other nodes take effect
    # this fast (on one node, this process's own edits at once).
    refresh_interval: float = 1.0
    # Packets (audio and video) a destination's subscription holds; past it, drop to a keyframe.
    queue_size: int = 1024
    # Bytes our socket buffer may hold before output waits, and bytes waiting before it drops.
    write_buffer: int = 262144
    max_buffered: int = 4194304
    # Relay to loopback, private, link-local and other non-public addresses. Off, a destination
    # whose host is or resolves to one is refused at each attempt (SSRF). On for tests and LANs.
    allow_private_addresses: bool = False
    # A directory of PEM CA files the operator trusts for rtmps:// destinations with their own
    # certificates; a destination names one of its files. "" = none can be named.
    ca_dir: str = ""


@dataclass(frozen=True)
class ClusterSettings:
    # What this process serves (issue 15): "all" is the one-process default (ingest, HLS, web
    # and chat); "origin" takes publishers and serves their HLS; "web" serves pages, API and chat.
    role: str = "all"
    # This node's name in leases and logs ("" = the host name and the RTMP port), and the base
    # URL other nodes reach its HTTP port at ("" = http://<host name>:<http.port>).
    node_id: str = ""
    advertise_url: str = ""
    # The Redis every node coordinates through (leases, counts). "" = none, one node only; a
    # role other than "all" requires it and PostgreSQL.
    redis_url: str = ""
    # A file holding the secret every node signs with (64 hex digits: CSRF tokens, unsubscribe
    # links, unlisted VOD grants), the same file on each node; "" = data_dir/secret_key, made
    # on the first start. Required for roles origin and web: per-node secrets break forms.
    secret_key_file: str = ""
    # Seconds a channel's lease lives without renewal, and between renewals by its origin.
    lease_seconds: float = 6.0
    renew_interval: float = 1.0
    # Shared counters (viewers, chat presence): how long a node's entry lives without a refresh,
    # and how often it refreshes its presence and re-reads who is in its rooms. Viewer counts
    # are refreshed at every recount (hls.viewer_update_interval).
    counts_ttl: float = 15.0
    counts_refresh: float = 2.0
    # Live HLS of a stream owned by another origin is fetched from it (aethex:origin:{slug}):
    # seconds a request to the owner may take (more than a blocking reload's 3 target
    # durations), most such requests in flight at once (more get 503), seconds a looked-up
    # owner is remembered, and the largest body taken (MiB).
    proxy_timeout: float = 15.0
    proxy_max_requests: int = 1000
    route_cache_seconds: float = 1.0
    proxy_max_body_mb: int = 64


@dataclass(frozen=True)
class ObjectSettings:
    # Where media and uploads are kept: "local" (under data_dir) or "s3" (any S3 endpoint).
    backend: str = "local"
    # The S3 endpoint ("" = AWS by region), bucket, region, key prefix and credentials
    # (credentials "" = the usual AWS environment and files).
    endpoint_url: str = ""
    bucket: str = ""
    region: str = "us-east-1"
    prefix: str = ""
    access_key: str = ""
    secret_key: str = ""
    # A public base URL of the bucket: VOD media redirects there ("" = served through the server).
    public_url: str = ""
    # S3 mode: uploads running at once, files waiting past which new ones stay on disk only
    # (counted), retry backoff (first wait, doubling up to retry_max) and how long a failing
    # upload is retried, part size of large files, and one request's connect/read timeout (s).
    upload_concurrency: int = 4
    upload_queue: int = 10000
    retry_initial: float = 1.0
    retry_max: float = 30.0
    retry_for: float = 3600.0
    part_size: int = 8 << 20
    timeout: float = 10.0
    # Segments between uploads of a recording's journal (what crash recovery from the bucket
    # reads; it is also sent after each initialization section and at the end).
    journal_segments: int = 10
    # Recordings and clips copied from the bucket to this disk (an MP4 download, a clip cut
    # or a clip's files on a node that lacks them): at most copies_max_mb MiB (least recently
    # used first out), none unused for copies_max_age seconds (0 = no age limit), checked
    # every copies_sweep seconds; a copy in use or used since the last sweep stays.
    copies_max_mb: float = 10240.0
    copies_max_age: float = 86400.0
    copies_sweep: float = 60.0


@dataclass(frozen=True)
class Settings:
    # Where the database (SQLite default), segments, VODs, thumbnails and uploads live.
    data_dir: Path = Path("data")
    # SQLAlchemy URL. Empty: sqlite+aiosqlite:///<data_dir>/aethex.db.
    database_url: str = ""
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    uploads: UploadSettings = field(default_factory=UploadSettings)
    emotes: EmoteSettings = field(default_factory=EmoteSettings)
    rtmp: RtmpSettings = field(default_factory=RtmpSettings)
    live: LiveSettings = field(default_factory=LiveSettings)
    transcode: TranscodeSettings = field(default_factory=TranscodeSettings)
    hls: HlsSettings = field(default_factory=HlsSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    log: LogSettings = field(default_factory=LogSettings)
    memory: MemorySettings = field(default_factory=MemorySettings)
    chat: ChatSettings = field(default_factory=ChatSettings)
    raids: RaidSettings = field(default_factory=RaidSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    browse: BrowseSettings = field(default_factory=BrowseSettings)
    channel_page: ChannelPageSettings = field(default_factory=ChannelPageSettings)
    community: CommunitySettings = field(default_factory=CommunitySettings)
    clips: ClipSettings = field(default_factory=ClipSettings)
    replay: ReplaySettings = field(default_factory=ReplaySettings)
    analytics: AnalyticsSettings = field(default_factory=AnalyticsSettings)
    downloads: DownloadSettings = field(default_factory=DownloadSettings)
    videos: VideoSettings = field(default_factory=VideoSettings)
    history: HistorySettings = field(default_factory=HistorySettings)
    points: PointsSettings = field(default_factory=PointsSettings)
    recommendations: RecommendationSettings = field(default_factory=RecommendationSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    restream: RestreamSettings = field(default_factory=RestreamSettings)
    notifications: NotificationsSettings = field(default_factory=NotificationsSettings)
    email: EmailSettings = field(default_factory=EmailSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    objects: ObjectSettings = field(default_factory=ObjectSettings)
    polls: PollSettings = field(default_factory=PollSettings)
    reactions: ReactionSettings = field(default_factory=ReactionSettings)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'aethex.db').resolve()}"

    @property
    def rtmp_public_url(self) -> str:
        if self.rtmp.public_url:
            return self.rtmp.public_url.rstrip("/")
        host = self.rtmp.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        port = "" if self.rtmp.port == 1935 else f":{self.rtmp.port}"
        return f"rtmp://{host}{port}/{self.rtmp.app}"

    @property
    def rtmps_public_url(self) -> str:
        """The RTMPS "Server" ("" when rtmp.tls_port is 0), on the host of rtmp.public_url
        when that is set (the name the certificate is for)."""
        r = self.rtmp
        if not r.tls_port:
            return ""
        host = (urlsplit(r.public_url).hostname or "") if r.public_url else ""
        if not host:
            host = r.host if r.host not in ("0.0.0.0", "::", "") else socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        port = "" if r.tls_port == 443 else f":{r.tls_port}"
        return f"rtmps://{host}{port}/{r.app}"


# The setting each of the live transcoder's options is made from.
TRANSCODE_OPTION_SETTINGS = {
    "passthrough": "transcode.passthrough",
    "segment_duration": "hls.segment_duration",
    "preset": "transcode.preset",
    "x264_params": "transcode.x264_params",
    "audio_kbps": "transcode.audio_kbps",
    "thumbnail_interval": "transcode.thumbnail_interval",
    "thumbnail_width": "transcode.thumbnail_width",
    "queue_size": "transcode.rung_queue_size",
}


def transcode_options(s: Settings) -> TranscodeOptions:
    """The live transcoder's options from settings.

    The rules are the transcoder's own (``TranscodeOptions``); ``validate`` calls this at load,
    so a broken rule stops the server at start and names the setting.
    """
    values = {}
    for option, key in TRANSCODE_OPTION_SETTINGS.items():
        section, name = key.split(".")
        values[option] = getattr(getattr(s, section), name)
    try:
        return TranscodeOptions(**values)
    except OptionError as exc:
        raise SettingsError(TRANSCODE_OPTION_SETTINGS[exc.option], exc.reason) from None


def validate_ladder(ladder: tuple[RungSettings, ...], key: str) -> None:
    """A ladder must be non-empty, with unique URL-safe names and sane numbers."""
    if not ladder:
        raise SettingsError(key, "needs at least one rung")
    seen: set[str] = set()
    for i, rung in enumerate(ladder):
        where = f"{key}[{i}]"
        if not rung.name or not all(c.isalnum() or c in "-_" for c in rung.name):
            raise SettingsError(where + ".name", "must be letters, digits, '-' or '_'")
        if rung.name in seen:
            raise SettingsError(where + ".name", f"duplicate rung name {rung.name!r}")
        seen.add(rung.name)
        if not 64 <= rung.height <= 4320 or rung.height % 2:
            raise SettingsError(where + ".height", "must be an even number of lines, 64-4320")
        if not 1 <= rung.fps <= 120:
            raise SettingsError(where + ".fps", "must be between 1 and 120")
        if not 100 <= rung.video_kbps <= 100_000:
            raise SettingsError(where + ".video_kbps", "must be between 100 and 100000")


def parse_ladder(value: Any, key: str) -> tuple[RungSettings, ...]:
    """A ladder from TOML tables, JSON (environment, per-channel column) or RungSettings."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise SettingsError(key, f"expected a JSON list of rungs: {exc}") from None
    if not isinstance(value, (list, tuple)):
        raise SettingsError(key, "expected a list of rungs")
    rungs = []
    for i, item in enumerate(value):
        if isinstance(item, RungSettings):
            rungs.append(item)
            continue
        if not isinstance(item, Mapping):
            raise SettingsError(
                f"{key}[{i}]", "expected a table with name, height, fps, video_kbps"
            )
        rungs.append(_build(RungSettings, item, f"{key}[{i}]."))
    ladder = tuple(rungs)
    validate_ladder(ladder, key)
    return ladder


def _check_positive(key: str, value: float) -> None:
    if value <= 0:
        raise SettingsError(key, f"must be greater than 0, got {value}")


def _validate_search(s: SearchSettings) -> None:
    bounds = {
        "max_query_chars": (1, 1000),
        "max_words": (1, 32),
        "page_size": (1, 200),
        "page_max": (1, 200),
        "suggest_per_type": (1, 20),
        "candidates": (1, 10000),
        "fuzzy_below": (0, 10000),
        "fuzzy_candidates": (1, 1000),
        "cache_seconds": (0, 60),
        "cache_entries": (1, 100000),
    }
    for name, (low, high) in bounds.items():
        if not low <= getattr(s, name) <= high:
            raise SettingsError(f"search.{name}", f"must be between {low} and {high}")
    if s.page_size > s.page_max:
        raise SettingsError("search.page_size", "must be at most search.page_max")


def validate(s: Settings) -> Settings:
    """Range checks that types alone cannot express; raise naming the first bad key."""
    for key, port in (("http.port", s.http.port), ("rtmp.port", s.rtmp.port)):
        if not 0 <= port <= 65535:
            raise SettingsError(key, f"must be a TCP port 0-65535, got {port}")
    r = s.rtmp
    for name in (
        "handshake_timeout",
        "idle_timeout",
        "publish_timeout",
        "max_message_size",
        "max_chunk_streams",
        "max_message_streams",
        "max_amf_depth",
        "window_ack_size",
        "max_connections",
    ):
        _check_positive(f"rtmp.{name}", getattr(r, name))
    for name in ("max_send_buffer", "close_linger"):
        _check_positive(f"rtmp.{name}", getattr(r, name))
    if r.max_connections_per_address < 0:
        raise SettingsError("rtmp.max_connections_per_address", "must be 0 (off) or more")
    if r.socket_send_buffer < 0:
        raise SettingsError("rtmp.socket_send_buffer", "must be 0 (kernel default) or bytes")
    if not 0 <= r.read_low_water <= 1 << 20:
        raise SettingsError("rtmp.read_low_water", "must be 0 (off) to 1048576 bytes")
    _check_positive("rtmp.read_low_water_quiet", r.read_low_water_quiet)
    if not 128 <= r.max_setup_message_size <= 1 << 24:
        raise SettingsError("rtmp.max_setup_message_size", "must be between 128 and 16777216")
    if not 16 <= r.max_name_length <= 65536:
        raise SettingsError("rtmp.max_name_length", "must be between 16 and 65536")
    if not 128 <= r.out_chunk_size <= 0xFFFFFF:
        raise SettingsError("rtmp.out_chunk_size", "must be between 128 and 16777215")
    if not 128 <= r.max_chunk_size <= 0x7FFFFFFF:
        raise SettingsError("rtmp.max_chunk_size", "must be between 128 and 2147483647")
    if r.takeover_after < 0:
        raise SettingsError("rtmp.takeover_after", "must be 0 (off) or a number of seconds")
    if not r.app or "/" in r.app:
        raise SettingsError("rtmp.app", "must be a non-empty name without '/'")
    _validate_rtmps(r)
    _validate_proxy_protocol(r)
    _check_positive("live.consumer_queue_size", s.live.consumer_queue_size)
    if r.ended_cooldown < 0:
        raise SettingsError("rtmp.ended_cooldown", "must be 0 (off) or a number of seconds")
    if not 0 < s.live.bitrate_warn_low < 1:
        raise SettingsError("live.bitrate_warn_low", "must be a fraction between 0 and 1")
    if s.live.bitrate_warn_high <= 1:
        raise SettingsError("live.bitrate_warn_high", "must be a multiple greater than 1")
    if not 0 < s.live.speed_warn_below <= 1:
        raise SettingsError("live.speed_warn_below", "must be between 0 (exclusive) and 1")
    # transcode.* and hls.segment_duration: the transcoder's rules, named by setting.
    transcode_options(s)
    validate_ladder(s.transcode.ladder, "transcode.ladder")
    h = s.hls
    _check_positive("hls.part_duration", h.part_duration)
    if h.part_duration > h.segment_duration:
        raise SettingsError("hls.part_duration", "must not be longer than hls.segment_duration")
    if h.vod_cache_mb < 0:
        raise SettingsError("hls.vod_cache_mb", "must be 0 (off) or a number of MiB")
    if h.reconnect_grace < 0:
        raise SettingsError("hls.reconnect_grace", "must be 0 or more seconds")
    for name in (
        "viewer_timeout",
        "viewer_update_interval",
        "max_viewer_sessions",
        "max_sessions_per_address",
        "viewer_beacon_interval",
    ):
        _check_positive(f"hls.{name}", getattr(h, name))
    for name in (
        "keepalive_timeout",
        "request_head_timeout",
        "max_request_head",
        "max_connections",
        "max_json_bytes",
        "max_json_depth",
    ):
        _check_positive(f"http.{name}", getattr(s.http, name))
    if s.http.max_connections_per_address < 0:
        raise SettingsError("http.max_connections_per_address", "must be 0 (off) or more")
    for origin in (o.strip() for o in s.http.cors_origins.split(",")):
        if origin and origin != "*" and not re.fullmatch(r"https?://[^/\s,]+", origin):
            raise SettingsError(
                "http.cors_origins",
                f'expected "*" or origins like https://example.org, got {origin!r}',
            )
    if h.live_segments < 3:
        raise SettingsError(
            "hls.live_segments", "must be at least 3 (RFC 8216 needs 3 target durations)"
        )
    a = s.auth
    for name in (
        "session_max_age",
        "login_max_failures",
        "login_max_failures_per_address",
        "login_window",
        "login_tracked_keys",
        "max_api_tokens",
        "register_max_per_address",
        "register_window",
    ):
        _check_positive(f"auth.{name}", getattr(a, name))
    if a.login_failure_delay_min < 0:
        raise SettingsError("auth.login_failure_delay_min", "must be 0 or more seconds")
    if a.login_failure_delay_max < a.login_failure_delay_min:
        raise SettingsError(
            "auth.login_failure_delay_max", "must not be less than auth.login_failure_delay_min"
        )
    u = s.uploads
    for name in ("max_bytes", "max_pixels", "max_concurrent_decodes"):
        _check_positive(f"uploads.{name}", getattr(u, name))
    if u.max_waiting_decodes < 0:
        raise SettingsError("uploads.max_waiting_decodes", "must be 0 (no waiting) or more")
    for name in ("avatar_size", "banner_width", "banner_height", "boxart_width", "boxart_height"):
        if not 16 <= getattr(u, name) <= 4096:
            raise SettingsError(f"uploads.{name}", "must be between 16 and 4096 pixels")
    for name in ("channel_limit", "global_limit", "max_bytes", "max_frames", "max_total_pixels"):
        _check_positive(f"emotes.{name}", getattr(s.emotes, name))
    if s.emotes.sweep_interval < 0:
        raise SettingsError("emotes.sweep_interval", "must be 0 (never) or more")
    if s.log.level.lower() not in ("debug", "info", "warning", "error"):
        raise SettingsError("log.level", "must be one of debug, info, warning, error")
    if s.database_url and "://" not in s.database_url:
        raise SettingsError(
            "database_url", "must be a SQLAlchemy URL such as postgresql+asyncpg://…"
        )
    _validate_chat(s.chat)
    _validate_raids(s.raids)
    _validate_metrics(s.metrics)
    _validate_search(s.search)
    _validate_browse(s.browse)
    for name in ("past_broadcasts_per_page", "profile_channels"):
        if not 1 <= getattr(s.channel_page, name) <= 100:
            raise SettingsError(f"channel_page.{name}", "must be between 1 and 100")
    _validate_community(s.community)
    _validate_home(s.history, s.recommendations)
    _validate_points(s.points)
    _validate_clips(s.clips, s.hls)
    _validate_replay(s.replay)
    _check_positive("downloads.max_concurrent", s.downloads.max_concurrent)
    if s.downloads.max_per_address < 0:
        raise SettingsError("downloads.max_per_address", "must be 0 (no cap) or more")
    if not 16 <= s.downloads.read_kb <= 65536:
        raise SettingsError("downloads.read_kb", "must be between 16 and 65536 KiB")
    if s.downloads.plan_cache_seconds < 0 or s.downloads.plan_cache_mb < 0:
        raise SettingsError("downloads.plan_cache_seconds", "plan cache limits must be 0 or more")
    _validate_webhooks(s.webhooks)
    _validate_restream(s.restream)
    _validate_videos(s.videos)
    _validate_analytics(s.analytics)
    _validate_notifications(s.notifications, s.email)
    _validate_cluster(s)
    _validate_engagement(s.polls, s.reactions)
    if not 0 <= s.database.inline_read_ms <= 100:
        raise SettingsError(
            "database.inline_read_ms", "must be 0 (every statement on the thread) to 100"
        )
    if not 0 <= s.memory.malloc_arena_max <= 1024:
        raise SettingsError("memory.malloc_arena_max", "must be 0 (glibc's default) to 1024")
    if not 0 <= s.memory.gc_young_threshold <= 10_000_000:
        raise SettingsError("memory.gc_young_threshold", "must be 0 (Python's default) to 10000000")
    return s


def _validate_community(c: CommunitySettings) -> None:
    if not 1 <= c.max_topics <= 100:
        raise SettingsError("community.max_topics", "must be between 1 and 100")
    if not 1 <= c.page_max <= 500:
        raise SettingsError("community.page_max", "must be between 1 and 500")
    if not 1 <= c.page_size <= c.page_max:
        raise SettingsError("community.page_size", "must be between 1 and community.page_max")
    if not 1 <= c.unread_cap <= 10_000:
        raise SettingsError("community.unread_cap", "must be between 1 and 10000")


def _validate_chat(c: ChatSettings) -> None:
    for name in (
        "max_length",
        "tick",
        "history",
        "history_page_max",
        "send_queue_bytes",
        "max_message_bytes",
        "rate_limit_messages",
        "rate_limit_window",
        "max_timeout_seconds",
        "max_slow_mode_seconds",
        "max_filter_words",
        "big_room",
        "presence_interval",
        "frame_budget",
        "frame_window",
        "recheck_interval",
        "typing_interval",
        "typing_flush",
        "typing_ttl",
        "typing_max_room",
        "badge_cache_size",
    ):
        _check_positive(f"chat.{name}", getattr(c, name))
    for name in ("heartbeat", "idle_timeout", "mute_seconds"):
        if getattr(c, name) < 0:
            raise SettingsError(f"chat.{name}", "must be 0 (off) or a number of seconds")
    if c.max_message_bytes < 4 * c.max_length:
        raise SettingsError(
            "chat.max_message_bytes",
            "must hold a message of chat.max_length characters (4 bytes each)",
        )
    if c.bus != "memory" and not re.fullmatch(r"(redis|rediss|unix)://\S+", c.bus):
        raise SettingsError(
            "chat.bus", 'must be "memory" or a Redis URL such as redis://127.0.0.1:6379/0'
        )


def _validate_raids(r: RaidSettings) -> None:
    for name in ("after_end_seconds", "cooldown_seconds"):
        if getattr(r, name) < 0:
            raise SettingsError(f"raids.{name}", "must be 0 or a number of seconds")
    for name in ("targets_max", "history_max"):
        if not 1 <= getattr(r, name) <= 500:
            raise SettingsError(f"raids.{name}", "must be between 1 and 500")


def _validate_notifications(n: NotificationsSettings, e: EmailSettings) -> None:
    for name in (
        "fanout_batch_size",
        "fanout_concurrency",
        "retention_days",
        "prune_interval",
        "page_max",
        "page_size",
        "poll_interval",
        "recount_interval",
        "max_streams_per_user",
        "max_streams",
        "heartbeat",
        "send_buffer_bytes",
        "write_timeout",
    ):
        _check_positive(f"notifications.{name}", getattr(n, name))
    if n.renotify_after < 0:
        raise SettingsError("notifications.renotify_after", "must be 0 (off) or seconds")
    if n.page_size > n.page_max:
        raise SettingsError("notifications.page_size", "must not exceed notifications.page_max")
    if not 0 <= e.smtp_port <= 65535:
        raise SettingsError("email.smtp_port", f"must be a TCP port 0-65535, got {e.smtp_port}")
    for name in (
        "smtp_timeout",
        "digest_interval",
        "send_interval",
        "batch_size",
        "digest_max_items",
        "claim_seconds",
    ):
        _check_positive(f"email.{name}", getattr(e, name))
    if e.smtp_host and "@" not in e.from_address:
        raise SettingsError("email.from_address", "must be an email address")


def _validate_analytics(a: AnalyticsSettings) -> None:
    for name in (
        "sample_interval",
        "activity_lag",
        "watch_flush_interval",
        "rollup_interval",
        "raw_retention_days",
        "series_step",
        "series_max_points",
        "max_tracked_sessions",
        "top_streams",
        "top_clips",
    ):
        _check_positive(f"analytics.{name}", getattr(a, name))
    if a.hourly_retention_days < 7:
        raise SettingsError(
            "analytics.hourly_retention_days", "must be at least 7 (the 7-day view reads hours)"
        )
    if a.raw_retention_days < 2:
        raise SettingsError(
            "analytics.raw_retention_days",
            "must be at least 2 (after a restart the rollups re-read the last day)",
        )


def _validate_videos(v: VideoSettings) -> None:
    if v.retention_days < 0 or v.retention_max_gb < 0:
        raise SettingsError("videos.retention_days", "retention limits must be 0 (none) or more")
    _check_positive("videos.retention_interval", v.retention_interval)
    _check_positive("videos.private_link_seconds", v.private_link_seconds)
    if not 1 <= v.page_size <= 1000:
        raise SettingsError("videos.page_size", "must be between 1 and 1000")


def _validate_restream(r: RestreamSettings) -> None:
    for name in (
        "max_per_channel",
        "max_url_length",
        "max_key_length",
        "connect_timeout",
        "setup_timeout",
        "stall_timeout",
        "backoff_base",
        "backoff_max",
        "stable_after",
        "refresh_interval",
        "queue_size",
        "write_buffer",
        "max_buffered",
    ):
        _check_positive(f"restream.{name}", getattr(r, name))
    if r.backoff_max < r.backoff_base:
        raise SettingsError("restream.backoff_max", "must not be less than restream.backoff_base")
    if r.max_url_length > 1024 or r.max_key_length > 512:
        raise SettingsError("restream.max_url_length", "the columns hold 1024 and 512 characters")


def _validate_webhooks(w: WebhookSettings) -> None:
    for name in (
        "timeout",
        "max_attempts",
        "backoff_base",
        "backoff_max",
        "max_concurrent",
        "poll_interval",
        "max_response_bytes",
        "max_per_channel",
        "deliveries_shown",
        "deliveries_page_max",
        "retention_days",
    ):
        _check_positive(f"webhooks.{name}", getattr(w, name))
    if w.backoff_max < w.backoff_base:
        raise SettingsError("webhooks.backoff_max", "must not be less than webhooks.backoff_base")
    if not 16 <= w.max_url_length <= 2048:
        raise SettingsError("webhooks.max_url_length", "must be between 16 and 2048")


def _validate_replay(r: ReplaySettings) -> None:
    for name in ("chat_window_seconds", "chat_page_size", "preview_interval"):
        _check_positive(f"replay.{name}", getattr(r, name))
    if r.chat_window_seconds > r.chat_window_max:
        raise SettingsError("replay.chat_window_seconds", "must not exceed replay.chat_window_max")
    if r.chat_page_size > r.chat_page_max:
        raise SettingsError("replay.chat_page_size", "must not exceed replay.chat_page_max")
    if not 1 <= r.chat_page_max <= 10000:
        raise SettingsError("replay.chat_page_max", "must be between 1 and 10000")
    if not 16 <= r.preview_width <= 640:
        raise SettingsError("replay.preview_width", "must be between 16 and 640 pixels")
    for name in ("preview_columns", "preview_rows"):
        if not 1 <= getattr(r, name) <= 50:
            raise SettingsError(f"replay.{name}", "must be between 1 and 50")
    if not 1 <= r.preview_quality <= 95:
        raise SettingsError("replay.preview_quality", "must be between 1 and 95")
    if not 1 <= r.preview_max_thumbnails <= 1_000_000:
        raise SettingsError("replay.preview_max_thumbnails", "must be between 1 and 1000000")
    if r.preview_concurrency < 0:
        raise SettingsError("replay.preview_concurrency", "must be 0 (no previews) or more")


def _validate_clips(c: ClipSettings, h: HlsSettings) -> None:
    for name in (
        "live_seconds",
        "dvr_seconds",
        "min_seconds",
        "max_seconds",
        "rate_window",
        "draft_hours",
        "prune_interval",
    ):
        _check_positive(f"clips.{name}", getattr(c, name))
    for name in ("rate_limit", "concurrent_cuts", "top_clips"):
        _check_positive(f"clips.{name}", getattr(c, name))
    if c.min_seconds > c.max_seconds:
        raise SettingsError("clips.min_seconds", "must not exceed clips.max_seconds")
    if c.dvr_seconds < c.live_seconds + 2 * h.segment_duration:
        raise SettingsError(
            "clips.dvr_seconds", "must be at least clips.live_seconds plus two hls segments"
        )


def _validate_points(p: PointsSettings) -> None:
    for name in (
        "max_rate",
        "chat_bonus_window",
        "heartbeat_interval",
        "media_window",
        "flush_interval",
        "max_tracked",
        "max_rewards",
        "max_cost",
        "max_text",
        "queue_size",
        "min_window",
        "max_stake",
        "publish_interval",
    ):
        _check_positive(f"points.{name}", getattr(p, name))
    for name in ("watch_rate", "follow_bonus", "chat_bonus"):
        if not 0 <= getattr(p, name) <= p.max_rate:
            raise SettingsError(f"points.{name}", "must be between 0 and points.max_rate")
    if p.session_gap < p.heartbeat_interval:
        raise SettingsError("points.session_gap", "must not be less than heartbeat_interval")
    if p.max_window < p.min_window:
        raise SettingsError("points.max_window", "must not be less than points.min_window")
    if p.max_cooldown < 0:
        raise SettingsError("points.max_cooldown", "must be 0 or more seconds")


def _validate_home(h: HistorySettings, r: RecommendationSettings) -> None:
    for name in (
        "heartbeat_interval",
        "flush_interval",
        "max_tracked",
        "max_tracked_per_user",
        "page_size",
        "page_max",
    ):
        _check_positive(f"history.{name}", getattr(h, name))
    if h.session_gap < h.heartbeat_interval:
        raise SettingsError("history.session_gap", "must not be less than heartbeat_interval")
    if h.page_size > h.page_max:
        raise SettingsError("history.page_size", "must not exceed history.page_max")
    for name in (
        "live_cache_seconds",
        "max_live",
        "user_cache_entries",
        "max_follows_read",
        "max_history_read",
        "max_blocks_read",
        "coview_sample",
        "coview_refresh",
        "coview_neighbours",
        "coview_channels_per_user",
        "signals_used",
        "candidates_per_signal",
        "following_max",
        "recommended_max",
        "popular_max",
        "new_creators_max",
        "popular_per_category",
        "new_creator_days",
    ):
        _check_positive(f"recommendations.{name}", getattr(r, name))
    for name in ("user_cache_seconds", "follows_cache_seconds"):
        if getattr(r, name) < 0:
            raise SettingsError(f"recommendations.{name}", "must be 0 (off) or seconds")


def _validate_browse(b: BrowseSettings) -> None:
    for name, low, high in (
        ("categories_max", 1, 1000),
        ("live_per_page", 1, 500),
        ("live_scan_max", 1, 10_000),
        ("past_per_page", 0, 200),
        ("following_max", 1, 1000),
    ):
        if not low <= getattr(b, name) <= high:
            raise SettingsError(f"browse.{name}", f"must be between {low} and {high}")
    if b.live_scan_max < b.live_per_page:
        raise SettingsError("browse.live_scan_max", "must not be less than browse.live_per_page")
    if not 0 <= b.cache_seconds <= 60:
        raise SettingsError("browse.cache_seconds", "must be between 0 and 60")
    if not 1 <= b.cache_entries <= 100_000:
        raise SettingsError("browse.cache_entries", "must be between 1 and 100000")
    if not 0 <= b.page_cache_seconds <= 60:
        raise SettingsError("browse.page_cache_seconds", "must be between 0 and 60")
    if not 1 <= b.page_cache_entries <= 10_000:
        raise SettingsError("browse.page_cache_entries", "must be between 1 and 10000")


def _validate_engagement(p: PollSettings, r: ReactionSettings) -> None:
    for name in ("max_question", "max_option", "min_duration", "tally_interval", "list_limit"):
        _check_positive(f"polls.{name}", getattr(p, name))
    if not p.min_duration <= p.default_duration <= p.max_duration:
        raise SettingsError(
            "polls.default_duration", "must be between polls.min_duration and polls.max_duration"
        )
    if not 1 <= len(r.emojis.split()) <= 16 or any(len(e) > 8 for e in r.emojis.split()):
        raise SettingsError("reactions.emojis", "must be 1 to 16 space-separated emojis")
    for name in ("tick", "rate_limit", "rate_window"):
        _check_positive(f"reactions.{name}", getattr(r, name))


def _validate_cluster(s: Settings) -> None:
    """A cluster node needs engines every node shares: PostgreSQL for durable state, Redis for
    leases and counts, and (checked by the object store) a bucket rather than a local disk."""
    c, o = s.cluster, s.objects
    if c.role not in ("all", "origin", "web"):
        raise SettingsError("cluster.role", f'must be "all", "origin" or "web", got {c.role!r}')
    if c.redis_url and not re.fullmatch(r"(redis|rediss|unix)://\S+", c.redis_url):
        raise SettingsError(
            "cluster.redis_url", "must be a Redis URL such as redis://127.0.0.1:6379/0"
        )
    if c.role != "all":
        if not c.redis_url:
            raise SettingsError("cluster.redis_url", f"role {c.role!r} needs Redis (cluster mode)")
        if not s.effective_database_url.startswith("postgresql"):
            raise SettingsError("database_url", f"role {c.role!r} needs PostgreSQL (cluster mode)")
        if not c.secret_key_file:
            raise SettingsError(
                "cluster.secret_key_file",
                f"role {c.role!r} needs the secret every node shares: a file of 64 hex digits "
                "(make it once with `openssl rand -hex 32`, copy it to each node)",
            )
    if c.secret_key_file and not Path(c.secret_key_file).is_absolute():
        raise SettingsError("cluster.secret_key_file", "must be an absolute path")
    if c.advertise_url and not re.fullmatch(r"https?://[^/\s]+/?", c.advertise_url):
        raise SettingsError("cluster.advertise_url", "must be http(s)://host[:port]")
    if c.node_id and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", c.node_id):
        raise SettingsError("cluster.node_id", "1-64 letters, digits, '.', '_' or '-'")
    _check_positive("cluster.lease_seconds", c.lease_seconds)
    _check_positive("cluster.renew_interval", c.renew_interval)
    for name in ("proxy_timeout", "proxy_max_requests", "route_cache_seconds", "proxy_max_body_mb"):
        _check_positive(f"cluster.{name}", getattr(c, name))
    if c.renew_interval * 2 > c.lease_seconds:
        raise SettingsError(
            "cluster.renew_interval", "must be at most half of cluster.lease_seconds"
        )
    _check_positive("cluster.counts_ttl", c.counts_ttl)
    _check_positive("cluster.counts_refresh", c.counts_refresh)
    if c.redis_url and c.counts_ttl < 2 * max(c.counts_refresh, s.hls.viewer_update_interval):
        raise SettingsError(
            "cluster.counts_ttl",
            "must be at least twice cluster.counts_refresh and hls.viewer_update_interval "
            "(a live node's entries must not expire between two refreshes)",
        )
    if o.backend not in ("local", "s3"):
        raise SettingsError("objects.backend", f'must be "local" or "s3", got {o.backend!r}')
    if o.backend == "s3" and not o.bucket:
        raise SettingsError("objects.bucket", 'objects.backend = "s3" needs a bucket')
    for name in ("endpoint_url", "public_url"):
        value = getattr(o, name)
        if value and not re.fullmatch(r"https?://\S+", value):
            raise SettingsError(f"objects.{name}", "must be an http(s):// URL")
    for name in (
        "upload_concurrency",
        "upload_queue",
        "retry_initial",
        "timeout",
        "journal_segments",
    ):
        _check_positive(f"objects.{name}", getattr(o, name))
    if o.retry_max < o.retry_initial:
        raise SettingsError("objects.retry_max", "must be at least objects.retry_initial")
    if o.retry_for < 0:
        raise SettingsError("objects.retry_for", "must be 0 (no retries) or a number of seconds")
    for name in ("copies_max_mb", "copies_max_age"):
        if getattr(o, name) < 0:
            raise SettingsError(f"objects.{name}", "must be 0 or more")
    _check_positive("objects.copies_sweep", o.copies_sweep)
    if o.part_size < 5 << 20:
        raise SettingsError("objects.part_size", "must be at least 5 MiB (S3's smallest part)")
    if o.prefix and not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/?", o.prefix):
        raise SettingsError("objects.prefix", "letters, digits, '_', '.', '-' parts split by '/'")


def _validate_proxy_protocol(r: RtmpSettings) -> None:
    """rtmp.proxy_*: the trusted networks parse, the header's bounds fit a real header."""
    for item in r.proxy_trusted.split(","):
        if not item.strip():
            continue
        try:
            ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            raise SettingsError(
                "rtmp.proxy_trusted", f"{item.strip()!r} is not a network (e.g. 10.0.0.0/8)"
            ) from None
    _check_positive("rtmp.proxy_header_timeout", r.proxy_header_timeout)
    if not 232 <= r.proxy_header_max_size <= 65551:
        raise SettingsError(
            "rtmp.proxy_header_max_size", "must be between 232 and 65551 (bytes of a v2 header)"
        )


def _validate_rtmps(r: RtmpSettings) -> None:
    """The TLS listener's port, and its pair loaded as ingest will load it (files exist, are
    readable PEM, the key is the certificate's)."""
    if not 0 <= r.tls_port <= 65535:
        raise SettingsError("rtmp.tls_port", f"must be 0 (off) or a TCP port, got {r.tls_port}")
    if not r.tls_port:
        return
    if r.tls_port == r.port:
        raise SettingsError("rtmp.tls_port", "must differ from rtmp.port")
    try:
        load_server_tls(r.tls_cert_file, r.tls_key_file)
    except TlsFilesError as exc:
        raise SettingsError(exc.key, exc.reason) from None


def metrics_token(m: MetricsSettings) -> str:
    """The bearer token /metrics requires ("" for none): metrics.token, or the first line of
    metrics.token_file (read when the settings load, so a bad file stops the start)."""
    key, token = "metrics.token", m.token
    if m.token_file:
        if m.token:
            raise SettingsError(
                "metrics.token_file", "set metrics.token or metrics.token_file, not both"
            )
        key = "metrics.token_file"
        try:
            lines = Path(m.token_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(key, f"cannot read the token file: {exc}") from None
        token = lines[0].strip() if lines else ""
    if (m.token or m.token_file) and (len(token) < 16 or not token.isprintable() or " " in token):
        raise SettingsError(key, "the token must be at least 16 printable characters, no spaces")
    return token


def _validate_metrics(m: MetricsSettings) -> None:
    metrics_token(m)
    for network in (n.strip() for n in m.allow.split(",")):
        if not network:
            continue
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise SettingsError(
                "metrics.allow", f"expected networks like 10.0.0.0/8 or ::1/128, got {network!r}"
            ) from None


class _EnvStr(str):
    """A value from the environment: text that may be parsed, unlike a TOML string."""


def _coerce(key: str, typ: Any, value: Any) -> Any:
    """Turn a TOML or environment value into the field's type, or say why not."""
    from_env = isinstance(value, _EnvStr)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if from_env and value.lower() in ("1", "true", "yes", "on"):
            return True
        if from_env and value.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(key, f"expected true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise SettingsError(key, f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if from_env:
            try:
                return int(value.replace("_", ""), 0)
            except ValueError:
                pass
        raise SettingsError(key, f"expected an integer, got {value!r}")
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_env:
            try:
                return float(value)
            except ValueError:
                pass
        raise SettingsError(key, f"expected a number, got {value!r}")
    if typ is str:
        if isinstance(value, str):
            return str(value)
        raise SettingsError(key, f"expected a string, got {value!r}")
    if typ is Path:
        if isinstance(value, (str, Path)):
            return Path(str(value))
        raise SettingsError(key, f"expected a path, got {value!r}")
    if typing.get_origin(typ) is typing.Literal:
        choices = typing.get_args(typ)
        if value in choices:
            return str(value)
        raise SettingsError(key, f"must be one of {', '.join(choices)}, got {value!r}")
    raise SettingsError(key, f"unsupported setting type {typ!r}")


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for name in data:
        if name not in known:
            raise SettingsError(prefix + name, "unknown setting")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SettingsError(prefix + f.name, "is required")
            continue
        key = prefix + f.name
        typ = hints[f.name]
        value = data[f.name]
        if isinstance(typ, type) and dataclasses.is_dataclass(typ):
            if not isinstance(value, Mapping):
                raise SettingsError(key, "expected a table of settings")
            kwargs[f.name] = _build(typ, value, key + ".")
        elif typing.get_origin(typ) is tuple:
            kwargs[f.name] = parse_ladder(value, key)
        else:
            kwargs[f.name] = _coerce(key, typ, value)
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SettingsError(dotted, "is a table, not a value")
        node = child
    node[parts[-1]] = value


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    section_names = {f.name for f in dataclasses.fields(Settings)}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == "AETHEX_CONFIG":
            continue
        value = _EnvStr(value)
        if name in SHORT_ENV:
            _set_dotted(tree, SHORT_ENV[name], value)
            continue
        dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
        if dotted.split(".")[0] not in section_names:
            # Not ours (e.g. a future tool's variable): ignore instead of refusing to start.
            continue
        _set_dotted(tree, dotted, value)
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def load_settings(
    config_path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Load settings from (optional) TOML and the environment, validated."""
    env = os.environ if env is None else env
    path = config_path or env.get("AETHEX_CONFIG") or None
    data: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise SettingsError("config", f"file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError("config", f"{path} is not valid TOML: {exc}") from None
    data = _merge(data, _env_overrides(env))
    return validate(_build(Settings, data, ""))
