"""Coverage-guided fuzzing of the sans-I/O RTMP core (atheris, i.e. libFuzzer, for CPython).

Five targets share one libFuzzer run; an input's first byte picks the target:

    handshake   ServerHandshake.receive_data (C0+C1+C2)
    chunk       ChunkReader.feed, the input fed whole or in 4096/1460/512-byte reads; while
                fuzzing, the compiled reader and the pure-Python reference side by side, any
                difference in messages or errors being a crash (coverage comes from the
                reference, whose branches the C code follows one for one)
    amf0        amf0.decode_all of a command or data message body
    media       parse_video / parse_audio / parse_audio_specific_config (FLV and E-RTMP bodies)
    connection  ServerConnection fed a client's byte stream, connect and publish accepted

The seeds are captured at run time: a loopback server in this script (answering with the
project's own ServerConnection) records every byte that an ffmpeg CLI publisher (H.264 + AAC)
and two PyAV publishers (HEVC over Enhanced RTMP, and H.264, both with AAC) send it. Those
streams, cut into the five targets' inputs (the handshake, the chunk stream, each AMF0 body,
each media body), seed the corpus.

Goals (issue 10): 10 million inputs; only ProtocolError escapes (one that wraps an unexpected
exception, "internal error ...", is a crash too); no input takes more than 10 ms. The coverage
instrumentation makes the code some 100 times slower, so each input also runs through a second,
uninstrumented copy of the package, and that run is the one timed, in CPU time of the thread
(time.thread_time_ns): the figures are what the server would spend, and other processes on a
busy machine do not count. Inputs over --max-ms are saved and re-timed at the end (best of 5),
so a garbage collection that happened to fall on an input is not reported as a slow input. The
summary gives inputs, execs/s, max and p99.9 time, coverage (libFuzzer's
``cov``/``ft``), crashes and slow inputs; the exit status is 1 if any crash or confirmed slow
input was found.

    .venv/bin/python benchmarks/fuzz_rtmp.py                     # the full run: 10 M inputs
    .venv/bin/python benchmarks/fuzz_rtmp.py --runs 5000         # a short sample (the test's)
    .venv/bin/python benchmarks/fuzz_rtmp.py --seconds 600 --workers 2 --out /tmp/fuzz-out

Each worker is a separate process running libFuzzer (``--workers`` of them share the corpus
directory, which libFuzzer re-reads, and split the inputs). ``--json`` prints the summary as
one JSON object instead of text.
"""

from __future__ import annotations

import argparse
import array
import gc
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGETS = ("handshake", "chunk", "amf0", "media", "connection")
# libFuzzer -max_len; seeds are cut to it. 16 KiB holds a capture's handshake, commands,
# metadata, codec configs and first frames (the captures are 160x120); longer inputs only
# repeat the same parsing and cost instrumented time (about 1 us per byte).
MAX_LEN = 16384
READ_SIZES = (0, 4096, 1460, 512)  # 0: the whole input at once
HIST_BUCKETS = 100_000  # per-input time histogram, 1 us buckets up to 100 ms
MAX_SAVED_SLOW = 200
HANDSHAKE_BYTES = 1 + 2 * 1536


# ---------------------------------------------------------------------------------------------
# The targets (the same code drives the fuzzer and the re-timing of slow inputs)


