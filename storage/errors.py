"""Errors the storage layer raises on purpose.

Callers (CLI, ingest, JSON API) turn these into an exit status, an RTMP refusal or an HTTP
status without parsing messages: ValidationError is the caller's input, ConflictError is a
uniqueness clash with existing rows, NotFoundError is a missing referenced row. The message is
written for the person who typed the input.
"""

from __future__ import annotations

import errno

from sqlalchemy.exc import OperationalError


class StorageError(Exception):
    """Base class for errors the storage layer raises deliberately."""


class ValidationError(StorageError):
    """Input has the wrong shape (bad username, slug, email, title...)."""


class ConflictError(StorageError):
    """The row would clash with an existing one (taken username, email, slug; already live)."""


class NotFoundError(StorageError):
    """A row the operation refers to (user, channel, stream) does not exist."""


# A write failed for want of room: no space, over quota, or over the process's file size limit.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def out_of_room(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the database on it) has no room for a write.

    A full disk is an operating condition, not a bug: the web layer answers it with 507 and
    the recording writer logs it once per run of failures instead of a traceback a segment.
    """
    if isinstance(exc, OSError):
        return exc.errno in _NO_ROOM
    if isinstance(exc, OperationalError):
        # SQLite: SQLITE_FULL, or SQLITE_IOERR_WRITE when the write was refused (EFBIG).
        text = str(exc.orig).lower()
        return "disk is full" in text or "disk i/o error" in text
    return False
