"""Transcoding ladder benchmark: our PyAV pipeline against the ffmpeg CLI, in the same run.

One source is made with the ffmpeg CLI (testsrc2 1920x1080 at 30 fps + a sine, H.264 veryfast
at ~6 Mbit/s and AAC, in FLV). The same 3-rung ladder (1080p 6000k, 720p 3000k, 480p 1200k,
VBV peak 1.1x and a 2 s buffer, a keyframe every 2 s, no scene-cut keyframes, x264 preset
veryfast, no B-frames unless ``--bframes``) is then produced by

* ours: the FLV demuxed with PyAV into CodecConfigs/MediaPackets by a feeder thread, through
  a real ``Subscription`` into ``LiveTranscoder`` as the server runs it, as fast as it will go
  (``lossless=True``: the reader waits for the slowest rung instead of dropping frames), into
  a sink that counts bytes. It runs in a child process that reports its own wall time and
  getrusage(RUSAGE_SELF) CPU (demux and feeding included; interpreter start-up and imports
  not). By default 480p is scaled from the 720p picture (``cascade_scaling``, the product's
  default); ``--no-cascade`` scales every rung from the source, exactly as ffmpeg's
  split/scale graph does;
* ffmpeg: ``-filter_complex split/scale`` (bicubic, like ours), three libx264 outputs, the AAC
  copied as ours copies it (``--audio aac`` re-encodes it), muxed to fMP4 HLS in a temp dir;
  CPU from getrusage(RUSAGE_CHILDREN).

Both are run with passthrough ``never`` (every rung encoded) and ``auto`` (the 1080p H.264
source copied for the top rung; ffmpeg ``-c:v:0 copy``), interleaved, ``--runs`` times each;
medians and the ratios ours/ffmpeg are printed. Goals: CPU ratio <= 1.0, speed ratio >= 1.0.
Note: the machine's other load moves wall-clock figures; CPU seconds are steadier.

    .venv/bin/python benchmarks/ladder_vs_ffmpeg.py [--runs 3] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LADDER = [("1080p", 1920, 1080, 6000), ("720p", 1280, 720, 3000), ("480p", 854, 480, 1200)]
FPS = 30
SEGMENT = 2.0
PRESET = "veryfast"
# What the server passes by default (transcode.x264_params); both sides get it.
X264_PARAMS = "rc-lookahead=0:sync-lookahead=0"


def make_source(path: Path, seconds: float) -> None:
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size=1920x1080:rate={FPS}",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-b:v",
            "6M",
            "-maxrate",
            "6M",
            "-bufsize",
            "12M",
            "-g",
            str(2 * FPS),
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-ac",
            "2",
            "-f",
            "flv",
            str(path),
        ],
        check=True,
    )


# -- ours (child process) ---------------------------------------------------------------------
def run_ours(source: Path, passthrough: str, bframes: int, cascade: bool) -> dict[str, float]:
    import av

    from mediaserver.live import CodecConfig, MediaKind, MediaPacket, Subscription
    from transcode.hls import RenditionPackager, SegmentReady
    from transcode.ladder import Rung
    from transcode.pipeline import LiveTranscoder

    names = {"h264": "avc1", "aac": "mp4a"}

    class PackagingSink:
        """Packages every rendition into LL-HLS parts and segments, as the server's HlsSink
        does, so our figures include the CMAF muxing that ffmpeg's ``-f hls`` does too."""

        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.packagers: dict[str, RenditionPackager] = {}
            self.bytes = 0
            self.packets = 0

        def on_track_info(self, rendition, video, audio) -> None:
            with self.lock:
                self.packagers[rendition] = RenditionPackager(
                    rendition,
                    video,
                    audio,
                    segment_duration=2.0,
                    part_duration=0.333,
                    start_time=datetime.now(UTC),
                )

        def _count(self, events) -> None:
            self.bytes += sum(len(e.data) for e in events if isinstance(e, SegmentReady))

        def on_packet(self, rendition, packet) -> None:
            with self.lock:
                self._count(self.packagers[rendition].add(packet))
                self.packets += 1

        def on_thumbnail(self, jpeg: bytes) -> None:
            pass

        def on_end(self) -> None:
            with self.lock:
                for packager in self.packagers.values():
                    self._count(packager.flush())

    sub = Subscription("transcoder", 512)

    def feed() -> None:
        """Demux the FLV as ingest would hand packets over (without ever overflowing)."""
        with av.open(str(source)) as container:
            for stream in container.streams:
                cc = stream.codec_context
                kind = MediaKind.VIDEO if stream.type == "video" else MediaKind.AUDIO
                sub.put(
                    CodecConfig(
                        kind,
                        names[cc.name],
                        bytes(cc.extradata or b""),
                        cc.sample_rate if kind is MediaKind.AUDIO else 0,
                        cc.channels if kind is MediaKind.AUDIO else 0,
                    )
                )
            for packet in container.demux():
                if packet.pts is None or packet.size == 0:
                    continue
                while len(sub) > 256:
                    time.sleep(0.002)
                kind = MediaKind.VIDEO if packet.stream.type == "video" else MediaKind.AUDIO
                sub.put(
                    MediaPacket(
                        kind,
                        names[packet.stream.codec_context.name],
                        int(packet.dts),
                        int(packet.pts),
                        packet.is_keyframe,
                        bytes(packet),
                    )
                )
        sub.close()

    sink = PackagingSink()
    rungs = [Rung(name, height, float(FPS), kbps) for name, _, height, kbps in LADDER]
    transcoder = LiveTranscoder(
        sub,
        rungs,
        sink,
        passthrough=passthrough,  # type: ignore[arg-type]
        segment_duration=SEGMENT,
        preset=PRESET,
        bframes=bframes,
        x264_params=X264_PARAMS,
        cascade_scaling=cascade,
        lossless=True,
        name="bench",
    )
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    feeder = threading.Thread(target=feed, name="feeder")
    transcoder.start()
    feeder.start()
    transcoder.join()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    feeder.join()
    if transcoder.error is not None:
        raise SystemExit(f"transcoder failed: {transcoder.error!r}")
    stats = transcoder.stats()
    return {
        "wall": wall,
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "bytes": sink.bytes,
        "dropped": stats["dropped_frames"],
        "frames": sum(r["frames"] for r in stats["renditions"].values()),
    }


