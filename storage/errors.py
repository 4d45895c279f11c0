"""Errors the storage layer raises on purpose.

Callers (CLI, ingest, JSON API) turn these into an exit status, an RTMP refusal or an HTTP
status without parsing messages: ValidationError is the caller's input, ConflictError is a
uniqueness clash with existing rows, NotFoundError is a missing referenced row. The message is
written for the person who typed the input.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class for errors the storage layer raises deliberately."""


class ValidationError(StorageError):
    """Input has the wrong shape (bad username, slug, email, title...)."""


class ConflictError(StorageError):
    """The row would clash with an existing one (taken username, email, slug; already live)."""


class NotFoundError(StorageError):
    """A row the operation refers to (user, channel, stream) does not exist."""
