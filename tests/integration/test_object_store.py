"""The object store's contract, the same cases against LocalStore (files under a data dir) and
S3Store (a real SeaweedFS on loopback, keys required): ranges, missing keys, prefix listing
and deletion, public URLs, and a store that is down or refuses the keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from seaweed import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedFS, seaweed  # noqa: F401

from storage.objects import LocalStore, ObjectStore, ObjectStoreError, S3Config, S3Store


def s3_store(weed: SeaweedFS, prefix: str, **kw: object) -> S3Store:
    config = S3Config(
        bucket=str(kw.pop("bucket", BUCKET)),
        endpoint_url=str(kw.pop("endpoint_url", weed.endpoint)),
        prefix=prefix,
        access_key=str(kw.pop("access_key", ACCESS_KEY)),
        secret_key=str(kw.pop("secret_key", SECRET_KEY)),
        timeout=3.0,
        part_size=5 << 20,
    )
    return S3Store(config, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["local", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[ObjectStore, list[str]]]:
    """A store and the list its error hook appends each counted failure's op to."""
    errors: list[str] = []
    made: ObjectStore
    if request.param == "local":
        made = LocalStore(tmp_path / "data", on_error=errors.append)
    else:
        weed = request.getfixturevalue("seaweed")
        made = s3_store(weed, f"t-{tmp_path.name}", on_error=errors.append)
    try:
        yield made, errors
    finally:
        await made.close()


async def test_put_get_ranges(store: tuple[ObjectStore, list[str]], tmp_path: Path) -> None:
    s, errors = store
    data = bytes(range(256)) * 40  # 10240 bytes
    await s.put_bytes("streams/1/720p/seg0.m4s", data)
    assert await s.get("streams/1/720p/seg0.m4s") == data
    assert await s.get("streams/1/720p/seg0.m4s", 100, 200) == data[100:200]
    assert await s.get("streams/1/720p/seg0.m4s", 10000) == data[10000:]
    assert await s.get("streams/1/720p/seg0.m4s", 10000, 20000) == data[10000:]
    assert await s.get("streams/1/720p/seg0.m4s", 20000) == b""
    assert await s.get("streams/1/720p/seg0.m4s", 5, 5) == b""
    chunks = [c async for c in s.stream("streams/1/720p/seg0.m4s", 1000, 9000, chunk=1000)]
    assert b"".join(chunks) == data[1000:9000]
    assert b"".join([c async for c in s.stream("streams/1/720p/seg0.m4s")]) == data
    assert await s.size("streams/1/720p/seg0.m4s") == len(data)
    assert await s.exists("streams/1/720p/seg0.m4s")
    head = await s.head("streams/1/720p/seg0.m4s")
    assert head is not None and head.size == len(data)
    # Overwriting replaces the whole object.
    await s.put_bytes("streams/1/720p/seg0.m4s", b"short")
    assert await s.get("streams/1/720p/seg0.m4s") == b"short"
    assert errors == []