def ours(source: Path, passthrough: str, bframes: int, cascade: bool) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            str(source),
            "--passthrough",
            passthrough,
            "--bframes",
            str(bframes),
        ]
        + ([] if cascade else ["--no-cascade"]),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- ffmpeg -----------------------------------------------------------------------------------
def ffmpeg_args(
    source: Path, outdir: Path, passthrough: str, bframes: int, audio: str
) -> list[str]:
    copy_top = passthrough == "auto"
    scaled = LADDER[1:] if copy_top else LADDER
    labels = [f"v{i}" for i in range(len(scaled))]
    chains = [f"[0:v]split={len(scaled)}" + "".join(f"[s{i}]" for i in range(len(scaled)))]
    for i, (_, width, height, _) in enumerate(scaled):
        chains.append(
            f"[s{i}]scale={width}:{height}[v{i}]" if height != 1080 else f"[s{i}]null[v{i}]"
        )
    args = [
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-i",
        str(source),
        "-filter_complex",
        ";".join(chains),
    ]
    if copy_top:
        args += ["-map", "0:v"]
    for label in labels:
        args += ["-map", f"[{label}]"]
    args += ["-map", "0:a"] * len(LADDER)
    for i, (_, _, _, kbps) in enumerate(LADDER):
        if copy_top and i == 0:
            args += [f"-c:v:{i}", "copy"]
            continue
        args += [
            f"-c:v:{i}",
            "libx264",
            f"-preset:v:{i}",
            PRESET,
            f"-bf:v:{i}",
            str(bframes),
            f"-g:v:{i}",
            str(int(FPS * SEGMENT)),
            f"-keyint_min:v:{i}",
            str(int(FPS * SEGMENT)),
            f"-sc_threshold:v:{i}",
            "0",
            f"-b:v:{i}",
            f"{kbps}k",
            f"-maxrate:v:{i}",
            f"{round(kbps * 1.1)}k",
            f"-bufsize:v:{i}",
            f"{kbps * 2}k",
            f"-x264-params:v:{i}",
            X264_PARAMS,
        ]
    args += ["-c:a", "copy"] if audio == "copy" else ["-c:a", "aac", "-b:a", "128k"]
    args += [
        "-f",
        "hls",
        "-hls_time",
        str(SEGMENT),
        "-hls_segment_type",
        "fmp4",
        "-hls_playlist_type",
        "vod",
        "-var_stream_map",
        " ".join(f"v:{i},a:{i}" for i in range(len(LADDER))),
        "-master_pl_name",
        "master.m3u8",
        "-hls_segment_filename",
        str(outdir / "%v" / "seg%d.m4s"),
        str(outdir / "%v" / "index.m3u8"),
    ]
    return args