def make_targets(rtmp: Any, differential: bool = False) -> list[Callable[[bytes], None]]:
    """One function per TARGETS entry, taking the input without its selector byte. ``rtmp``
    is the mediaserver.rtmp package (instrumented in the fuzz workers, plain when re-timing).
    ``differential``: the chunk target also runs the reference reader and compares."""
    limits = rtmp.Limits()
    zeros: Callable[[int], bytes] = bytes

    def pieces(data: bytes) -> list[bytes]:
        if not data:
            return []
        step = READ_SIZES[data[0] % len(READ_SIZES)] or len(data)
        body = data[1:]
        return [body[i : i + step] for i in range(0, len(body), step)]

    def handshake(data: bytes) -> None:
        hs = rtmp.ServerHandshake(random_bytes=zeros)
        hs.receive_data(data)
        hs.data_to_send()

    def chunk(data: bytes) -> None:
        reader = rtmp.ChunkReader(limits)
        for piece in pieces(data):
            reader.feed(piece)

    def chunk_against_reference(data: bytes) -> None:
        ours = rtmp.chunk.ChunkReader(limits)
        ref = rtmp.chunk.PyChunkReader(limits)
        for piece in pieces(data):
            try:
                want: Any = ref.feed(piece)
            except rtmp.ProtocolError as exc:
                want = str(exc)
            try:
                got: Any = ours.feed(piece)
            except rtmp.ProtocolError as exc:
                got = str(exc)
            if got != want or ours.buffered != ref.buffered:
                raise AssertionError(f"compiled reader differs: {got!r:.200} != {want!r:.200}")
            if isinstance(want, str):
                raise rtmp.ProtocolError(want)

    def amf0(data: bytes) -> None:
        rtmp.amf0.decode_all(data, max_depth=limits.max_amf_depth)

    def media(data: bytes) -> None:
        if not data:
            return
        kind, body = data[0] % 3, data[1:]
        if kind == 0:
            rtmp.parse_video(1, 0, body)
        elif kind == 1:
            rtmp.parse_audio(1, 0, body)
        else:
            rtmp.parse_audio_specific_config(body)

    def connection(data: bytes) -> None:
        conn = rtmp.ServerConnection(limits)
        for piece in pieces(data):
            events = list(conn.receive_data(piece))
            while events:
                event = events.pop()
                if isinstance(event, rtmp.ConnectRequested):
                    if conn.state is rtmp.ConnectionState.CONNECT_PENDING:
                        events += conn.accept_connect()
                elif isinstance(event, rtmp.PublishRequested):
                    conn.accept_publish(event.stream_id)
            conn.data_to_send()
            if conn.closed:
                return

    chunk_target = chunk_against_reference if differential else chunk
    return [handshake, chunk_target, amf0, media, connection]


def run_one(targets: list[Callable[[bytes], None]], protocol_error: type, data: bytes) -> str:
    """Run one input; '' if it ended well (events or ProtocolError), else what went wrong."""
    if not data:
        return ""
    try:
        targets[data[0] % len(targets)](data[1:])
    except protocol_error as exc:
        if "internal error" in str(exc):
            return f"wrapped {exc}"
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}: {exc}"
    return ""


# ---------------------------------------------------------------------------------------------
# Capturing real publishers


class CaptureServer:
    """A loopback RTMP server that answers with the project's own core and records every byte
    each client sends, so real encoders get far enough to send media."""

    def __init__(self) -> None:
        from mediaserver import rtmp

        self._rtmp = rtmp
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.captures: list[bytes] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        rtmp = self._rtmp
        conn = rtmp.ServerConnection(rtmp.Limits())
        received: list[bytes] = []
        client.settimeout(60)
        with client:
            while True:
                try:
                    data = client.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                received.append(data)
                try:
                    events = list(conn.receive_data(data))
                except rtmp.ProtocolError:
                    break
                while events:
                    event = events.pop()
                    if isinstance(event, rtmp.ConnectRequested):
                        events += conn.accept_connect()
                    elif isinstance(event, rtmp.PublishRequested):
                        conn.accept_publish(event.stream_id)
                out = conn.data_to_send()
                if out:
                    try:
                        client.sendall(out)
                    except OSError:
                        break
        with self._lock:
            self.captures.append(b"".join(received))

    def close(self) -> None:
        self.sock.close()


def _pyav(codec: str, seconds: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.lib.publisher",
        "{url}",
        "--codec",
        codec,
        "--seconds",
        str(seconds),
        "--size",
        "160x120",
        "--picture",
        "flat",
        "--bitrate",
        "0",
    ]


