"""The object store's interface, its one error type and the rules every key follows."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

# A key's parts: no empty part, no "." or "..", nothing but a conservative character set, so a
# key maps onto a path under data_dir (LocalStore) exactly as it does onto an S3 key.
_PART_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
MAX_KEY = 512

_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".vtt": "text/vtt",
    ".json": "application/json",
    ".jsonl": "application/jsonl",
}


def content_type_for(key: str) -> str:
    """The Content-Type an object is stored (and served from a public bucket) with."""
    return _TYPES.get(Path(key).suffix, "application/octet-stream")


class ObjectStoreError(Exception):
    """An operation on the store failed: ``op`` (put, get, head, delete, list...), the key or
    prefix, and why in words. ``missing`` is True when the key simply does not exist."""

    missing = False

    def __init__(self, op: str, key: str, reason: str) -> None:
        super().__init__(f"object store {op} {key!r}: {reason}")
        self.op = op
        self.key = key
        self.reason = reason


class ObjectNotFound(ObjectStoreError):
    """The key does not exist (a 404 for whoever asked)."""

    missing = True

    def __init__(self, op: str, key: str) -> None:
        super().__init__(op, key, "no such object")


def check_key(key: str, *, prefix: bool = False) -> str:
    """``key`` if it is a well-formed key (``prefix``: a key prefix, may end with "/" or be
    empty); else ObjectStoreError, before anything reaches a disk or the network."""
    body = key[:-1] if prefix and key.endswith("/") else key
    if prefix and not body:
        return key
    parts = body.split("/")
    if (
        len(key) > MAX_KEY
        or not all(_PART_RE.fullmatch(p) for p in parts)
        or any(p in (".", "..") for p in parts)
    ):
        raise ObjectStoreError("key", key, "not a valid object key")
    return key


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str  # relative to the store (without S3Store's prefix)
    size: int


ErrorHook = Callable[[str], None]


class ObjectStore(ABC):
    """Where media and uploads live. Byte ranges are ``[start, stop)``, ``stop`` None = to the
    end; a range past the end is clipped, as HTTP does."""

    backend: str = ""

    def __init__(self, *, public_url: str = "", on_error: ErrorHook | None = None) -> None:
        self._public = public_url.rstrip("/")
        self._on_error = on_error

    @property
    def is_local(self) -> bool:
        """True when objects are the files under data_dir (nothing to copy anywhere)."""
        return False

    def public_url(self, key: str) -> str | None:
        """Where a client can fetch the object directly (None: serve it ourselves)."""
        if not self._public:
            return None
        return f"{self._public}/{self._public_key(check_key(key))}"

    def _public_key(self, key: str) -> str:
        return key

    def failed(self, op: str, key: str, reason: str) -> ObjectStoreError:
        """Count a failure and make its error (callers ``raise store.failed(...)``)."""
        if self._on_error is not None:
            self._on_error(op)
        return ObjectStoreError(op, key, reason)

    def missing(self, op: str, key: str) -> ObjectNotFound:
        """A missing key is an answer, not a fault of the store: not counted."""
        return ObjectNotFound(op, key)

    @abstractmethod
    async def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None: ...

    @abstractmethod
    async def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        """Store a local file's bytes under ``key`` (LocalStore: a no-op when ``path`` is
        already the key's file)."""

    @abstractmethod
    async def get(self, key: str, start: int = 0, stop: int | None = None) -> bytes: ...

    @abstractmethod
    def stream(
        self, key: str, start: int = 0, stop: int | None = None, chunk: int = 1 << 16
    ) -> AsyncIterator[bytes]:
        """The object's bytes in chunks (ObjectNotFound before the first chunk if missing)."""

    @abstractmethod
    async def head(self, key: str) -> ObjectInfo | None:
        """Size of the object, None if there is none."""

    async def size(self, key: str) -> int:
        info = await self.head(key)
        if info is None:
            raise self.missing("head", key)
        return info.size

    async def exists(self, key: str) -> bool:
        return await self.head(key) is not None

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the object; a missing one is not an error."""

    @abstractmethod
    async def list_prefix(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key."""

    @abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix``; how many were removed."""

    async def check(self) -> None:  # noqa: B027 - LocalStore has nothing to reach
        """Whether the store answers (S3: the bucket exists and the keys may use it);
        ObjectStoreError if not. Run at start so a misconfiguration is said at once."""

    async def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release connections."""
