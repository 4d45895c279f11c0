"""A relay's added delay, frame by frame: a probe publisher, a probe destination, the match.

What is measured: for each video frame of one probe stream, the time from the moment the probe
sender hands the frame's bytes to the relay's ingest socket to the moment the last byte of that
frame is read by the probe receiver that the relay pushes to. Both run on the same machine in
their own processes and read the same clock (CLOCK_MONOTONIC, ``time.monotonic_ns``), so the
difference is the relay's added delay: its reading, parsing, queueing and writing, plus two
loopback hops. A relay slow to read its ingest socket is counted too (the send time is taken
before ``sendall``, which then waits for it).

How frames are matched, and why not by timestamp alone: a relay may rebase timestamps (ours
starts each destination connection at 0, nginx-rtmp's ``push`` keeps or rebases them), and at
30 fps the millisecond timestamps repeat their pattern every 3 frames (0, 33, 67, 100...), so
"subtract the first frame's timestamp" is off by whole frames when the first frames are dropped
or arrive before the receiver counts them. The sender therefore prepends to each access unit an
H.264 SEI NAL unit (user data unregistered, our UUID) carrying the frame index and its send
time in ASCII digits (no emulation prevention needed). Relays copy the payload unchanged, so
the receiver reads the index back and the match is exact; the timestamps are only checked: on
one connection, received minus sent timestamp must be the same for every frame (reported as
"timestamps consistent").

Pieces, each runnable alone (``python -m benchmarks.lib.rtmp_probe send|receive ...``):

- the sender: a sans-I/O :class:`mediaserver.rtmp.ClientConnection` over a blocking socket, the
  H.264 + AAC packets of an FLV file (demuxed once with PyAV) looped at real-time pace by their
  timestamps; it logs each video frame's index, timestamp, send time and lateness against its
  schedule (a late sender means a busy machine, not a slow relay: the lateness is reported);
- the receiver: :class:`mediaserver.rtmp.ServerConnection` over asyncio, accepting every
  connect and publish, logging each video frame's arrival (JSON lines, flushed every 0.5 s);
- :func:`analyze`: the two logs matched by frame index over a window of send times.

Each runs in its own process so that neither the benchmark's own work nor the other's GIL
delays it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from benchmarks.lib import ROOT
from benchmarks.lib.stats import percentile
from mediaserver.rtmp import (
    ClientConnection,
    ConnectRequested,
    Limits,
    ProtocolError,
    PublishRequested,
    PublishTarget,
    RequestRejected,
    ServerConnection,
    SetupTimedOut,
    VideoFrame,
)

# 16 bytes, no zero byte: no emulation prevention can ever be needed in the SEI.
PROBE_UUID = b"aethex-probe-v1!"
assert len(PROBE_UUID) == 16
_SEI = 6
_USER_DATA_UNREGISTERED = 5


# ---------------------------------------------------------------------------------------------
# The SEI that names each frame


def probe_nal(index: int, sent_ns: int) -> bytes:
    """An SEI NAL unit (user data unregistered) carrying ``index`` and ``sent_ns``, with its
    4-byte AVCC length prefix, to put in front of a frame's NAL units."""
    text = f"{index}:{sent_ns}".encode()
    payload = PROBE_UUID + text
    if len(payload) > 254:
        raise ValueError("probe payload too long")
    nal = bytes((_SEI, _USER_DATA_UNREGISTERED, len(payload))) + payload + b"\x80"
    return len(nal).to_bytes(4, "big") + nal


def find_probe(data: bytes | memoryview, length_size: int = 4) -> tuple[int, int] | None:
    """The (index, sent_ns) of the probe SEI among a frame's length-prefixed NAL units."""
    mv = memoryview(data)
    pos, n = 0, len(mv)
    while pos + length_size <= n:
        size = int.from_bytes(mv[pos : pos + length_size], "big")
        start = pos + length_size
        pos = start + size
        if size < 3 + 16 or pos > n or mv[start] & 0x1F != _SEI:
            continue
        if mv[start + 1] != _USER_DATA_UNREGISTERED:
            continue
        plen = mv[start + 2]
        body = bytes(mv[start + 3 : start + 3 + plen])
        if body[:16] != PROBE_UUID:
            continue
        try:
            index, sent = body[16:].split(b":")
            return int(index), int(sent)
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------------------------------------
# Media to send


@dataclass
class Packet:
    video: bool
    dts: int  # ms
    cto: int  # ms (video)
    keyframe: bool
    data: bytes


@dataclass
class Media:
    """H.264 + AAC in the form RTMP carries them (AVCC NAL units, raw AAC frames)."""

    avcc: bytes
    asc: bytes | None
    packets: list[Packet]
    duration_ms: int  # the loop period: last timestamp plus one frame

    @property
    def length_size(self) -> int:
        return (self.avcc[4] & 3) + 1 if len(self.avcc) > 4 else 4