def ffmpeg(source: Path, passthrough: str, bframes: int, audio: str) -> dict[str, float]:
    outdir = Path(tempfile.mkdtemp(prefix="ladder-ffmpeg-"))
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(ffmpeg_args(source, outdir, passthrough, bframes, audio), check=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        size = sum(p.stat().st_size for p in outdir.rglob("*.m4s"))
        return {
            "wall": wall,
            "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "bytes": size,
        }
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--bframes", type=int, default=0, help="x264 B-frames for both (default 0)")
    ap.add_argument(
        "--audio",
        choices=("copy", "aac"),
        default="copy",
        help="ffmpeg audio: copy (as ours does for AAC sources) or re-encode",
    )
    ap.add_argument("--modes", default="never,auto", help="passthrough modes to run")
    ap.add_argument(
        "--no-cascade",
        action="store_true",
        help="ours scales every rung from the source, as ffmpeg's split/scale does "
        "(default: 480p is scaled from the 720p picture)",
    )
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--passthrough", default="never", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_ours(args.child, args.passthrough, args.bframes, not args.no_cascade)))
        return
    if shutil.which("ffmpeg") is None:
        raise SystemExit("the ffmpeg CLI is the reference: apt-get install ffmpeg")
    modes = [m for m in args.modes.split(",") if m]
    with tempfile.TemporaryDirectory(prefix="ladder-bench-") as tmp:
        source = Path(tmp) / "source.flv"
        make_source(source, args.seconds)
        print(
            f"source: {args.seconds:g} s 1920x1080 {FPS} fps H.264 veryfast ~6 Mbit/s + AAC, "
            f"{source.stat().st_size / 1e6:.1f} MB; ladder "
            + ", ".join(f"{n} {k}k" for n, _, _, k in LADDER)
            + f"; x264 {PRESET}, bframes {args.bframes}; ours scales "
            + ("each rung from the source" if args.no_cascade else "in cascade")
            + f"; {os.cpu_count()} CPUs; "
            f"{args.runs} runs each, medians",
            flush=True,
        )
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for run in range(args.runs):
            for mode in modes:
                for who in ("ours", "ffmpeg"):
                    r = (
                        ours(source, mode, args.bframes, not args.no_cascade)
                        if who == "ours"
                        else ffmpeg(source, mode, args.bframes, args.audio)
                    )
                    results.setdefault((who, mode), []).append(r)
                    print(
                        f"  run {run + 1} {mode:6} {who:6} wall {r['wall']:6.2f} s  "
                        f"cpu {r['cpu']:6.2f} s  out {r['bytes'] / 1e6:5.1f} MB"
                        + (f"  dropped {r['dropped']:.0f}" if "dropped" in r else ""),
                        flush=True,
                    )
        print()
        print(f"{'passthrough':12} {'':7} {'speed':>8} {'wall s':>8} {'CPU s':>8}")
        for mode in modes:
            med = {}
            for who in ("ours", "ffmpeg"):
                rs = results[(who, mode)]
                wall = statistics.median(r["wall"] for r in rs)
                cpu = statistics.median(r["cpu"] for r in rs)
                med[who] = (wall, cpu)
                print(f"{mode:12} {who:7} {args.seconds / wall:7.2f}x {wall:8.2f} {cpu:8.2f}")
            (ow, oc), (fw, fc) = med["ours"], med["ffmpeg"]
            print(
                f"{mode:12} {'ratio':7} speed ours/ffmpeg {fw / ow:.2f} (goal >= 1.0), "
                f"CPU ours/ffmpeg {oc / fc:.2f} (goal <= 1.0)"
            )


if __name__ == "__main__":
    main()
