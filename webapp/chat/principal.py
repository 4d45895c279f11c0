"""Who a logged-in chat socket acts for, kept current for as long as the socket is open.

A socket authenticates once, on the upgrade request, but lives for hours; what it may do must
follow the account meanwhile. So a socket does not keep the ``User`` it opened with: it keeps a
``Principal`` (id, name, admin flag, and the hash of the credential it came with: a login
session or an API token) that the service updates in place:

* at once, when the account changes anywhere: disable/enable, promote/demote, logout and token
  revocation publish an ``_account`` event on the chat bus, and every process re-reads the
  account and the credential of that user's sockets (``ChatService.recheck``);
* and at most every ``chat.recheck_interval`` seconds when the socket acts, which covers what
  no event announces (a session that expires) and an event lost while a Redis bus reconnects.

A principal whose account is disabled or whose credential stopped working is ``ended``: its
socket gets a ``chat:error`` with that code and is closed with 1008 (policy), like a socket
refused at the door. The browser shows the reason and does not reconnect in a loop; a reload
brings the visitor back as whoever they now are (anonymous, after a logout).

Roles inside a channel (owner, moderators, bans, timeouts, followers) are not here: they live
in the channel's chat state, which every change reloads on every process (``_state`` events).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

# Credential kinds: how the socket's upgrade request authenticated.
SESSION = "session"
TOKEN = "token"

# Why a principal may no longer act: the chat:error code and the close reason people see.
ENDED_REASONS = {
    "account_disabled": "this account has been disabled",
    "session_ended": "you were signed out: log in again to chat",
    "token_revoked": "the API token of this connection was revoked",
}


@dataclass(eq=False, slots=True)
class Principal:
    """The account behind one socket; ``id``, ``username`` and ``is_admin`` make it an actor
    for the service's checks (like a ``User``), always as of the last check."""

    id: int
    username: str
    is_admin: bool
    kind: str  # SESSION or TOKEN
    token_hash: str  # SHA-256 of the cookie or bearer token (never the token itself)
    checked: float  # time.monotonic() of the last check against the database
    ended: str | None = None  # a key of ENDED_REASONS once the socket may no longer act
    generation: int = 0  # bumped by each check, so an older answer never overwrites a newer
    # This socket's share of the re-check interval, fixed per socket in [0.5, 1): sockets that
    # joined together (a room's viewers after a raid or a restart) would otherwise all go stale
    # at the same moment, and their next frames (a thousand taps a second in a big room) would
    # all wait on one batch of a thousand credential reads. Spread over half the interval, each
    # wait is a few reads. Never later than the interval: only earlier.
    spread: float = field(default_factory=lambda: random.uniform(0.5, 1.0))

    def stale(self, interval: float, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) - self.checked >= interval * self.spread