def load_flv(path: Path) -> Media:
    """Demux an FLV file (H.264 + optional AAC) once with PyAV."""
    import av

    packets: list[Packet] = []
    with av.open(str(path)) as container:
        v = container.streams.video[0]
        a = container.streams.audio[0] if container.streams.audio else None
        avcc = bytes(v.codec_context.extradata or b"")
        asc = bytes(a.codec_context.extradata or b"") if a is not None else None
        for pkt in container.demux():
            if pkt.size == 0 or pkt.dts is None:
                continue
            is_video = pkt.stream.index == v.index
            if not is_video and (a is None or pkt.stream.index != a.index):
                continue
            ms = (pkt.stream.time_base or Fraction(1, 1000)) * 1000
            dts = round(pkt.dts * ms)
            pts = round((pkt.pts if pkt.pts is not None else pkt.dts) * ms)
            packets.append(Packet(is_video, dts, pts - dts, bool(pkt.is_keyframe), bytes(pkt)))
    if not avcc or not any(q.video for q in packets):
        raise ValueError(f"{path}: no H.264 video with an avcC record")
    vts = sorted(q.dts for q in packets if q.video)
    step = (vts[-1] - vts[0]) / max(1, len(vts) - 1)
    first = min(q.dts for q in packets)
    for q in packets:
        q.dts -= first
    # The loop period: after the last packet of either kind, one video frame later, so that
    # timestamps keep rising across the loop.
    return Media(avcc, asc, packets, max(q.dts for q in packets) + round(step))


# ---------------------------------------------------------------------------------------------
# The sender


@dataclass
class Sent:
    index: int
    ts: int  # the RTMP timestamp sent (ms)
    sent_ns: int  # monotonic, just before the frame's bytes went to the socket
    late_ns: int  # how far behind its real-time schedule the sender was for this frame
    keyframe: bool


