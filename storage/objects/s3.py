"""Objects in an S3-compatible bucket through aiobotocore.

Any endpoint (``endpoint_url``; "" = AWS by region), path-style addressing (what self-hosted
stores such as SeaweedFS and MinIO answer without wildcard DNS), every key under ``prefix``.
Credentials "" fall back to botocore's usual chain (AWS_ACCESS_KEY_ID..., ~/.aws). Nothing is
created implicitly: a missing bucket is an error like any other. Checksums are only sent when
an operation requires them: newer botocore adds CRC trailers by default, which several S3
implementations refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from aiobotocore.session import get_session  # type: ignore[import-untyped]

from .base import ErrorHook, ObjectInfo, ObjectStore, ObjectStoreError, check_key, content_type_for

# DeleteObjects takes at most this many keys a request (the S3 API's limit).
DELETE_BATCH = 1000
MIN_PART = 5 << 20  # S3's smallest multipart part (except the last)


@dataclass(frozen=True, slots=True)
class S3Config:
    bucket: str
    endpoint_url: str = ""
    region: str = "us-east-1"
    prefix: str = ""
    access_key: str = ""
    secret_key: str = ""
    timeout: float = 10.0  # connect and read timeout of one request (s)
    part_size: int = 8 << 20  # files larger than this go up in parts of this size


class S3Store(ObjectStore):
    backend = "s3"

    def __init__(
        self, config: S3Config, *, public_url: str = "", on_error: ErrorHook | None = None
    ) -> None:
        super().__init__(public_url=public_url, on_error=on_error)
        self.config = config
        self.prefix = config.prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
            self.prefix += "/"
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._opening: asyncio.Lock | None = None

    def _public_key(self, key: str) -> str:
        return self.prefix + key

    async def _s3(self) -> Any:
        if self._client is not None:
            return self._client
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._client is None:
                c = self.config
                kwargs: dict[str, Any] = {"region_name": c.region or None}
                if c.endpoint_url:
                    kwargs["endpoint_url"] = c.endpoint_url
                if c.access_key:
                    kwargs["aws_access_key_id"] = c.access_key
                    kwargs["aws_secret_access_key"] = c.secret_key
                config = AioConfig(
                    s3={"addressing_style": "path"},
                    connect_timeout=c.timeout,
                    read_timeout=c.timeout,
                    retries={"max_attempts": 1},  # retries are the caller's (with backoff)
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                client = get_session().create_client("s3", config=config, **kwargs)
                self._client = await self._stack.enter_async_context(client)
        return self._client

    def _failure(self, op: str, key: str, exc: BaseException) -> ObjectStoreError:
        if isinstance(exc, ObjectStoreError):
            return exc
        code = _error_code(exc)
        if code in ("NoSuchKey", "404", "NotFound") and op in ("get", "head"):
            return self.missing(op, key)
        reason = f"{code}: {exc}" if code else f"{type(exc).__name__}: {exc}"
        return self.failed(op, key, reason)

    async def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        full = self.prefix + check_key(key)
        try:
            s3 = await self._s3()
            await s3.put_object(
                Bucket=self.config.bucket,
                Key=full,
                Body=data,
                ContentType=content_type or content_type_for(key),
            )
        except Exception as exc:
            raise self._failure("put", key, exc) from None

    async def put_file(self, key: str, path: Path, content_type: str | None = None) -> None:
        check_key(key)
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
        except OSError as exc:
            raise self.failed("put", key, f"no local file {path}: {exc}") from None
        part = max(MIN_PART, self.config.part_size)
        if size <= part:
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                raise self.failed("put", key, f"cannot read {path}: {exc}") from None
            await self.put_bytes(key, data, content_type)
            return
        await self._put_parts(key, path, part, content_type or content_type_for(key))

    async def _put_parts(self, key: str, path: Path, part: int, content_type: str) -> None:
        """A large file in parts of ``part`` bytes, one part in memory at a time."""
        full, bucket = self.prefix + key, self.config.bucket
        upload_id = None
        try:
            s3 = await self._s3()
            made = await s3.create_multipart_upload(
                Bucket=bucket, Key=full, ContentType=content_type
            )
            upload_id = made["UploadId"]
            parts = []
            f = await asyncio.to_thread(open, path, "rb")
            with f:
                number = 1
                while data := await asyncio.to_thread(f.read, part):
                    sent = await s3.upload_part(
                        Bucket=bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=data
                    )
                    parts.append({"PartNumber": number, "ETag": sent["ETag"]})
                    number += 1
            await s3.complete_multipart_upload(
                Bucket=bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except Exception as exc:
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    await s3.abort_multipart_upload(Bucket=bucket, Key=full, UploadId=upload_id)
            raise self._failure("put", key, exc) from None

    def _range(self, start: int, stop: int | None) -> dict[str, str]:
        if start <= 0 and stop is None:
            return {}
        end = "" if stop is None else str(stop - 1)
        return {"Range": f"bytes={max(0, start)}-{end}"}

    async def get(self, key: str, start: int = 0, stop: int | None = None) -> bytes:
        if stop is not None and stop <= start:
            await self.size(key)  # a missing key is still an error
            return b""
        full = self.prefix + check_key(key)
        try:
            s3 = await self._s3()
            reply = await s3.get_object(
                Bucket=self.config.bucket, Key=full, **self._range(start, stop)
            )
            async with reply["Body"] as body:
                data: bytes = await body.read()
            return data
        except Exception as exc:
            if _error_code(exc) == "InvalidRange":
                return b""  # a range past the end: nothing, as a local file would give
            raise self._failure("get", key, exc) from None

    async def stream(
        self, key: str, start: int = 0, stop: int | None = None, chunk: int = 1 << 16
    ) -> AsyncIterator[bytes]:
        if stop is not None and stop <= start:
            await self.size(key)
            return
        full = self.prefix + check_key(key)
        try:
            s3 = await self._s3()
            reply = await s3.get_object(
                Bucket=self.config.bucket, Key=full, **self._range(start, stop)
            )
        except Exception as exc:
            if _error_code(exc) == "InvalidRange":
                return
            raise self._failure("get", key, exc) from None
        async with reply["Body"] as body:
            while True:
                try:
                    data = await body.read(chunk)
                except Exception as exc:
                    raise self._failure("get", key, exc) from None
                if not data:
                    break
                yield data

    async def head(self, key: str) -> ObjectInfo | None:
        full = self.prefix + check_key(key)
        try:
            s3 = await self._s3()
            reply = await s3.head_object(Bucket=self.config.bucket, Key=full)
        except Exception as exc:
            failure = self._failure("head", key, exc)
            if failure.missing:
                return None
            raise failure from None
        return ObjectInfo(key, int(reply["ContentLength"]))

    async def delete(self, key: str) -> None:
        full = self.prefix + check_key(key)
        try:
            s3 = await self._s3()
            await s3.delete_object(Bucket=self.config.bucket, Key=full)
        except Exception as exc:
            raise self._failure("delete", key, exc) from None

    async def list_prefix(self, prefix: str) -> list[ObjectInfo]:
        check_key(prefix, prefix=True)
        found = []
        try:
            s3 = await self._s3()
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.config.bucket, Prefix=self.prefix + prefix
            )
            async for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix) :]
                    found.append(ObjectInfo(key, int(item["Size"])))
        except Exception as exc:
            raise self._failure("list", prefix, exc) from None
        found.sort(key=lambda info: info.key)
        return found

    async def delete_prefix(self, prefix: str) -> int:
        items = await self.list_prefix(prefix)
        try:
            s3 = await self._s3()
            for i in range(0, len(items), DELETE_BATCH):
                batch = items[i : i + DELETE_BATCH]
                reply = await s3.delete_objects(
                    Bucket=self.config.bucket,
                    Delete={
                        "Objects": [{"Key": self.prefix + o.key} for o in batch],
                        "Quiet": True,
                    },
                )
                errors = reply.get("Errors") or []
                if errors:
                    first = errors[0]
                    raise self.failed(
                        "delete",
                        prefix,
                        f"{len(errors)} object(s) not deleted, first {first.get('Key')}: "
                        f"{first.get('Code')} {first.get('Message')}",
                    )
        except Exception as exc:
            raise self._failure("delete", prefix, exc) from None
        return len(items)

    async def check(self) -> None:
        try:
            s3 = await self._s3()
            await s3.head_bucket(Bucket=self.config.bucket)
        except Exception as exc:
            raise self._failure("check", self.config.bucket, exc) from None

    async def close(self) -> None:
        self._client = None
        try:
            await self._stack.aclose()
        except Exception:
            pass  # closing a dead connection has nothing left to do


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status:
            return str(status)
    return ""
