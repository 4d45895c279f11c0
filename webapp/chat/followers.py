"""Who follows which channel, as far as this process's followers-only checks have seen.

Only positives are kept (a follower found once costs no query at their next message); a
follow or unfollow committed anywhere reaches every process through the chat bus
(``ChatService.follow_changed``) and is applied here at once, so an unfollower cannot keep
chatting on a cached answer. A version bumped by each change keeps a lookup that raced one
from caching a stale answer.

It also keeps when each user seen in a room followed it (``since``, for the chat's
follower-age badges, issue 16): one query per user and room, then from memory, bounded by
``chat.badge_cache_size`` entries (emptied past that: it only costs the lookups again).
"""

from __future__ import annotations

from datetime import UTC, datetime

from storage import Database
from storage import chat as chat_store
from storage import raids as raid_store


class Followers:
    def __init__(self, db: Database, max_dates: int = 100_000) -> None:
        self.db = db
        self._known: set[tuple[int, int]] = set()  # (channel id, user id)
        self._version = 0
        # (channel id, user id) -> when they followed, None if they do not.
        self._since: dict[tuple[int, int], datetime | None] = {}
        self.max_dates = max_dates

    def apply(self, channel_id: int, user_id: int, following: bool) -> None:
        """A follow change committed (here or in another process)."""
        self._version += 1
        if following:
            self._known.add((channel_id, user_id))
        else:
            self._known.discard((channel_id, user_id))
        if (channel_id, user_id) in self._since:
            self._since[(channel_id, user_id)] = datetime.now(UTC) if following else None

    async def follows(self, channel_id: int, user_id: int) -> bool:
        key = (channel_id, user_id)
        if key in self._known:
            return True
        version = self._version
        async with self.db.session() as session:
            follows = await chat_store.is_follower(session, channel_id, user_id)
        if follows and self._version == version:
            self._known.add(key)
        return follows

    async def since(self, channel_id: int, user_id: int) -> datetime | None:
        """When the user followed the channel (None if they do not): the follower-age badge."""
        key = (channel_id, user_id)
        if key in self._since:
            return self._since[key]
        version = self._version
        async with self.db.session() as session:
            found = await raid_store.follow_dates(session, channel_id, [user_id])
        when = found.get(user_id)
        if self._version == version:
            if len(self._since) >= self.max_dates:
                self._since.clear()
            self._since[key] = when
        return when
