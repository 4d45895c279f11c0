"""A clip's files: the draft captured from the live DVR buffer, and the cut's output.

Layout under ``data_dir/clips/{public_id}/``: ``draft/`` (a small VOD of the captured
segments: ``master.m3u8``, ``{rendition}/index.m3u8``, the init sections and segments, hard
links of the live files where the file system allows, so they survive the live window) with
``draft.json`` (the range it covers on the broadcast's timeline), and ``out/`` (what
``transcode.smart_cut.cut_clip`` writes) with ``clip.json`` naming its MP4, HLS master and
thumbnail. Blocking file work: called in worker threads.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transcode.edge import DvrSegment
from transcode.hls import (
    RenditionInfo,
    master_playlist,
    segment_uri,
    vod_playlist,
    write_file_atomic,
)
from transcode.smart_cut import CutResult, SourceRendition, renditions_from_master

CLIPS_DIR = "clips"
DRAFT = "draft"
OUT = "out"
DRAFT_META = "draft.json"
CLIP_META = "clip.json"


@dataclass(frozen=True)
class LiveRendition:
    """What a capture needs of one live rendition, copied on the loop (the edge moves on)."""

    name: str
    segments: tuple[DvrSegment, ...]
    info: RenditionInfo


@dataclass(frozen=True)
class Draft:
    start: float  # on the broadcast's timeline
    end: float


class NothingToCapture(Exception):
    """The live stream has no whole segment on disk yet."""


def clip_dir(data_dir: Path, public_id: str) -> Path:
    return data_dir / CLIPS_DIR / public_id


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def capture_live(
    renditions: Sequence[LiveRendition], stream_dir: Path, out: Path, seconds: float
) -> Draft:
    """The newest ``seconds`` (or as much as is on disk) of the live stream into ``out/draft``.

    The first rendition picks the segment numbers (renditions share boundaries); a rendition
    missing one of them is left out. The newest segments may still be on their way to the
    disk: the capture ends at the newest one that is there."""
    if not renditions:
        raise NothingToCapture("no renditions")
    lead = renditions[0]
    on_disk = [s for s in lead.segments if (stream_dir / lead.name / segment_uri(s.msn)).exists()]
    # From the newest file back, contiguous numbers only, until ``seconds`` are covered.
    chosen: list[DvrSegment] = []
    for segment in reversed(on_disk):
        if chosen and segment.msn != chosen[-1].msn - 1:
            break
        chosen.append(segment)
        if sum(s.duration for s in chosen) >= seconds:
            break
    if not chosen:
        raise NothingToCapture("no segment on disk yet")
    chosen.reverse()
    numbers = [s.msn for s in chosen]
    draft = out / DRAFT
    infos = []
    for rendition in renditions:
        by_msn = {s.msn: s for s in rendition.segments}
        files = [stream_dir / rendition.name / segment_uri(n) for n in numbers]
        if any(n not in by_msn for n in numbers) or not all(f.exists() for f in files):
            continue
        picked = [by_msn[n] for n in numbers]
        entries = []
        previous_init = None
        for segment, file in zip(picked, files, strict=True):
            _link_or_copy(file, draft / rendition.name / file.name)
            init = draft / rendition.name / segment.init
            if not init.exists():
                _link_or_copy(stream_dir / rendition.name / segment.init, init)
            discontinuity = previous_init is not None and previous_init != segment.init
            entries.append((file.name, segment.duration, discontinuity, segment.init))
            previous_init = segment.init
        target = max(s.duration for s in chosen)
        write_file_atomic(
            draft / rendition.name / "index.m3u8",
            vod_playlist(entries, target, init_uri=entries[0][3]).encode(),
        )
        infos.append(rendition.info)
    if not infos:
        raise NothingToCapture("no rendition has the whole range on disk")
    write_file_atomic(draft / "master.m3u8", master_playlist(infos).encode())
    result = Draft(chosen[0].start, chosen[0].start + sum(s.duration for s in chosen))
    write_file_atomic(
        out / DRAFT_META, json.dumps({"start": result.start, "end": result.end}).encode()
    )
    return result


def read_draft(out: Path) -> Draft | None:
    try:
        meta = json.loads((out / DRAFT_META).read_text())
        return Draft(float(meta["start"]), float(meta["end"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def source_renditions(directory: Path) -> list[SourceRendition]:
    """Every rendition the master playlist of ``directory`` (a VOD or a draft) lists."""
    return renditions_from_master(directory / "master.m3u8")


def write_manifest(out: Path, result: CutResult) -> dict[str, Any]:
    """``clip.json``: the cut's files relative to the clip's directory."""
    manifest = {
        "mp4": str(result.mp4.relative_to(out)),
        "hls": str(result.hls_master.relative_to(out)),
        "thumbnail": str(result.thumbnail.relative_to(out)),
        "duration": result.duration,
    }
    write_file_atomic(out / CLIP_META, json.dumps(manifest).encode())
    return manifest


def read_manifest(out: Path) -> dict[str, str] | None:
    try:
        meta = json.loads((out / CLIP_META).read_text())
        return {k: str(meta[k]) for k in ("mp4", "hls", "thumbnail")}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def tree_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def safe_file(root: Path, name: str) -> Path | None:
    """``root/name`` if it is a file inside ``root`` (no ``..``, no links out), else None."""
    if not name or name.startswith("/") or "\\" in name or name.endswith(".json"):
        return None
    parts = name.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    path = root.joinpath(*parts)
    try:
        resolved = path.resolve(strict=True)
        if not resolved.is_relative_to(root.resolve()) or not resolved.is_file():
            return None
    except (OSError, RuntimeError):
        return None
    return resolved


def valid_range(start: float, end: float) -> bool:
    return math.isfinite(start) and math.isfinite(end) and 0 <= start < end