async def test_put_file(store: tuple[ObjectStore, list[str]], tmp_path: Path) -> None:
    s, errors = store
    small = tmp_path / "small.jpg"
    small.write_bytes(b"\xff\xd8" + b"x" * 1000)
    await s.put_file("thumbnails/streams/7.jpg", small)
    assert await s.get("thumbnails/streams/7.jpg") == small.read_bytes()
    # Larger than a part: S3 goes up in several parts.
    big = tmp_path / "big.mp4"
    payload = bytes(range(251)) * ((11 << 20) // 251)
    big.write_bytes(payload)
    await s.put_file("clips/abc/clip.mp4", big)
    assert await s.size("clips/abc/clip.mp4") == len(payload)
    assert (
        await s.get("clips/abc/clip.mp4", (6 << 20) - 3, (6 << 20) + 3)
        == payload[(6 << 20) - 3 : (6 << 20) + 3]
    )
    with pytest.raises(ObjectStoreError) as info:
        await s.put_file("x/y.jpg", tmp_path / "nope.jpg")
    assert not info.value.missing and "nope.jpg" in str(info.value)
    assert errors == ["put"]


async def test_missing_keys_are_clear(store: tuple[ObjectStore, list[str]]) -> None:
    s, errors = store
    with pytest.raises(ObjectStoreError) as info:
        await s.get("streams/404/master.m3u8")
    assert info.value.missing and info.value.op == "get"
    assert "streams/404/master.m3u8" in str(info.value) and "no such object" in str(info.value)
    with pytest.raises(ObjectStoreError) as info:
        [c async for c in s.stream("streams/404/master.m3u8")]
    assert info.value.missing
    with pytest.raises(ObjectStoreError) as info:
        await s.size("streams/404/master.m3u8")
    assert info.value.missing
    assert await s.head("streams/404/master.m3u8") is None
    assert not await s.exists("streams/404/master.m3u8")
    await s.delete("streams/404/master.m3u8")  # deleting nothing is fine
    assert await s.list_prefix("streams/404/") == []
    assert await s.delete_prefix("streams/404/") == 0
    assert errors == []  # a missing key is an answer, not a fault of the store


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/./b", "", "a/b c", "a/../b"])
async def test_bad_keys_refused(store: tuple[ObjectStore, list[str]], key: str) -> None:
    s, _ = store
    with pytest.raises(ObjectStoreError) as info:
        await s.put_bytes(key, b"x")
    assert info.value.op == "key"
    with pytest.raises(ObjectStoreError):
        await s.get(key)


async def test_prefix_listing_and_deletion(store: tuple[ObjectStore, list[str]]) -> None:
    s, errors = store
    keys = [
        "streams/1/master.m3u8",
        "streams/1/720p/index.m3u8",
        "streams/1/720p/seg0.m4s",
        "streams/1/720p/seg1.m4s",
        "streams/12/master.m3u8",
        "streams/2/master.m3u8",
    ]
    for i, key in enumerate(keys):
        await s.put_bytes(key, b"x" * (i + 1))
    listed = await s.list_prefix("streams/1/")
    assert [o.key for o in listed] == sorted(keys[:4])
    assert {o.key: o.size for o in listed}["streams/1/720p/seg1.m4s"] == 4
    # A prefix is a string prefix, as in S3: "streams/1" reaches streams/12 too.
    assert [o.key for o in await s.list_prefix("streams/1")] == sorted(keys[:5])
    assert [o.key for o in await s.list_prefix("streams/1/720p/seg")] == keys[2:4]
    assert await s.delete_prefix("streams/1/") == 4
    assert await s.list_prefix("streams/1/") == []
    assert [o.key for o in await s.list_prefix("streams/")] == ["streams/12/master.m3u8", keys[5]]
    await s.delete("streams/2/master.m3u8")
    assert not await s.exists("streams/2/master.m3u8")
    assert errors == []


async def test_check(store: tuple[ObjectStore, list[str]]) -> None:
    s, errors = store
    await s.check()  # the bucket exists and the keys may use it (local: nothing to reach)
    assert errors == []


async def test_public_url(tmp_path: Path, seaweed: SeaweedFS) -> None:  # noqa: F811
    local = LocalStore(tmp_path, public_url="https://cdn.example.test/media/")
    assert local.public_url("uploads/a.jpg") == "https://cdn.example.test/media/uploads/a.jpg"
    assert LocalStore(tmp_path).public_url("uploads/a.jpg") is None
    s3 = s3_store(seaweed, "p1", public_url=f"{seaweed.endpoint}/{BUCKET}")
    try:
        assert s3.public_url("uploads/a.jpg") == f"{seaweed.endpoint}/{BUCKET}/p1/uploads/a.jpg"
    finally:
        await s3.close()


async def test_s3_errors_are_one_type_and_counted(
    seaweed: SeaweedFS,  # noqa: F811
) -> None:
    errors: list[str] = []
    wrong = s3_store(seaweed, "w", secret_key="not-the-secret", on_error=errors.append)
    nobucket = s3_store(seaweed, "w", bucket="no-such-bucket-here", on_error=errors.append)
    down = s3_store(seaweed, "w", endpoint_url="http://127.0.0.1:9", on_error=errors.append)
    try:
        for s in (wrong, nobucket, down):
            with pytest.raises(ObjectStoreError) as info:
                await s.check()
            assert info.value.op == "check"
            with pytest.raises(ObjectStoreError) as info:
                await s.put_bytes("uploads/a.jpg", b"x")
            assert not info.value.missing and info.value.op == "put"
            with pytest.raises(ObjectStoreError):
                await s.list_prefix("uploads/")
        with pytest.raises(ObjectStoreError) as info:
            await wrong.get("uploads/a.jpg")
        assert not info.value.missing  # refused keys are not "no such object"
        assert "put" in errors and "list" in errors and "check" in errors and len(errors) == 10
    finally:
        for s in (wrong, nobucket, down):
            await s.close()


async def test_concurrent_puts(store: tuple[ObjectStore, list[str]]) -> None:
    s, _ = store
    await asyncio.gather(
        *(s.put_bytes(f"streams/5/r/seg{i}.m4s", bytes([i]) * 100) for i in range(20))
    )
    assert len(await s.list_prefix("streams/5/")) == 20


async def test_s3_credentials_from_the_aws_environment(
    seaweed: SeaweedFS,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No keys in the settings: botocore's usual chain (here the environment) supplies them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    s = s3_store(seaweed, "from-env", access_key="", secret_key="")
    try:
        await s.put_bytes("uploads/e.jpg", b"from the environment")
        assert await s.get("uploads/e.jpg") == b"from the environment"
        await s.delete_prefix("")
    finally:
        await s.close()


async def test_uploader_bounds_retries_and_stops(tmp_path: Path) -> None:
    """The uploader against a store that is down: a full queue refuses at once (the file stays
    on disk), queued files are retried with backoff and given up after objects.retry_for, a
    file that is gone is not retried, and after stop nothing more is queued. Each is counted."""
    from mediaserver.metrics import Metrics
    from mediaserver.objects import Uploader, make_store
    from mediaserver.settings import load_settings

    settings = load_settings(
        None,
        env={
            "AETHEX_DATA_DIR": str(tmp_path),
            "AETHEX_OBJECTS__BACKEND": "s3",
            "AETHEX_OBJECTS__ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens there
            "AETHEX_OBJECTS__BUCKET": "b",
            "AETHEX_OBJECTS__ACCESS_KEY": "k",
            "AETHEX_OBJECTS__SECRET_KEY": "s",
            "AETHEX_OBJECTS__UPLOAD_QUEUE": "2",
            "AETHEX_OBJECTS__UPLOAD_CONCURRENCY": "1",
            "AETHEX_OBJECTS__RETRY_INITIAL": "0.05",
            "AETHEX_OBJECTS__RETRY_MAX": "0.1",
            "AETHEX_OBJECTS__RETRY_FOR": "0.5",
            "AETHEX_OBJECTS__TIMEOUT": "1",
        },
    )
    metrics = Metrics()
    uploader = Uploader(settings, make_store(settings, metrics), metrics)
    files = []
    for i in range(4):
        path = tmp_path / "streams" / "1" / "r" / f"seg{i}.m4s"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)
        files.append(path)
    uploader.start()
    futures = [uploader.upload(p) for p in files]
    # The queue holds two: the others are refused at once.
    assert [f.done() for f in futures] == [False, False, True, True]
    assert not futures[2].result() and not futures[3].result()
    assert metrics.sample("aethex_object_uploads_dropped_total", reason="queue_full") == 2
    assert metrics.sample("aethex_object_uploads_pending") == 2
    assert await asyncio.gather(*futures[:2]) == [False, False]  # retried, then given up
    assert metrics.sample("aethex_object_uploads_dropped_total", reason="gave_up") == 2
    assert (metrics.sample("aethex_object_store_errors_total", op="put") or 0) >= 2
    assert metrics.sample("aethex_object_uploads_pending") == 0
    gone = tmp_path / "streams" / "1" / "r" / "seg9.m4s"
    assert await uploader.upload(gone) is False
    assert metrics.sample("aethex_object_uploads_dropped_total", reason="no_file") == 1
    await uploader.stop()
    assert await uploader.upload(files[0]) is False
    assert all(p.exists() for p in files)  # nothing was lost locally