class _Socket:
    """A blocking socket that also answers the server (acks, pings) between frames."""

    def __init__(self, conn: ClientConnection, target: PublishTarget, timeout: float) -> None:
        self.conn = conn
        self.sock = socket.create_connection((target.host, target.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def setup(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.flush()
        while not self.conn.publishing:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                data = None
            now = time.monotonic()
            events = self.conn.receive_data(data, now) if data else self.conn.handle_timer(now)
            for e in events:
                if isinstance(e, RequestRejected | SetupTimedOut):
                    raise RuntimeError(f"probe publish refused or timed out: {e}")
            if data == b"" or self.conn.closed:
                raise RuntimeError("probe publish: the server closed the connection")
            if now > deadline:
                raise RuntimeError("probe publish: no answer in time")
            self.flush()
        self.sock.settimeout(None)

    def poll(self) -> None:
        """Read what the server sent, without waiting (acknowledgements, pings)."""
        while True:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                raise RuntimeError("probe publish: the server closed the connection")
            self.conn.receive_data(data, time.monotonic())


def publish(
    url: str,
    media: Media,
    seconds: float,
    stop: list[bool] | None = None,
    setup_timeout: float = 15.0,
    log: list[Sent] | None = None,
) -> list[Sent]:
    """Publish ``media`` looped at real-time pace for ``seconds`` (or until ``stop[0]``);
    return a record of every video frame sent (appended to ``log`` as it goes, so a caller
    keeps what was sent when the connection fails)."""
    target = PublishTarget.parse(url)
    conn = ClientConnection(target, now=time.monotonic(), setup_timeout=setup_timeout)
    s = _Socket(conn, target, setup_timeout)
    s.setup(setup_timeout)
    conn.send_video_config("avc1", media.avcc, 0)
    if media.asc:
        conn.send_audio_config("mp4a", media.asc, 0)
    s.flush()
    if log is None:
        log = []
    index = 0
    start = time.monotonic_ns()
    loop = 0
    end = start + int(seconds * 1e9)
    try:
        while not (stop and stop[0]):
            offset = loop * media.duration_ms
            for p in media.packets:
                ts = p.dts + offset
                due = start + ts * 1_000_000
                if due >= end or (stop and stop[0]):
                    return log
                wait = due - time.monotonic_ns()
                if wait > 0:
                    time.sleep(wait / 1e9)
                s.poll()
                if p.video:
                    now = time.monotonic_ns()
                    data = probe_nal(index, now) + p.data
                    conn.send_video("avc1", ts, ts + p.cto, p.keyframe, data)
                    s.flush()
                    log.append(Sent(index, ts, now, max(0, now - due), p.keyframe))
                    index += 1
                else:
                    conn.send_audio("mp4a", ts, p.data)
                    s.flush()
            loop += 1
        return log
    finally:
        try:
            conn.unpublish()
            s.flush()
            s.sock.close()
        except OSError:
            pass


def write_sent(path: Path, log: list[Sent]) -> None:
    with open(path, "w") as f:
        for r in log:
            f.write(
                f'{{"i": {r.index}, "ts": {r.ts}, "sent": {r.sent_ns}, "late": {r.late_ns}, '
                f'"key": {"true" if r.keyframe else "false"}}}\n'
            )


def read_sent(path: Path) -> list[Sent]:
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            out.append(Sent(r["i"], r["ts"], r["sent"], r["late"], r["key"]))
    return out


# ---------------------------------------------------------------------------------------------
# The receiver


@dataclass
class Arrival:
    destination: str  # "app/name" of the publish that carried it
    connection: int
    ts: int
    index: int | None  # None: no probe SEI in the frame
    sent_ns: int | None
    arrived_ns: int


class _ReceiverConn(asyncio.Protocol):
    def __init__(self, receiver: Receiver, number: int) -> None:
        self.receiver = receiver
        self.number = number
        self.conn = ServerConnection(Limits())
        self.transport: asyncio.Transport | None = None
        self.app = ""
        self.names: dict[int, str] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        arrived = time.monotonic_ns()
        try:
            events = self.conn.receive_data(data, arrived / 1e9)
            self._handle(events, arrived)
        except ProtocolError:
            if self.transport is not None:
                self.transport.abort()
            return
        out = self.conn.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    def _handle(self, events: list, arrived: int) -> None:
        for e in events:
            if type(e) is VideoFrame:
                probe = find_probe(e.data)
                name = f"{self.app}/{self.names.get(e.stream_id, '')}"
                index, sent = probe if probe is not None else (None, None)
                self.receiver.record(Arrival(name, self.number, e.dts, index, sent, arrived))
            elif isinstance(e, ConnectRequested):
                self.app = e.app
                self._handle(self.conn.accept_connect(), arrived)
            elif isinstance(e, PublishRequested):
                self.names[e.stream_id] = e.name
                self.conn.accept_publish(e.stream_id)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.conn.close()
        self.receiver.flush()


class Receiver:
    """The probe destination: accepts every publish, logs each video frame's arrival."""

    def __init__(self, out: Path) -> None:
        self.file = open(out, "w")
        self.connections = 0

    def factory(self) -> _ReceiverConn:
        self.connections += 1
        return _ReceiverConn(self, self.connections)

    def record(self, a: Arrival) -> None:
        self.file.write(
            json.dumps(
                {
                    "d": a.destination,
                    "c": a.connection,
                    "ts": a.ts,
                    "i": a.index,
                    "sent": a.sent_ns,
                    "arr": a.arrived_ns,
                }
            )
            + "\n"
        )

    def flush(self) -> None:
        if not self.file.closed:
            self.file.flush()

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


async def serve(port: int, out: Path, ready: asyncio.Event | None = None) -> None:
    """Run the receiver on 127.0.0.1:``port`` until cancelled (or SIGTERM when run alone)."""
    loop = asyncio.get_running_loop()
    receiver = Receiver(out)
    server = await loop.create_server(receiver.factory, "127.0.0.1", port)
    done = asyncio.Event()
    if ready is None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        print("listening", flush=True)
    else:
        ready.set()

    async def flusher() -> None:
        while True:
            await asyncio.sleep(0.5)
            receiver.flush()

    task = loop.create_task(flusher())
    try:
        await done.wait()
    finally:
        task.cancel()
        server.close()
        receiver.close()


def read_arrivals(path: Path) -> list[Arrival]:
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a line being written
            out.append(Arrival(r["d"], r["c"], r["ts"], r["i"], r["sent"], r["arr"]))
    return out


# ---------------------------------------------------------------------------------------------
# The match


@dataclass
class Delays:
    """One destination's delays (or several pooled) over the frames sent in a window."""

    destination: str
    sent: int  # probe frames sent in the window
    matched: int  # of those, received (once) at the destination
    delays_ms: list[float] = field(default_factory=list)
    consistent: int = 0  # matched frames whose timestamp offset is the connection's usual one
    connections: int = 0
    unnamed: int = 0  # frames received without a probe SEI

    def p(self, q: float) -> float:
        return percentile(self.delays_ms, q)

    @property
    def max(self) -> float:
        return max(self.delays_ms) if self.delays_ms else float("nan")

    def summary(self) -> str:
        if not self.delays_ms:
            return f"no frame matched ({self.sent} sent)"
        ts = (
            "consistent"
            if self.consistent == self.matched
            else (f"INCONSISTENT for {self.matched - self.consistent}")
        )
        return (
            f"p50 {self.p(50):6.1f} ms, p95 {self.p(95):6.1f} ms, max {self.max:6.1f} ms; "
            f"{self.matched}/{self.sent} frames matched, timestamps {ts}"
        )


def analyze(
    sent: list[Sent],
    arrivals: list[Arrival],
    t0_ns: int | None = None,
    t1_ns: int | None = None,
) -> dict[str, Delays]:
    """Per destination: delays of the frames sent in [t0, t1) (all without bounds), matched
    by the index in their SEI; each connection's timestamp offset checked."""
    lo = t0_ns if t0_ns is not None else -math.inf
    hi = t1_ns if t1_ns is not None else math.inf
    window = {s.index: s for s in sent if lo <= s.sent_ns < hi}
    by_index = {s.index: s for s in sent}
    per: dict[str, list[Arrival]] = defaultdict(list)
    for a in arrivals:
        per[a.destination].append(a)
    out = {}
    for dest, items in sorted(per.items()):
        d = Delays(dest, len(window), 0)
        d.connections = len({a.connection for a in items})
        d.unnamed = sum(a.index is None for a in items)
        offsets: dict[int, Counter[int]] = defaultdict(Counter)
        for a in items:
            if a.index is not None and a.index in by_index:
                offsets[a.connection][a.ts - by_index[a.index].ts] += 1
        usual = {c: cnt.most_common(1)[0][0] for c, cnt in offsets.items()}
        seen: set[int] = set()
        for a in items:
            s = window.get(a.index) if a.index is not None else None
            if s is None or a.index in seen:
                continue
            seen.add(s.index)
            d.matched += 1
            d.delays_ms.append((a.arrived_ns - s.sent_ns) / 1e6)
            d.consistent += a.ts - s.ts == usual.get(a.connection)
        out[dest] = d
    return out


def pooled(name: str, parts: list[Delays]) -> Delays:
    """Several destinations' delays as one sample (frames counted once per destination)."""
    d = Delays(name, sum(p.sent for p in parts), sum(p.matched for p in parts))
    for p in parts:
        d.delays_ms += p.delays_ms
        d.consistent += p.consistent
        d.connections += p.connections
        d.unnamed += p.unnamed
    return d


def lateness_ms(sent: list[Sent], t0_ns: int | None = None, t1_ns: int | None = None) -> float:
    """The sender's p95 lateness against its schedule over the window (a busy machine)."""
    lo = t0_ns if t0_ns is not None else -math.inf
    hi = t1_ns if t1_ns is not None else math.inf
    return percentile([s.late_ns / 1e6 for s in sent if lo <= s.sent_ns < hi], 95)


# ---------------------------------------------------------------------------------------------
# Processes


def start_receiver(port: int, out: Path, timeout: float = 20.0) -> subprocess.Popen[bytes]:
    """The receiver in its own process; returns once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.lib.rtmp_probe", "receive", str(port), str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "listening" (empty if it died)
    if b"listening" not in line:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the probe receiver did not start on port {port}")
    return proc


def start_sender(url: str, source: Path, seconds: float, log: Path) -> subprocess.Popen[bytes]:
    """The sender in its own process; it writes ``log`` when it ends (SIGTERM ends it)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.lib.rtmp_probe",
            "send",
            url,
            str(source),
            "--seconds",
            str(seconds),
            "--log",
            str(log),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> str:
    """SIGTERM, wait (SIGKILL after ``timeout``); return the tail of its stderr, if piped."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    text = (err or b"").decode(errors="replace").strip()
    return text.splitlines()[-1] if text else ""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("receive", help="accept publishes on 127.0.0.1:PORT, log frame arrivals")
    r.add_argument("port", type=int)
    r.add_argument("out", type=Path)
    s = sub.add_parser("send", help="publish an FLV's H.264+AAC looped in real time, logged")
    s.add_argument("url")
    s.add_argument("source", type=Path)
    s.add_argument("--seconds", type=float, default=60.0)
    s.add_argument("--log", type=Path, required=True)
    m = sub.add_parser("match", help="print the delays of a send log against a receive log")
    m.add_argument("sent", type=Path)
    m.add_argument("arrivals", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "receive":
        asyncio.run(serve(args.port, args.out))
    elif args.cmd == "send":
        stopped = [False]

        def on_term(*_: object) -> None:
            stopped[0] = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        sent_log: list[Sent] = []
        try:
            publish(args.url, load_flv(args.source), args.seconds, stopped, log=sent_log)
        finally:
            write_sent(args.log, sent_log)
    else:
        sent = read_sent(args.sent)
        for d in analyze(sent, read_arrivals(args.arrivals)).values():
            print(f"{d.destination}: {d.summary()}")


if __name__ == "__main__":
    main()