def capture_publishers(seconds: float) -> dict[str, bytes]:
    """What an ffmpeg CLI publisher and two PyAV publishers send, keyed by publisher."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("fuzz_rtmp: the ffmpeg CLI is needed to capture a real publisher")
    runs: dict[str, list[str]] = {
        "ffmpeg-h264-aac": [
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "15",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-f",
            "flv",
            "{url}",
        ],
        "pyav-hevc-aac": _pyav("libx265", seconds),
        "pyav-h264-aac": _pyav("libx264", seconds),
    }
    captures: dict[str, bytes] = {}
    for name, argv in runs.items():
        server = CaptureServer()
        url = f"rtmp://127.0.0.1:{server.port}/live/fuzz-seed-{name}"
        try:
            done = subprocess.run(
                [a.replace("{url}", url) for a in argv],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if done.returncode != 0:
                raise SystemExit(f"fuzz_rtmp: the {name} publisher failed: {done.stderr[-2000:]}")
            deadline = time.monotonic() + 10
            while not server.captures and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            server.close()
        if not server.captures:
            raise SystemExit(f"fuzz_rtmp: nothing captured from {name}")
        captures[name] = max(server.captures, key=len)
    return captures


def seeds_from(stream: bytes) -> list[bytes]:
    """Inputs for every target (selector byte first) cut from one client's byte stream."""
    from mediaserver import rtmp

    sel = {name: bytes((i,)) for i, name in enumerate(TARGETS)}
    seeds = [sel["handshake"] + stream[:HANDSHAKE_BYTES], sel["handshake"] + stream[:1537]]
    body = stream[HANDSHAKE_BYTES:]
    room = MAX_LEN - 2
    for mode in range(len(READ_SIZES)):
        seeds.append(sel["chunk"] + bytes((mode,)) + body[:room])
        seeds.append(sel["connection"] + bytes((mode,)) + stream[:room])
    reader = rtmp.ChunkReader(rtmp.Limits())
    try:
        messages = reader.feed(body)
    except rtmp.ProtocolError:
        messages = []
    media_kinds: dict[tuple[int, bytes], int] = {}
    for type_id, _, _, payload in messages:
        if type_id in (15, 17):
            payload = payload[1:]
        if type_id in (15, 17, 18, 20):
            seeds.append(sel["amf0"] + payload[:room])
        elif type_id in (8, 9):
            key = (type_id, payload[:2])
            if media_kinds.get(key, 0) < 3:  # a few of each kind: headers are what is parsed
                media_kinds[key] = media_kinds.get(key, 0) + 1
                kind = 0 if type_id == 9 else 1
                seeds.append(sel["media"] + bytes((kind,)) + payload[:512])
                if type_id == 8 and payload[:2] == b"\xaf\x00":
                    seeds.append(sel["media"] + b"\x02" + payload[2:])  # the ASC alone
    return seeds


def synthetic_seeds() -> list[bytes]:
    """What real publishers here do not send: aggregate messages, E-RTMP AV1/VP9 and
    multitrack bodies, extended timestamps -- built by the independent test client."""
    from tests.rtmp_client import (
        ASC,
        AVCC,
        RtmpTestClient,
        aac_raw,
        aac_sequence_header,
        avc_nalus,
        avc_sequence_header,
        ex_video,
        length_prefixed,
    )

    client = RtmpTestClient(128)
    nalus = length_prefixed(b"\x65\x88", b"\x41\x9a\x00")
    tags = b"".join(
        bytes((t,))
        + len(b).to_bytes(3, "big")
        + ts.to_bytes(3, "big")
        + b"\x00"
        + b"\x00\x00\x00"
        + b
        + (11 + len(b)).to_bytes(4, "big")
        for t, ts, b in (
            (9, 0, avc_nalus(nalus, keyframe=True)),
            (8, 10, aac_raw(b"aac")),
            (9, 33, avc_nalus(nalus, keyframe=False)),
        )
    )
    stream = b"".join(
        [
            client.c0c1(),
            client.c2(None),
            client.set_chunk_size(4096),
            client.connect(),
            client.create_stream(),
            client.publish(1, "key"),
            client.video(1, 0, avc_sequence_header(AVCC)),
            client.audio(1, 0, aac_sequence_header(ASC)),
            client.writer.write(7, 22, 1, 40, tags),
            client.video(1, 0x00FFFFF0, avc_nalus(nalus, keyframe=False)),
            client.video(1, 0x01000010, ex_video(b"av01", 1, b"\x12\x00\x0a\x0a")),
            client.video(1, 0x01000020, ex_video(b"vp09", 0, b"\x01\x00\x00\x00")),
            client.delete_stream(1),
        ]
    )
    media = [
        b"\x00" + ex_video(b"hvc1", 1, nalus, cto=3),
        b"\x00" + bytes((0x80 | 1 << 4 | 6, 0x00)) + b"hvc1\x00" + nalus,  # multitrack
        b"\x01" + bytes((0x90 | 0,)) + b"Opus" + b"OpusHead\x01\x02" + bytes(9),
        b"\x02" + ASC,
    ]
    sel = {name: bytes((i,)) for i, name in enumerate(TARGETS)}
    return seeds_from(stream) + [sel["media"] + m for m in media]


