"""Password hashing with argon2id (argon2-cffi defaults, which follow RFC 9106's advice).

Hashing costs tens of milliseconds of CPU on purpose; async callers should run these in a
thread (``asyncio.to_thread``) so the event loop keeps serving RTMP and HLS meanwhile.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher(type=Type.ID)

# Hashes starting with this can never verify: accounts created without a password (CLI users
# who will log in by token, or get a password set later). The random tail keeps rows distinct.
UNUSABLE_PREFIX = "!"


def hash_password(password: str) -> str:
    """Return an argon2id PHC string for ``password``."""
    return _hasher.hash(password)


def unusable_password_hash() -> str:
    """A value for ``User.password_hash`` that no password verifies against."""
    return UNUSABLE_PREFIX + secrets.token_urlsafe(32)


def is_usable_password_hash(password_hash: str) -> bool:
    return not password_hash.startswith(UNUSABLE_PREFIX)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; False on mismatch or a bad hash."""
    if not is_usable_password_hash(password_hash):
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's; rehash after login."""
    if not is_usable_password_hash(password_hash):
        return False
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True
