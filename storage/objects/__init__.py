"""The object store every node writes media and uploads through (issue 15).

Keys are relative, slash-separated paths shaped like today's layout under ``data_dir``:
``streams/{id}/{rendition}/seg{N}.m4s``, ``streams/{id}/master.m3u8``, ``thumbnails/...``,
``uploads/{name}``, ``clips/{public_id}/...``. Two backends sit behind one interface:

- ``LocalStore``: the files under ``data_dir`` themselves (the default; a fresh server keeps
  exactly the layout and behaviour it had before the store existed);
- ``S3Store``: any S3-compatible endpoint (AWS, SeaweedFS, MinIO...) through aiobotocore,
  path-style addressing, every key under ``objects.prefix``.

Everything that can fail in a backend (a missing key, a refused request, an endpoint that is
down, a full disk) comes out as one ``ObjectStoreError`` naming the operation and the key, and
is counted through ``on_error(op)`` (the server turns that into
``aethex_object_store_errors_total{op}``): callers catch one type and never show a traceback.
"""

from __future__ import annotations

from .base import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    check_key,
    content_type_for,
)
from .local import LocalStore
from .s3 import S3Config, S3Store

__all__ = [
    "LocalStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "S3Config",
    "S3Store",
    "check_key",
    "content_type_for",
]