# ---------------------------------------------------------------------------------------------
# A fuzz worker (one libFuzzer process)


def plain_copy() -> Any:
    """mediaserver/rtmp loaded a second time, as package ``_rtmp_plain``, outside the
    instrumentation (its modules import each other relatively, so the copy is self-contained)."""
    import importlib.util

    path = ROOT / "mediaserver" / "rtmp"
    spec = importlib.util.spec_from_file_location(
        "_rtmp_plain", path / "__init__.py", submodule_search_locations=[str(path)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_rtmp_plain"] = module
    spec.loader.exec_module(module)
    return module


def worker(args: argparse.Namespace) -> None:
    import atheris

    with atheris.instrument_imports(include=["mediaserver.rtmp"]):
        from mediaserver import rtmp
    plain = plain_copy()

    targets = make_targets(rtmp, differential=True)
    protocol_error = rtmp.ProtocolError
    timed = make_targets(plain)
    plain_error = plain.ProtocolError
    out = Path(args.out)
    stats_path = out / f"stats-{args.worker}.json"
    hist = array.array("q", bytes(8 * (HIST_BUCKETS + 1)))
    per_target = [0] * len(TARGETS)
    findings: dict[str, str] = {}  # finding -> file of its first input
    state = {"inputs": 0, "crashes": 0, "slow": 0, "saved_slow": 0, "max_ns": 0}
    limit_ns = int(args.max_ms * 1e6)
    started = time.monotonic()
    last_write = [started]
    perf = time.thread_time_ns
    gc.freeze()  # what setup allocated stays out of the collections timed with the inputs

    def save(kind: str, data: bytes) -> str:
        path = out / kind / hashlib.sha1(data).hexdigest()
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return str(path)

    def write_stats() -> None:
        stats = {
            **state,
            "elapsed": time.monotonic() - started,
            "per_target": per_target,
            "findings": findings,
            "hist": {i: n for i, n in enumerate(hist) if n},
        }
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats))
        tmp.replace(stats_path)
        last_write[0] = time.monotonic()

    def test_one_input(data: bytes) -> None:
        problem = run_one(targets, protocol_error, data)
        t0 = perf()
        run_one(timed, plain_error, data)
        ns = perf() - t0
        state["inputs"] += 1
        if data:
            per_target[data[0] % len(TARGETS)] += 1
        hist[min(ns // 1000, HIST_BUCKETS)] += 1
        if ns > state["max_ns"]:
            state["max_ns"] = ns
        if ns > limit_ns:
            state["slow"] += 1
            if state["saved_slow"] < MAX_SAVED_SLOW:
                state["saved_slow"] += 1
                save("slow", data)
        if problem:
            state["crashes"] += 1
            if problem not in findings and len(findings) < 100:
                findings[problem] = save("crashes", data)
        n = state["inputs"]
        if n & 255 == 0 or n >= args.runs:
            now = time.monotonic()
            finished = n >= args.runs or (args.seconds and now - started >= args.seconds)
            if finished or now - last_write[0] >= 1.0:
                write_stats()
            if finished:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(0)

    corpus = args.corpus_dir
    libfuzzer = [
        sys.argv[0],
        f"-max_len={MAX_LEN}",
        f"-seed={args.seed + args.worker}",
        "-timeout=30",
        "-rss_limit_mb=4096",
        f"-artifact_prefix={out}/",
        "-print_final_stats=0",
        corpus,
    ]
    atheris.Setup(libfuzzer, test_one_input)
    atheris.Fuzz()


# ---------------------------------------------------------------------------------------------
# The campaign


def percentile_us(hist: dict[int, int], total: int, q: float) -> int:
    want = total * q
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= want:
            return bucket
    return max(hist, default=0)


def retime(paths: list[Path], repeat: int = 5) -> list[tuple[str, float]]:
    """(file, best of ``repeat`` in ms) for each saved slow input, without instrumentation."""
    from mediaserver import rtmp

    targets = make_targets(rtmp)
    result = []
    for path in paths:
        data = path.read_bytes()
        best = float("inf")
        for _ in range(repeat):
            t0 = time.thread_time_ns()
            run_one(targets, rtmp.ProtocolError, data)
            best = min(best, (time.thread_time_ns() - t0) / 1e6)
        result.append((str(path), best))
    return result


def campaign(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="fuzz-rtmp-"))
    out.mkdir(parents=True, exist_ok=True)
    corpus = Path(args.corpus) if args.corpus else out / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)

    t0 = time.monotonic()
    captures = capture_publishers(args.capture_seconds)
    seeds = [s for stream in captures.values() for s in seeds_from(stream)] + synthetic_seeds()
    for seed in seeds:
        (corpus / ("seed-" + hashlib.sha1(seed).hexdigest())).write_bytes(seed[:MAX_LEN])
    capture_s = time.monotonic() - t0
    print(
        f"captured {', '.join(f'{k} {len(v)} B' for k, v in captures.items())}; "
        f"{len(seeds)} seeds in {capture_s:.1f} s",
        file=sys.stderr,
        flush=True,
    )

    share = -(-args.runs // args.workers)
    procs = []
    logs = []
    for w in range(args.workers):
        log = open(out / f"worker-{w}.log", "w+b")
        logs.append(log)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            str(w),
            "--runs",
            str(share),
            "--seconds",
            str(args.seconds),
            "--max-ms",
            str(args.max_ms),
            "--seed",
            str(args.seed),
            "--out",
            str(out),
            "--corpus-dir",
            str(corpus),
        ]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
    started = time.monotonic()
    next_report = started + args.progress
    while any(p.poll() is None for p in procs):
        time.sleep(0.5)
        if args.progress and time.monotonic() >= next_report:
            next_report += args.progress
            n = sum(_read_stats(out, w).get("inputs", 0) for w in range(args.workers))
            rate = n / max(time.monotonic() - started, 1e-9)
            print(f"... {n:,} inputs, {rate:,.0f}/s", file=sys.stderr, flush=True)
    wall = time.monotonic() - started

    stats = [_read_stats(out, w) for w in range(args.workers)]
    inputs = sum(s.get("inputs", 0) for s in stats)
    hist: dict[int, int] = {}
    for s in stats:
        for bucket, n in s.get("hist", {}).items():
            hist[int(bucket)] = hist.get(int(bucket), 0) + n
    cov = ft = None
    failed_workers = []
    for w, (proc, log) in enumerate(zip(procs, logs, strict=False)):
        log.seek(0)
        text = log.read().decode(errors="replace")
        log.close()
        for c, f in re.findall(r"cov: (\d+) ft: (\d+)", text):
            cov, ft = max(cov or 0, int(c)), max(ft or 0, int(f))
        if proc.returncode != 0:
            failed_workers.append({"worker": w, "status": proc.returncode, "log": text[-3000:]})
    findings: dict[str, str] = {}
    for s in stats:
        findings.update(s.get("findings", {}))
    slow_files = sorted((out / "slow").glob("*")) if (out / "slow").is_dir() else []
    retimed = retime(slow_files)
    confirmed = [(f, ms) for f, ms in retimed if ms > args.max_ms]
    per_target = [
        sum(s.get("per_target", [0] * len(TARGETS))[i] for s in stats) for i in range(len(TARGETS))
    ]
    summary = {
        "inputs": inputs,
        "workers": args.workers,
        "seconds": round(wall, 1),
        "execs_per_s": round(inputs / wall) if wall else 0,
        "per_target": dict(zip(TARGETS, per_target, strict=False)),
        "max_ms": round(max((s.get("max_ns", 0) for s in stats), default=0) / 1e6, 3),
        "p99_9_ms": percentile_us(hist, inputs, 0.999) / 1000 if inputs else None,
        "p50_ms": percentile_us(hist, inputs, 0.5) / 1000 if inputs else None,
        "over_limit": sum(s.get("slow", 0) for s in stats),
        "over_limit_retimed": [{"file": f, "best_ms": round(ms, 3)} for f, ms in retimed],
        "over_limit_confirmed": len(confirmed),
        "limit_ms": args.max_ms,
        "coverage_edges": cov,
        "coverage_features": ft,
        "crashes": sum(s.get("crashes", 0) for s in stats),
        "findings": findings,
        "failed_workers": failed_workers,
        "seeds": len(seeds),
        "captures": {k: len(v) for k, v in captures.items()},
        "out": str(out),
    }
    if not (findings or confirmed or failed_workers or args.out or args.keep):
        shutil.rmtree(out, ignore_errors=True)
        summary["out"] = None
    return summary


