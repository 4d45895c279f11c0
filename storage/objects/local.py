"""Objects as files under data_dir: today's layout, the default backend.

Blocking file work runs in threads. Writes are atomic (a temporary name, then a rename), so a
reader sees the old object or the whole new one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from .base import ErrorHook, ObjectInfo, ObjectStore, ObjectStoreError, check_key


class LocalStore(ObjectStore):
    backend = "local"

    def __init__(
        self, root: Path, *, public_url: str = "", on_error: ErrorHook | None = None
    ) -> None:
        super().__init__(public_url=public_url, on_error=on_error)
        self.root = root

    @property
    def is_local(self) -> bool:
        return True

    def path(self, key: str) -> Path:
        """The file that holds ``key``."""
        return self.root / check_key(key)

    async def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        target = self.path(key)
        try:
            await asyncio.to_thread(_write_atomic, target, data)
        except OSError as exc:
            raise self.failed("put", key, str(exc)) from None

    async def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        target = self.path(key)
        try:
            if await asyncio.to_thread(_same_file, path, target):
                return  # the file already is the object
            await asyncio.to_thread(_copy_atomic, path, target)
        except FileNotFoundError:
            raise self.failed("put", key, f"no local file {path}") from None
        except OSError as exc:
            raise self.failed("put", key, str(exc)) from None

    async def get(self, key: str, start: int = 0, stop: int | None = None) -> bytes:
        path = self.path(key)
        try:
            return await asyncio.to_thread(_read_range, path, start, stop)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self.missing("get", key) from None
        except OSError as exc:
            raise self.failed("get", key, str(exc)) from None

    async def stream(
        self, key: str, start: int = 0, stop: int | None = None, chunk: int = 1 << 16
    ) -> AsyncIterator[bytes]:
        path = self.path(key)
        try:
            f = await asyncio.to_thread(open, path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self.missing("get", key) from None
        except OSError as exc:
            raise self.failed("get", key, str(exc)) from None
        try:
            await asyncio.to_thread(f.seek, start)
            left = None if stop is None else max(0, stop - start)
            while left is None or left > 0:
                want = chunk if left is None else min(chunk, left)
                try:
                    data = await asyncio.to_thread(f.read, want)
                except OSError as exc:
                    raise self.failed("get", key, str(exc)) from None
                if not data:
                    break
                if left is not None:
                    left -= len(data)
                yield data
        finally:
            f.close()

    async def head(self, key: str) -> ObjectInfo | None:
        path = self.path(key)
        try:
            st = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self.failed("head", key, str(exc)) from None
        if not path.is_file():
            return None
        return ObjectInfo(key, st.st_size)

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(self.path(key).unlink, True)
        except IsADirectoryError:
            return
        except OSError as exc:
            raise self.failed("delete", key, str(exc)) from None

    async def list_prefix(self, prefix: str) -> list[ObjectInfo]:
        check_key(prefix, prefix=True)
        try:
            return await asyncio.to_thread(self._list, prefix)
        except OSError as exc:
            raise self.failed("list", prefix, str(exc)) from None

    def _list(self, prefix: str) -> list[ObjectInfo]:
        # Walk the deepest directory the prefix surely names, then filter by the string.
        base = prefix.rpartition("/")[0]
        top = self.root / base if base else self.root
        found = []
        if not top.is_dir():
            return []
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if not key.startswith(prefix) or name.endswith(".tmp"):
                    continue
                try:
                    check_key(key)
                    size = full.stat().st_size
                except (ObjectStoreError, OSError):
                    continue
                found.append(ObjectInfo(key, size))
        found.sort(key=lambda info: info.key)
        return found

    async def delete_prefix(self, prefix: str) -> int:
        items = await self.list_prefix(prefix)
        try:
            return await asyncio.to_thread(self._delete_all, prefix, items)
        except OSError as exc:
            raise self.failed("delete", prefix, str(exc)) from None

    def _delete_all(self, prefix: str, items: list[ObjectInfo]) -> int:
        for info in items:
            (self.root / info.key).unlink(missing_ok=True)
        if prefix.endswith("/") and prefix.strip("/"):
            # A whole directory: take the (now empty) directories and stray temporaries too.
            shutil.rmtree(self.root / prefix.rstrip("/"), ignore_errors=True)
        return len(items)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except FileNotFoundError:
        if not a.exists():
            raise
        return False


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not also collect half-written files
        raise


def _copy_atomic(source: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_range(path: Path, start: int, stop: int | None) -> bytes:
    with open(path, "rb") as f:
        if start:
            f.seek(start)
        if stop is None:
            return f.read()
        return f.read(max(0, stop - start))
