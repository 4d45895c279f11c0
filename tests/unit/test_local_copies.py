"""Copies of recordings and clips from the object store, bounded (webapp/stored.py, issue 15):
the least recently used go first past the size cap, the unused go after the age limit, and a
copy being read (pinned) or just used is never removed; the node's own media (no mark) is
never touched. Real directories on disk; the sweep is the one the server runs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from webapp.stored import COPY_MARK, EVICTING, LocalCopies


def make_copy(root: Path, prefix: str, size: int, used_ago: float, whole: bool = True) -> Path:
    directory = root / prefix
    (directory / "r0").mkdir(parents=True)
    (directory / "r0" / "seg0.m4s").write_bytes(b"x" * size)
    (directory / "master.m3u8").write_text("#EXTM3U\n")
    mark = directory / COPY_MARK
    body = {"marker": "master.m3u8", "bytes": size + 8} if whole else {"marker": "master.m3u8"}
    mark.write_text(json.dumps(body))
    when = time.time() - used_ago
    os.utime(mark, (when, when))
    return directory


async def test_oldest_first_past_the_cap_and_the_unused_past_the_age(tmp_path: Path) -> None:
    copies = LocalCopies(tmp_path, max_bytes=2500, max_age=3600, interval=60)
    old = make_copy(tmp_path, "streams/1", 1000, used_ago=600)
    middle = make_copy(tmp_path, "streams/2", 1000, used_ago=300)
    new = make_copy(tmp_path, "clips/abc/out", 1000, used_ago=120)
    stale = make_copy(tmp_path, "streams/3", 10, used_ago=7200)
    own = tmp_path / "streams" / "4"  # a recording this node made: no mark
    (own / "r0").mkdir(parents=True)
    (own / "master.m3u8").write_text("#EXTM3U\n")
    (own / "r0" / "seg0.m4s").write_bytes(b"y" * 100_000)

    assert sorted(await copies.sweep()) == ["streams/1", "streams/3"]
    assert not old.exists() and not stale.exists()
    assert middle.exists() and new.exists() and own.exists()
    assert not list((tmp_path / "streams").glob(f"{EVICTING}*"))  # deleted, not just renamed
    # Under the cap now: nothing more goes.
    assert await copies.sweep() == []

    # A clip's copy evicted takes its clips/{id} directory with it.
    copies.max_bytes = 0
    release = copies.pin("streams/2")  # being read: stays, whatever its age and size
    assert await copies.sweep() == ["clips/abc/out"]
    assert not (tmp_path / "clips" / "abc").exists() and middle.exists()
    release()
    release()  # a second call changes nothing
    # Just released: used now, so kept until it has gone unused for a sweep interval.
    assert await copies.sweep() == []
    copies.interval = 0.0
    assert await copies.sweep() == ["streams/2"]
    assert own.exists() and (own / "r0" / "seg0.m4s").stat().st_size == 100_000


async def test_uses_outlive_a_restart_and_half_copies_are_measured(tmp_path: Path) -> None:
    copies = LocalCopies(tmp_path, max_bytes=1 << 30, max_age=100, interval=0.0)
    kept = make_copy(tmp_path, "streams/7", 10, used_ago=90)
    half = make_copy(tmp_path, "streams/8", 5000, used_ago=10, whole=False)
    copies.touch("streams/7")  # used again now, on this run
    assert await copies.sweep() == []
    assert time.time() - (kept / COPY_MARK).stat().st_mtime < 30  # written to the mark

    # After a restart (a new LocalCopies), the mark's time is the last use.
    later = LocalCopies(tmp_path, max_bytes=1000, max_age=100, interval=0.0)
    # The half-made copy (a crash mid-copy) counts by what is on disk: over the cap.
    assert await later.sweep() == ["streams/8"]
    assert kept.exists() and not half.exists()

    # A crash between the rename and the delete leaves a renamed directory: removed.
    leftover = tmp_path / "streams" / f"{EVICTING}9"
    (leftover / "r0").mkdir(parents=True)
    assert await later.sweep() == []
    assert not leftover.exists()