def _read_stats(out: Path, w: int) -> dict[str, Any]:
    try:
        return json.loads((out / f"stats-{w}.json").read_text())
    except (OSError, ValueError):
        return {}


def print_summary(s: dict[str, Any]) -> None:
    print(
        f"inputs           {s['inputs']:,} in {s['seconds']} s with {s['workers']} worker(s): "
        f"{s['execs_per_s']:,} execs/s"
    )
    print("per target       " + ", ".join(f"{k} {v:,}" for k, v in s["per_target"].items()))
    print(
        f"time per input   p50 {s['p50_ms']} ms, p99.9 {s['p99_9_ms']} ms, max {s['max_ms']} ms "
        f"(CPU, uninstrumented; limit {s['limit_ms']} ms)"
    )
    print(
        f"over the limit   {s['over_limit']} while fuzzing; "
        f"{s['over_limit_confirmed']} still over when re-timed without instrumentation"
    )
    for item in sorted(s["over_limit_retimed"], key=lambda i: -i["best_ms"])[:10]:
        if item["best_ms"] > s["limit_ms"]:
            print(f"                 {item['best_ms']} ms  {item['file']}")
    print(
        f"coverage         {s['coverage_edges']} edges, {s['coverage_features']} features "
        f"(libFuzzer cov/ft)"
    )
    print(
        f"crashes          {s['crashes']} (anything but ProtocolError, or one wrapping an "
        f"internal error)"
    )
    for finding, path in s["findings"].items():
        print(f"                 {finding}\n                   input: {path}")
    for failed in s["failed_workers"]:
        print(f"worker {failed['worker']} exited with {failed['status']}:\n{failed['log']}")
    print(f"seeds            {s['seeds']} from {s['captures']}")
    if s["out"]:
        print(f"artifacts        {s['out']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000_000, help="inputs in all (default 10M)")
    ap.add_argument(
        "--seconds",
        type=float,
        default=0,
        help="stop after this many seconds of fuzzing (0: no time limit)",
    )
    ap.add_argument("--workers", type=int, default=1, help="libFuzzer processes (default 1)")
    ap.add_argument("--max-ms", type=float, default=10.0, help="per-input time limit (10 ms)")
    ap.add_argument("--seed", type=int, default=1, help="libFuzzer seed of the first worker")
    ap.add_argument("--out", help="keep the corpus, crashes and slow inputs here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary output directory")
    ap.add_argument("--corpus", help="corpus directory to start from and grow (default: fresh)")
    ap.add_argument(
        "--capture-seconds", type=float, default=1.0, help="seconds each capture publisher sends"
    )
    ap.add_argument(
        "--progress",
        type=float,
        default=30.0,
        help="print progress every this many seconds (0: never)",
    )
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--corpus-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        worker(args)
        return
    if args.runs < 1 or args.workers < 1:
        ap.error("--runs and --workers must be at least 1")
    summary = campaign(args)
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(summary)
    bad = summary["crashes"] or summary["over_limit_confirmed"] or summary["failed_workers"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
